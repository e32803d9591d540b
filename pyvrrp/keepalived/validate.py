"""Validating the imported document with pyvrrp's own rules, removing what it refuses.

The converter aims to write only what pyvrrp accepts; this is the guarantee that the output
passes ``pyvrrp check`` whatever the input. Each problem :func:`pyvrrp.core.config.parse_node`
reports is mapped back to the most specific part of the document it names, which is removed
and reported as dropped with pyvrrp's reason, until the document passes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pyvrrp.core.config import ConfigError, NodeConfig, Problem, key_path, parse_node
from pyvrrp.keepalived.parser import Location


def _walk(value: Any, path: str) -> Iterable[tuple[str, Any, Any]]:
    """(path, container, key) for every value under ``value``, paths as pyvrrp writes them."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = key_path(path, key)
            yield sub, value, key
            yield from _walk(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            sub = f"{path}[{i}]"
            yield sub, value, i
            yield from _walk(item, sub)


_BUILTIN_TABLES = ("main", "local", "default")  # ip(8) knows these without rt_tables
_STANDIN_TABLE = 2**32 - 1


def _table_names(document: Mapping[str, Any]) -> Iterable[str]:
    """The routing table names (not numbers) the document's routes and rules use."""
    items = [*document.get("routes", []), *document.get("rules", [])]
    for instance in document.get("instances", {}).values():
        items += [*instance.get("virtual_routes", []), *instance.get("virtual_rules", [])]
    return [item["table"] for item in items if isinstance(item.get("table"), str)]


class NoInstanceLeftError(Exception):
    """Every instance was refused: there is no node.toml pyvrrp would accept."""


def _under(problem: str, path: str) -> bool:
    return problem == path or problem.startswith((path + ".", path + "["))


def _validate(
    document: dict[str, Any],
    render_text: Callable[[], str],
    locations: Mapping[int, Location],
    drop: Callable[[Location | None, str], None],
) -> tuple[str, NodeConfig]:
    """Render and validate; remove what pyvrrp refuses until it passes. -> (text, model).

    Routing table names are the node's business (its rt_tables files): here any name is
    taken as known, so that the structure is checked wherever the import runs.
    """
    names = sorted({t for t in _table_names(document) if t not in _BUILTIN_TABLES})
    # Stand-in numbers for the check only; the file keeps the names.
    standins = {name: _STANDIN_TABLE - i for i, name in enumerate(names)}
    for _ in range(10_000):
        text = render_text()
        try:
            return text, parse_node(tomllib.loads(text), table_names=standins)
        except ConfigError as error:
            problems: tuple[Problem, ...] = error.problems
        if not document.get("instances"):
            # pyvrrp needs an instance; every one was refused (and reported).
            raise NoInstanceLeftError
        entries = list(_walk(document, ""))
        removals: dict[int, tuple[Any, list[Any]]] = {}
        for problem in problems:
            matches = [e for e in entries if _under(problem.path, e[0])]
            if not matches:
                # A problem about the whole file: nothing more specific to remove.
                matches = [e for e in entries if "." not in e[0] and "[" not in e[0]]
            path, container, key = max(matches, key=lambda e: len(e[0]))
            where = _nearest_location(document, path, locations)
            drop(where, f"{path}: pyvrrp refuses it: {problem.message}; removed")
            removals.setdefault(id(container), (container, []))[1].append(key)
        for container, keys in removals.values():
            if isinstance(container, list):
                for index in sorted(set(keys), reverse=True):
                    del container[index]
            else:
                for key in set(keys):
                    container.pop(key, None)
        # Empty tables and arrays left behind would only produce more problems.
        for name in [k for k, v in document.items() if not v]:
            del document[name]
    raise AssertionError("validation did not converge")  # pragma: no cover


def _nearest_location(
    document: Any, path: str, locations: Mapping[int, Location]
) -> Location | None:
    best: Location | None = None
    for sub, container, key in _walk(document, ""):
        if _under(path, sub):
            value = container[key]
            if id(value) in locations:
                best = locations[id(value)]
    return best
