"""The package version (layer 0: importable from anywhere)."""

__version__ = "0.1.0"
