"""Byte level: the tolerant element reader, the fast header reader, character sets, File Meta and a small encoder."""
