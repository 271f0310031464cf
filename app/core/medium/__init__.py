"""A medium opened: root-confined file systems (folders, .iso images), File IDs, open_medium, scan, check."""
