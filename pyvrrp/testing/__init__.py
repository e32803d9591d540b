"""Fakes and simulators shipped with pyvrrp for testing code that uses it."""
