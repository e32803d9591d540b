"""Scalar parsers: each returns the value or raises Invalid with a message naming the fix."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Address, ip_address, ip_interface, ip_network
from typing import Literal

from pyvrrp.core.configparse.reading import (
    _HOSTNAME,
    _NAME,
    IFNAMSIZ,
    UNIX_PATH_MAX,
    _describe,
    _Invalid,
    _show,
)
from pyvrrp.core.model import US_PER_SECOND, IPAddress, IPInterface, IPNetwork
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
            raise _Invalid(
                f"{_show(text)} is not a valid {kind} name: use 1..64 letters, digits, '_' "
                "or '-', not starting with '-'"
            )
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
    text = _string(value)
    form = 'write "HOST:PORT" or "[IPV6]:PORT", e.g. "127.0.0.1:9650" or "[::1]:9650"'
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise _Invalid(f"{_show(text)} is not a listen address; {form}")
        try:
            IPv6Address(host)
        except ValueError:
            raise _Invalid(f"{_show(host)} in {_show(text)} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise _Invalid(f"{_show(text)} is not a listen address; {form}")
        if ":" in host:
            raise _Invalid(f"{_show(text)}: put an IPv6 address in brackets; {form}")
        if not _HOSTNAME.fullmatch(host):
            raise _Invalid(f"{_show(host)} in {_show(text)} is not an IP address or host name")
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 1 <= int(port_text) <= 65535:
        raise _Invalid(f"port {_show(port_text)} in {_show(text)} is not in range 1..65535")
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
