"""The package version, readable from any layer (``taskloom.__version__`` re-exports it)."""

__version__ = "0.1.0"
