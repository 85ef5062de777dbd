"""The package version, in a module of its own that imports nothing: checkpoint.py records it, and
importing the package's `__init__` from there would reach api.py, above every module that records it."""

__version__ = "0.1.0"
