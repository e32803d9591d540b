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


def configmap_nodes() -> dict[str, str]:
    """Key -> node.toml text of every key of the example's ConfigMap."""
    text = (ROOT / "contrib" / "kubernetes" / "daemonset.yaml").read_text()
    found = re.findall(r"^  ([\w.-]+\.toml): \|\n((?:    .*\n|\n)+)", text, re.MULTILINE)
    return {key: textwrap.dedent(body) for key, body in found}


def test_configmap_has_one_valid_node_toml_per_node_named_after_it() -> None:
    nodes = configmap_nodes()
    assert set(nodes) == {"node-a.toml", "node-b.toml", "node-c.toml"}
    configs = {key: parse_node(tomllib.loads(body)) for key, body in nodes.items()}
    for key, config in configs.items():
        assert config.global_.router_id == key.removesuffix(".toml")
    # One cluster: the same VRID everywhere, each node a peer of the two others, one
    # priority per node.
    sources = {}
    for config in configs.values():
        (instance,) = config.instances.values()
        sources[str(instance.unicast_source)] = {str(p) for p in instance.unicast_peers}
    for source, peers in sources.items():
        assert peers == set(sources) - {source}
    priorities = [next(iter(c.instances.values())).priority for c in configs.values()]
    assert len(set(priorities)) == 3


def test_each_pod_reads_the_key_of_its_own_node() -> None:
    text = (ROOT / "contrib" / "kubernetes" / "daemonset.yaml").read_text()
    assert 'args: ["-c", "/etc/pyvrrp/$(NODE_NAME).toml"]' in text
    assert re.search(
        r"- name: NODE_NAME\n\s+valueFrom:\n\s+fieldRef:\n\s+fieldPath: spec.nodeName", text
    )
    # Only on the labelled nodes: a node without a key would fail to start.
    assert re.search(r"nodeSelector:\n\s+pyvrrp.example.com/vrrp: \"true\"", text)
