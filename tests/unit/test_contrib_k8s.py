"""The container recipe and the Kubernetes example are consistent with the project."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

from pyvrrp.core.config import parse_node

ROOT = Path(__file__).parents[2]


def test_daemonset_configmap_holds_a_valid_node_toml() -> None:
    text = (ROOT / "contrib" / "kubernetes" / "daemonset.yaml").read_text()
    match = re.search(r"^  node-a\.toml: \|\n((?:    .*\n|\n)+)", text, re.MULTILINE)
    assert match is not None
    config = parse_node(tomllib.loads(textwrap.dedent(match.group(1))))
    assert config.global_.control_socket == "/run/pyvrrp/pyvrrp.sock"
    # The liveness probe and the socket volume use the socket the config names.
    assert '"-s", "/run/pyvrrp/pyvrrp.sock"' in text
    assert "mountPath: /run/pyvrrp" in text


def test_daemonset_runs_on_the_host_network_with_only_the_two_capabilities() -> None:
    text = (ROOT / "contrib" / "kubernetes" / "daemonset.yaml").read_text()
    assert "hostNetwork: true" in text
    assert 'drop: ["ALL"]' in text
    assert 'add: ["NET_ADMIN", "NET_RAW"]' in text
    assert "privileged: false" in text


def test_containerfile_copies_what_the_package_needs() -> None:
    text = (ROOT / "contrib" / "Containerfile").read_text()
    for copied in re.findall(r"^COPY (.+) /src", text, re.MULTILINE):
        for path in copied.split():
            assert (ROOT / path).exists(), path
    assert 'ENTRYPOINT ["pyvrrp"]' in text
