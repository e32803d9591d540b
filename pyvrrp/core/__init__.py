"""The sans-I/O core: decisions only, no clock, sockets, processes, trio or pyroute2."""
