"""Scalar parsers: each returns the value or raises Invalid with a message naming the fix."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network, IPv6Address, ip_address, ip_interface, ip_network
from typing import Final, Literal

from pyvrrp.core.configparse.reading import (
    _HOSTNAME,
    _NAME,
    UINT32_MAX,
    UNIX_PATH_MAX,
    _describe,
    _Invalid,
    _invalid_name_message,
    _show,
    _suggest,
)
from pyvrrp.core.linux import IFNAMSIZ
from pyvrrp.core.model import US_PER_SECOND, IPAddress, IPInterface, IPNetwork, VrrpVersion
from pyvrrp.core.packet import ChecksumMode, Family

# Scalar parsers: return the value or raise _Invalid with a message naming the fix.


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _nonempty_string(value: object) -> str:
    text = _string(value)
    if not text.strip():
        raise _Invalid("must not be empty")
    if "\0" in text:
        raise _Invalid(f"{_show(text)} contains a NUL character")
    return text


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        hint = " (write true or false, without quotes)" if value in ("true", "false") else ""
        raise _Invalid(f"expected true or false, got {_describe(value)}{hint}")
    return value


def _integer(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer {low}..{high}, got {_describe(value)}")
        if not low <= value <= high:
            raise _Invalid(f"{_show(value)} is out of range {low}..{high}")
        return value

    return parse


def _number(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number of seconds, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"{_show(value)} is not a finite number of seconds")
    return value


def _to_us(seconds: float) -> int:
    return round(seconds * US_PER_SECOND)


def _seconds(high: int, *, positive: bool = False) -> Callable[[object], int]:
    """A duration in seconds, 0..high (``positive``: more than 0) -> integer microseconds."""

    def parse(value: object) -> int:
        seconds = _number(value)
        if positive and not 0 < seconds <= high:
            raise _Invalid(
                f"{_show(value)} is out of range: must be more than 0 and at most {high}"
            )
        if not 0 <= seconds <= high:
            raise _Invalid(f"{_show(value)} is out of range 0..{high}")
        us = _to_us(seconds)
        if positive and us == 0:
            raise _Invalid(f"{_show(value)} rounds to 0 microseconds; must be more than 0")
        return us

    return parse


def _advert_interval(value: object) -> int:
    """Seconds -> centiseconds (RFC 9568 §5.2.7: Max Advertise Interval, 12 bits, in cs)."""
    seconds = _number(value)
    if not 0.01 <= seconds <= 40.95:
        raise _Invalid(f"{_show(value)} is out of range 0.01..40.95")
    centis = seconds * 100
    rounded = round(centis)
    if abs(centis - rounded) > 1e-6:
        down, up = math.floor(centis) / 100, math.ceil(centis) / 100
        raise _Invalid(
            f"{_show(value)} is not a multiple of 0.01 s (advertisements carry the interval "
            f"in centiseconds); use {max(down, 0.01):g} or {up:g}"
        )
    return rounded


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        spelled = " or ".join(json.dumps(c) for c in choices)
        if not isinstance(value, str):
            raise _Invalid(f"expected {spelled}, got {_describe(value)}")
        if value not in choices:
            lower = value.lower()
            if lower in choices:
                raise _Invalid(f"{_show(value)} is not valid; write {json.dumps(lower)}")
            raise _Invalid(f"{_show(value)} is not valid; expected {spelled}")
        return value

    return parse


def _name(kind: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _string(value)
        if not _NAME.fullmatch(text):
            raise _Invalid(_invalid_name_message(text, kind))
        return text

    return parse


def _interface_name(value: object) -> str:
    """Linux's dev_valid_name(): 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'."""
    text = _string(value)
    rule = "Linux interface names are 1..15 bytes without '/', ':' or whitespace"
    if not text:
        raise _Invalid(f"must not be empty; {rule}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size >= IFNAMSIZ:
        raise _Invalid(f"{_show(text)} is {size} bytes, too long; {rule}")
    bad = next((c for c in text if c in "/:\0" or c.isspace()), None)
    if bad is not None:
        raise _Invalid(f"{_show(text)} contains {json.dumps(bad)}; {rule}")
    if text in (".", ".."):
        raise _Invalid(f"{_show(text)} is not a valid interface name; {rule}")
    return text


def _no_scope_id(text: str) -> None:
    if "%" in text:
        raise _Invalid(
            f"{_show(text)} has a zone index; write the address without %... "
            "(the interface is given by dev or the instance's interface)"
        )


def _ip(value: object) -> IPAddress:
    text = _string(value)
    _no_scope_id(text)
    try:
        return ip_address(text)
    except ValueError:
        hint = " (no prefix length here)" if "/" in text else ""
        raise _Invalid(f"{_show(text)} is not an IP address{hint}") from None


def _unicast_ip(value: object) -> IPAddress:
    address = _ip(value)
    if address.is_multicast or address.is_unspecified:
        kind = "a multicast" if address.is_multicast else "the unspecified"
        raise _Invalid(f"{_show(value)} is {kind} address; a unicast address is needed here")
    return address


def _vip(value: object) -> IPInterface:
    text = _string(value)
    _no_scope_id(text)
    try:
        address = ip_interface(text)
    except ValueError:
        raise _Invalid(
            f"{_show(text)} is not an IP address with an optional prefix length "
            '(e.g. "1.2.3.58/29" or "2001:db8::58/64")'
        ) from None
    ip = address.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        kind = (
            "a multicast"
            if ip.is_multicast
            else "the unspecified"
            if ip.is_unspecified
            else "a loopback"
        )
        raise _Invalid(f"{_show(text)} is {kind} address; a virtual address must be unicast")
    network = address.network
    # /31 and /32 have no broadcast address (RFC 3021).
    broadcast = network.prefixlen <= 30 and ip == network.broadcast_address
    if isinstance(network, IPv4Network) and broadcast:
        raise _Invalid(
            f"{_show(text)} is the broadcast address of {network}; "
            "use a host address of the network"
        )
    return address


def _network(value: object) -> IPNetwork:
    """A network; host bits set is an error naming the network meant (as the kernel says)."""
    return _parse_network(_string(value), '(e.g. "1.2.3.56/29" or "2001:db8::/64")')


def _route_destination(value: object) -> IPNetwork | Literal["default"]:
    if value == "default":
        return "default"
    return _parse_network(_string(value), '(e.g. "1.2.3.56/29", "2001:db8::/64" or "default")')


def _parse_network(text: str, examples: str) -> IPNetwork:
    _no_scope_id(text)
    try:
        return ip_network(text)
    except ValueError:
        pass
    try:
        loose = ip_network(text, strict=False)
    except ValueError:
        hint = " (omit the key to match any address)" if text in ("all", "any") else ""
        raise _Invalid(f"{_show(text)} is not an IP network {examples}{hint}") from None
    raise _Invalid(f"{_show(text)} has host bits set; did you mean {json.dumps(str(loose))}?")


def _absolute_path(value: object) -> str:
    text = _nonempty_string(value)
    if not text.startswith("/"):
        raise _Invalid(f"{_show(text)} is not an absolute path; write it from / (e.g. /run/...)")
    return text


def _control_socket(value: object) -> str:
    text = _absolute_path(value)
    if len(text.encode("utf-8", "surrogatepass")) > UNIX_PATH_MAX:
        raise _Invalid(
            f"{_show(text)} is longer than the {UNIX_PATH_MAX} bytes a Unix socket path may have"
        )
    return text


def _listen_address(value: object) -> tuple[str, int]:
    form = 'write "HOST:PORT" or "[IPV6]:PORT", e.g. "127.0.0.1:9650" or "[::1]:9650"'
    return _host_port(_string(value), form, "listen address", None)


def _smtp_server(value: object) -> tuple[str, int]:
    """keepalived's smtp_server: a host and an optional port (25 when absent)."""
    form = 'write "HOST", "HOST:PORT" or "[IPV6]:PORT", e.g. "127.0.0.1:25" or "[::1]:25"'
    text = _string(value)
    if text.startswith("[") and text.endswith("]"):  # "[::1]" alone: the default port
        return _host_port(text + ":25", form, "server address", text)
    if not text.startswith("[") and ":" not in text:
        return _host_port(text + ":25", form, "server address", text)
    if not text.startswith("[") and text.count(":") > 1:
        try:
            IPv6Address(text)
        except ValueError:
            pass
        else:
            raise _Invalid(f'{_show(text)}: put an IPv6 address in brackets, e.g. "[{text}]:25"')
    return _host_port(text, form, "server address", None)


def _host_port(text: str, form: str, what: str, shown: str | None) -> tuple[str, int]:
    """ "HOST:PORT" or "[IPV6]:PORT" -> (host, port); ``shown`` is what the user wrote, when
    the caller added a default port."""
    original = shown if shown is not None else text
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise _Invalid(f"{_show(original)} is not a {what}; {form}")
        try:
            IPv6Address(host)
        except ValueError:
            raise _Invalid(f"{_show(host)} in {_show(original)} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise _Invalid(f"{_show(original)} is not a {what}; {form}")
        if ":" in host:
            raise _Invalid(f"{_show(original)}: put an IPv6 address in brackets; {form}")
        if not _HOSTNAME.fullmatch(host):
            raise _Invalid(f"{_show(host)} in {_show(original)} is not an IP address or host name")
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 1 <= int(port_text) <= 65535:
        raise _Invalid(f"port {_show(port_text)} in {_show(original)} is not in range 1..65535")
    return host, int(port_text)


def _command(value: object) -> tuple[str, ...] | str:
    """An argv array (run directly) or a string (run through /bin/sh -c)."""
    form = 'write an argv array (["/usr/bin/prog", "arg"]) or a shell command string'
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid(f"the command is empty; {form}")
        if "\0" in value:
            raise _Invalid("the command contains a NUL character")
        return value
    if not isinstance(value, list | tuple):
        raise _Invalid(f"expected a command, got {_describe(value)}; {form}")
    if not value:
        raise _Invalid(f"the command is an empty array; {form}")
    argv: list[str] = []
    for i, arg in enumerate(value):
        if not isinstance(arg, str):
            raise _Invalid(f"argument [{i}] is {_describe(arg)}; every argument must be a string")
        if "\0" in arg:
            raise _Invalid(f"argument [{i}] contains a NUL character")
        argv.append(arg)
    program = argv[0]
    if not program.strip():
        raise _Invalid("the program (argument [0]) is empty")
    if "/" in program and not program.startswith("/"):
        raise _Invalid(
            f"the program {_show(program)} is a relative path, which depends on the daemon's "
            "working directory; use an absolute path or a bare name looked up in PATH"
        )
    return tuple(argv)


def _checksum_mode(value: object) -> ChecksumMode:
    return ChecksumMode(_choice(tuple(m.value for m in ChecksumMode))(value))


def _rule_family(value: object) -> Family:
    choice = _choice(("ipv4", "ipv6"))(value)
    return Family.IPV4 if choice == "ipv4" else Family.IPV6


def _family_name(family: int) -> str:
    return "IPv4" if family == 4 else "IPv6"


# VRRPv2 (RFC 3768) and the keys that came with it.

V2_MAX_ADVERT_INTERVAL: Final = 255  # RFC 3768 §5.3.7: Adver Int, 8 bits of whole seconds
V3_MAX_WHOLE_SECONDS: Final = 40  # the largest whole second in 12 bits of centiseconds
AUTH_PASS_MAX_BYTES: Final = 8  # RFC 2338 §5.3.6: the 8-octet Authentication Data


def _version(value: object) -> VrrpVersion:
    form = 'expected 3, 2 or "2+3"'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(f"{form}, got {_describe(value)}")
    if isinstance(value, str) and value.strip() in ("2", "3"):
        raise _Invalid(f"{_show(value)} is a string; write {value.strip()} without quotes")
    if isinstance(value, str) and value != "2+3" and value.replace(" ", "") in ("2+3", "3+2"):
        raise _Invalid(f'{_show(value)} is not valid; write "2+3"')
    for version in VrrpVersion:
        if value == version.value:
            return version
    raise _Invalid(f"{_show(value)} is not a VRRP version pyvrrp speaks; {form}")


def _v2_advert_interval(high: int, why: str) -> Callable[[object], int]:
    """A whole number of seconds 1..high -> centiseconds (VRRPv2 carries whole seconds)."""

    def parse(value: object) -> int:
        seconds = _number(value)
        if seconds != int(seconds):
            near = sorted({max(math.floor(seconds), 1), max(math.ceil(seconds), 1)})
            raise _Invalid(
                f"{_show(value)} is not a whole number of seconds, which {why} needs "
                "(VRRPv2 advertisements carry the interval in whole seconds); "
                f"use {' or '.join(str(n) for n in near)}"
            )
        if not 1 <= seconds <= high:
            raise _Invalid(f"{_show(value)} is out of range 1..{high} for {why}")
        return int(seconds) * 100

    return parse


def _auth_pass(value: object) -> str:
    text = _string(value)
    if not text:
        raise _Invalid("must not be empty; remove auth_pass for no authentication")
    if "\0" in text:
        raise _Invalid("contains a NUL character, which ends the password on the wire")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > AUTH_PASS_MAX_BYTES:
        raise _Invalid(
            f"is {size} bytes in UTF-8; a VRRPv2 password is at most {AUTH_PASS_MAX_BYTES} "
            "bytes (keepalived cuts longer ones: use its first 8 bytes to match it)"
        )
    return text


_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


def _email_address(value: object) -> str:
    text = _string(value)
    if not _EMAIL.fullmatch(text) or text.startswith("@") or text.endswith("@"):
        raise _Invalid(
            f"{_show(text)} is not an e-mail address; write one bare address such as "
            '"ops@example.com" (no name, no <>, one address per string)'
        )
    return text


def _path_or_empty(value: object) -> str:
    text = _string(value)
    return text if text == "" else _absolute_path(text)


def _routing_table(names: Mapping[str, int]) -> Callable[[object], int]:
    """A routing table: a number 1..2^32-1 or a name from the rt_tables files, as ``ip``
    resolves it (``names``: the files' names and ip's builtin main, local, default, unspec)."""
    number = _integer(1, UINT32_MAX)

    def parse(value: object) -> int:
        if not isinstance(value, str):
            return number(value)
        text = value.strip()
        if text.isascii() and text.isdigit():
            return number(int(text))
        known = {**BUILTIN_TABLES, **names}
        if text not in known:
            listed = ", ".join(f"{n} ({i})" for n, i in sorted(known.items(), key=lambda x: x[1]))
            close = _suggest(text, known)
            hint = f"did you mean {close}? " if close is not None else ""
            raise _Invalid(
                f"{_show(value)} is not a routing table this host names (iproute2's rt_tables "
                f"files); {hint}known: {listed}; add the name to "
                "/etc/iproute2/rt_tables.d/NAME.conf, or write the table's number"
            )
        table = known[text]
        if table == 0:
            raise _Invalid(
                f'{_show(value)} is table 0, which the kernel reads as "no table"; '
                "name a real table"
            )
        return table

    return parse


# ip's names that need no rt_tables file (iproute2 lib/rt_names.c).
BUILTIN_TABLES: Final = {"unspec": 0, "default": 253, "main": 254, "local": 255}
