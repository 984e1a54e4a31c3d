"""DataKit: a Git-like versioned tree database served as a 9p filesystem."""

__version__ = "0.1.0"
