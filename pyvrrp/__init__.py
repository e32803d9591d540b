"""pyvrrp: a pure-Python VRRPv3 router for Linux."""

__version__ = "0.1.0"
