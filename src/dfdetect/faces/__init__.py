"""dfdetect.faces."""
