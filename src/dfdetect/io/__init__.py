"""Media input: video decoding (PyAV), audio extraction and VAD, atomic file writes."""
