"""The trio runtime: sockets, netlink, processes and clocks around the core; decides nothing."""
