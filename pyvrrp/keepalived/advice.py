"""What to tell the user about the keepalived keywords pyvrrp does not convert.

Each entry is the second half of a report line: why the keyword cannot be carried over and
what to do instead (docs/import-keepalived.md lists them).
"""

from __future__ import annotations

_SNMP = (
    "SNMP is not supported; pyvrrp exports Prometheus metrics (global metrics_listen) and "
    "`pyvrrp status --json`"
)
_LVS = (
    "LVS is outside pyvrrp (it replaces keepalived's VRRP side only); keep running keepalived "
    "for LVS with its VRRP part removed, or manage IPVS with ipvsadm"
)

# Global keywords with their own advice; any other unknown one gets a generic line.
_GLOBAL_DROPPED = {
    "snmp_socket": _SNMP,
    "enable_snmp_vrrp": _SNMP,
    "enable_snmp_keepalived": _SNMP,
    "enable_snmp_checker": _SNMP,
    "enable_snmp_rfc": _SNMP,
    "enable_snmp_rfcv2": _SNMP,
    "enable_snmp_rfcv3": _SNMP,
    "enable_traps": _SNMP,
    "vrrp_strict": (
        "strict mode is not supported (no_accept firewall rules, no unicast, no auth); "
        "pyvrrp applies RFC 9568's receive rules; remove vrrp_strict from the other nodes"
    ),
    "dynamic_interfaces": (
        "pyvrrp tracks interfaces by name: an instance whose interface is missing is in FAULT "
        "until it appears, which is what dynamic_interfaces is for; check this is what you want"
    ),
    "vrrp_mcast_group4": "pyvrrp always uses the RFC's multicast group 224.0.0.18; use "
    "unicast_peers instead",
    "vrrp_mcast_group6": "pyvrrp always uses the RFC's multicast group ff02::12; use "
    "unicast_peers instead",
    "enable_dbus": "D-Bus is not supported; use `pyvrrp status --json` and `pyvrrp events`",
    "vrrp_notify_fifo": "notify FIFOs are not supported; use `pyvrrp events` or notify commands",
    "notify_fifo": "notify FIFOs are not supported; use `pyvrrp events` or notify commands",
    "vrrp_iptables": "pyvrrp installs no firewall rules (accept mode is always on)",
    "vrrp_ipsets": "pyvrrp installs no firewall rules (accept mode is always on)",
    "nftables": "pyvrrp installs no firewall rules (accept mode is always on)",
}
_GLOBAL_LVS_PREFIXES = ("lvs_", "checker_", "lb_")

_TOP_DROPPED = {
    "virtual_server": _LVS,
    "virtual_server_group": _LVS,
    "vrrp_track_file": "file tracking is not supported; use a vrrp_script that tests the file",
    "track_file": "file tracking is not supported; use a vrrp_script that tests the file",
    "vrrp_track_process": (
        "process tracking is not supported; use a script such as pidof or systemctl is-active"
    ),
    "bfd_instance": "BFD is not supported; use a script that checks the peer",
    "linkbeat_interfaces": "pyvrrp watches links through netlink; nothing to configure",
    "garp_group": "GARP groups are not supported; set garp_* per instance",
    "net_namespace": "run pyvrrp itself in the namespace (ip netns exec NAME pyvrrp ...)",
}

_INSTANCE_DROPPED = {
    "use_vmac": (
        "VMAC interfaces are not supported: pyvrrp puts the addresses on the interface and "
        "announces them with its own MAC (GARP/NA), which peers and switches learn; remove "
        "use_vmac from the other nodes too, or keep keepalived on this cluster"
    ),
    "vmac_xmit_base": "VMAC interfaces are not supported (see use_vmac)",
    "use_ipvlan": "ipvlan interfaces are not supported; the addresses go on the interface",
    "track_file": "file tracking is not supported; use a vrrp_script that tests the file",
    "track_process": "process tracking is not supported; use a script (pidof, systemctl)",
    "track_bfd": "BFD is not supported; use a script that checks the peer",
    "dont_track_primary": ("pyvrrp always tracks the instance's own interface (down means FAULT)"),
    "no_accept": (
        "accept = false is not supported yet: pyvrrp accepts packets to the virtual "
        "addresses; drop that traffic with your firewall"
    ),
    "strict_mode": "strict mode is not supported; pyvrrp applies RFC 9568's receive rules",
    "lvs_sync_daemon_interface": _LVS,
    "mcast_src_ip": "pyvrrp sends multicast from the interface's primary address",
    "native_ipv6": "the family comes from the first virtual address",
    "notify_master_rx_lower_pri": "not supported; pyvrrp re-announces on its own when it hears a "
    "lower priority",
    "notify_deleted": "not supported; use notify_stop",
    "garp_master_refresh_repeat": "pyvrrp sends one announcement per address per refresh",
    "garp_lower_prio_delay": "pyvrrp re-announces at once when it hears a lower priority, "
    "and again 0.3 s later",
    "garp_lower_prio_repeat": "pyvrrp re-announces at once when it hears a lower priority, "
    "and again 0.3 s later",
    "unicast_ttl": "pyvrrp sends with TTL 255 (RFC 9568 §5.1.1.3)",
    "unicast_fault_no_peer": "pyvrrp refuses a unicast instance without peers",
    "kernel_rx_buf_size": "not needed",
    "debug": "use --log-level debug",
}

_INSTANCE_NOTES = {
    "accept": "accept mode is pyvrrp's default",
    "preempt": "preemption is pyvrrp's default",
    "skip_check_adv_addr": "pyvrrp does not compare the advertised address list",
}
