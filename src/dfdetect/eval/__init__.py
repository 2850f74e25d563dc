"""dfdetect.eval."""
