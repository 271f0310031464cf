"""Pure-Python core of DiscBridge. Nothing in this package may import Qt."""
