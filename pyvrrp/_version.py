"""pyvrrp's version: the one place it is written.

pyproject.toml reads it (``dynamic = ["version"]``), ``pyvrrp.__version__`` re-exports it, and
modules that need it import it from here rather than from the package face, so that they do
not depend on ``pyvrrp/__init__.py``.
"""

__version__ = "0.1.0"
