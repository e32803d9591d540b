"""The package version, in a module of its own so the runtime can read it without importing
the package face (``pyvrrp/__init__.py``), which would make an import circle."""

__version__ = "0.1.0"
