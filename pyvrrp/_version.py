"""pyvrrp's version: the one place it is written.

pyproject.toml reads it (``dynamic = ["version"]``) and ``pyvrrp.__version__`` re-exports it.
It is a module of its own so that the runtime can read it without importing the package face
(``pyvrrp/__init__.py``), which would make an import circle.
"""

__version__ = "0.1.0"
