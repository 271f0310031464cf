"""The DICOMDIR and the file-set rules: tolerant parse, salvage and tree; records, keys, application profiles; writing."""
