"""Writing media: plan, sources, identity, values, volumes, layout, transcoding, write, verify, report."""
