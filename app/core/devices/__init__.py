"""The machine's drives: removable-media detection and disc burners (one module per OS), ISO images."""
