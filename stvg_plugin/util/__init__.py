"""Small shared utilities (boxes, I/O)."""
