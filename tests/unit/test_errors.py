"""Local misuse of the core raises one error type, UsageError, which is a ValueError."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from pyvrrp.core.errors import UsageError
from pyvrrp.core.packet import IPV4_MULTICAST, Advertisement, build_ipv4, encode
from pyvrrp.core.params import RouterParams
from pyvrrp.core.router import RouterError
from pyvrrp.core.tracking import ScriptState

LOCAL = IPv4Address("192.0.2.10")


def test_usage_error_is_a_value_error_and_router_error_its_old_name() -> None:
    assert issubclass(UsageError, ValueError)
    assert RouterError is UsageError


@pytest.mark.parametrize(
    "misuse",
    [
        lambda: RouterParams(vrid=0, addresses=(LOCAL,), local_address=LOCAL),
        lambda: encode(
            Advertisement(vrid=1, priority=300, max_advert_interval=100, addresses=(LOCAL,)),
            source=LOCAL,
            destination=IPV4_MULTICAST,
        ),
        lambda: build_ipv4(b"", source=LOCAL, destination=IPV4_MULTICAST, ttl=256),
        lambda: ScriptState(fall=0),
    ],
    ids=["router-params", "packet-encode", "packet-build-ipv4", "tracking"],
)
def test_every_core_module_reports_misuse_as_usage_error(misuse: object) -> None:
    assert callable(misuse)
    with pytest.raises(UsageError):
        misuse()
