"""The package's version, written into every file it saves (``adgan.files.header``)."""

__version__ = "0.1.0"
