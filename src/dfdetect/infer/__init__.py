"""dfdetect.infer."""
