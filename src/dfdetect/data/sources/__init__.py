"""dfdetect.data.sources."""
