"""The keys each table accepts, and keepalived's names for them (for "did you mean")."""

from __future__ import annotations

# keepalived's names for our keys, so that a migrating user is told what to write instead.
_KEEPALIVED_TOP = {
    "global_defs": "[global]",
    "vrrp_script": "[scripts.NAME]",
    "vrrp_instance": "[instances.NAME]",
    "vrrp_sync_group": "[sync_groups.NAME]",
    "static_routes": "[[routes]]",
    "static_rules": "[[rules]]",
}
_KEEPALIVED_INSTANCE = {
    "virtual_router_id": "vrid",
    "virtual_ipaddress": "addresses",
    "virtual_ipaddress_excluded": "excluded_addresses",
    "advert_int": "advert_interval",
    "nopreempt": "preempt = false",
    "unicast_src_ip": "unicast_source",
    "unicast_peer": "unicast_peers",
    "track_interface": "track_interfaces",
    "track_script": "track_scripts",
    "garp_master_repeat": "garp_repeat",
    "garp_master_delay": "garp_delay",
    "garp_master_refresh": "garp_refresh",
    "virtual_route": "virtual_routes",
    "virtual_rule": "virtual_rules",
    "smtp_alert": "email = true",
    "authentication": 'auth_pass = "..." (with version = 2)',
}
_KEEPALIVED_SCRIPT = {"script": "command"}
_KEEPALIVED_GLOBAL = {
    "enable_script_security": "script_security",
    "vrrp_version": "version",
    "notification_email": "[global.email] to",
    "notification_email_from": "[global.email] from",
    "smtp_server": "[global.email] server",
}
_KEEPALIVED_EMAIL = {"smtp_server": "server", "notification_email": "to"}
# Keys that have no equivalent, with what to do instead (none today; kept for the next one).
_NOT_NEEDED: dict[str, str] = {}

_TOP_KEYS = ("global", "scripts", "instances", "routes", "rules", "sync_groups")
_GLOBAL_KEYS = (
    "router_id",
    "control_socket",
    "state_dir",
    "metrics_listen",
    "log_format",
    "version",
    "log_level",
    "watch_config",
    "script_user",
    "script_group",
    "script_security",
    "email",
)
_EMAIL_KEYS = ("server", "from", "to", "starttls", "username", "password_file")
_SCRIPT_KEYS = ("command", "interval", "timeout", "fall", "rise", "weight", "user", "group")
_NOTIFY_KEYS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
_INSTANCE_KEYS = (
    "interface",
    "vrid",
    "priority",
    "state",
    "advert_interval",
    "preempt",
    "preempt_delay",
    "accept",
    "ipv4_checksum",
    "unicast_source",
    "unicast_peers",
    "addresses",
    "excluded_addresses",
    "track_interfaces",
    "track_scripts",
    "virtual_routes",
    "virtual_rules",
    *_NOTIFY_KEYS,
    "notify_user",
    "notify_group",
    "garp_repeat",
    "garp_delay",
    "garp_refresh",
    "graceful_handover",
    "version",
    "auth_pass",
    "unicast_peers_only",
    "email",
)
_ADDRESS_KEYS = ("address", "dev", "label", "scope")
_TRACK_KEYS = ("name", "weight")
_ROUTE_KEYS = ("to", "via", "dev", "table", "metric", "src", "scope")
_RULE_KEYS = ("from", "to", "table", "lookup", "priority", "iif", "oif", "family")
_SYNC_GROUP_KEYS = ("instances",)
