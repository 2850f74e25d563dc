"""dfdetect.models."""
