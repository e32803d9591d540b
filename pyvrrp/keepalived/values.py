"""Reading keepalived values: numbers, addresses, networks, routes, rules, commands.

Each reader returns what node.toml writes, or raises :class:`_Bad` with a message saying what
is wrong; the converter turns that into a report line. keepalived's own limits and defaults
come from docs/keepalived.md.
"""

from __future__ import annotations

import ipaddress
import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["command_value"]

# keepalived's defaults (docs/keepalived.md).
_KEEPALIVED_VERSION = 2
_OWNER = 255
_DEFAULT_PRIORITY = 100
_SMTP_PORT = 25
_AUTH_PASS_MAX = 8  # RFC 3768 §5.3.10: the Authentication Data field is 8 bytes

# Characters that mean a script string relies on a shell (redirections, pipes, expansions).
_SHELL_SYNTAX = frozenset("|&;<>()$`\\\n")


class _Bad(Exception):
    """A value that cannot be converted; the message says why."""


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Bad(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise _Bad(f"{what} {text} is out of range {low:g}..{high:g}")
    return value


def _integer(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise _Bad(f"{what} {text!r} is not an integer") from None
    if not low <= value <= high:
        raise _Bad(f"{what} {text} is out of range {low}..{high}")
    return value


def _seconds(value: float) -> int | float:
    """Whole seconds as an integer (readable TOML), else the float."""
    return int(value) if value == int(value) else value


def _state(text: str) -> str:
    state = text.upper()
    if state not in ("MASTER", "BACKUP"):
        raise _Bad(f"state {text} is not MASTER or BACKUP")
    return state.lower()


def _boolean(args: tuple[str, ...]) -> bool:
    """keepalived's optional boolean argument (``smtp_alert``, ``smtp_alert false``)."""
    if not args:
        return True
    word = args[0].lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise _Bad(f"{args[0]!r} is not a boolean (true or false)")


def command_value(text: str) -> list[str] | str:
    """A keepalived script string as node.toml writes it: an argv array when it splits
    cleanly and runs a program, else the string (run with /bin/sh -c)."""
    try:
        argv = shlex.split(text)
    except ValueError:
        return text
    if not argv or any(_SHELL_SYNTAX & set(word) for word in argv):
        return text
    program = argv[0]
    if "/" in program and not program.startswith("/"):
        return text
    return argv


def _network(text: str) -> str:
    """A network as keepalived reads it; a host with a prefix is an error (as the kernel)."""
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _Bad(f"{text!r} is not an IP network") from None
    raise _Bad(f"{text} has host bits set (the kernel refuses it; {loose} is meant?)")


def _table_value(text: str) -> int | str:
    """A routing table: a number, or a name pyvrrp resolves through rt_tables as ip(8) does."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 2**32 - 1:
            raise _Bad(f"table {text} is out of range 1..4294967295")
        return number
    return text


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _Bad(f"{text!r} is not an IP address") from None


_ROUTE_TYPES = ("blackhole", "unreachable", "prohibit", "throw", "local", "broadcast")
_ROUTE_KEYS = (
    "src", "via", "gw", "dev", "oif", "table", "metric", "priority", "preference", "scope", "to"
)  # fmt: skip
_RULE_KEYS = (
    "from", "to", "table", "lookup", "priority", "preference", "pref", "iif", "iifname", "oif",
    "oifname",
)  # fmt: skip
_SCOPES = ("global", "site", "link", "host")
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")  # one bare address, as pyvrrp takes
_VALID_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")  # pyvrrp's script/group names
# pyvrrp's instance names: keepalived's usual ones, dots included (1.2.3.58).
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,63}")


def _route_words(words: list[str]) -> dict[str, Any]:
    """ip-route(8) words (``[src IP] DEST [via IP] [dev X] [table T] ...``) -> a route table."""
    if words[0] in _ROUTE_TYPES:
        raise _Bad(f"{words[0]} routes are not supported")
    if words[0] == "unicast":
        words = words[1:]
    route: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("or", "nexthop"):
            raise _Bad("multipath routes are not supported")
        if word not in _ROUTE_KEYS:
            if word != "default" and ("to" in route or word.isalpha()):
                raise _Bad(f"route option {word} is not supported")
            route["to"] = _network(word)
            i += 1
            continue
        if i + 1 >= len(words):
            raise _Bad(f"{word} without a value")
        value = words[i + 1]
        i += 2
        if word == "src":
            route["src"] = str(_ip(value))
        elif word in ("via", "gw"):
            route["via"] = str(_ip(value))
        elif word in ("dev", "oif"):
            route["dev"] = value
        elif word == "table":
            route["table"] = _table_value(value)
        elif word in ("metric", "priority", "preference"):
            route["metric"] = _integer(value, "metric", 0, 2**32 - 1)
        elif word == "scope":
            if value not in _SCOPES:
                raise _Bad(f"scope {value} is not supported")
            route["scope"] = value
        else:
            route["to"] = _network(value)
    if "to" not in route:
        raise _Bad("no destination")
    order = ("to", "via", "src", "dev", "scope", "metric", "table")
    return {key: route[key] for key in order if key in route}


def _rule_words(words: list[str]) -> dict[str, Any]:
    """ip-rule(8) words (``from NET to NET lookup T priority N ...``) -> a rule table."""
    rule: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("blackhole", "prohibit", "unreachable", "goto", "nop", "not"):
            raise _Bad(f"{word} rules are not supported")
        if word not in _RULE_KEYS:
            raise _Bad(f"rule option {word} is not supported")
        if i + 1 >= len(words):
            raise _Bad(f"{word} without a value")
        value = words[i + 1]
        i += 2
        if word in ("from", "to"):
            if value == "default":
                raise _Bad(f"{word} default is not a network")
            if value != "all":
                rule[word] = _network(value)
        elif word in ("table", "lookup"):
            rule["table"] = _table_value(value)
        elif word in ("priority", "preference", "pref"):
            rule["priority"] = _integer(value, "priority", 0, 2**32 - 1)
        else:
            rule[word[:3]] = value
    if "table" not in rule:
        raise _Bad("no table (lookup)")
    order = ("from", "to", "iif", "oif", "priority", "table")
    return {key: rule[key] for key in order if key in rule}


def _check_track_words(words: tuple[str, ...]) -> None:
    """NAME [weight N [reverse|noreverse]]."""
    if words[1] != "weight" or len(words) < 3:
        raise _Bad(f"expected NAME weight N, got {' '.join(words)}")
    if words[3:] not in ((), ("reverse",), ("noreverse",)):
        raise _Bad(f"unknown option {words[3]}")


def _address_value(item: Mapping[str, Any]) -> str | dict[str, Any]:
    fields = {k: v for k, v in item.items() if not k.startswith("_")}
    return fields["address"] if len(fields) == 1 else fields
