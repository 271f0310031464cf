"""Pixels: any frame decoded for display, icons, structured reports as text, encapsulated documents, the JPEG Lossless encoder."""
