"""The package version (one place; ``dfdetect.__version__`` and checkpoints read it)."""

__version__ = "0.1.0"
