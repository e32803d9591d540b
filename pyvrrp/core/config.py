"""The configuration of a node: the model and its validation, in one import path.

A facade: the model (frozen attrs classes, :class:`ConfigError`, :class:`Problem`) lives in
:mod:`pyvrrp.core.model`, the validation in :mod:`pyvrrp.core.configparse`. Library users and
the rest of pyvrrp import from here; see docs/configuration.md for the keys and their rules.
"""

from __future__ import annotations

from pyvrrp.core import model
from pyvrrp.core.configparse import key_path, parse_node, summary
from pyvrrp.core.model import *  # noqa: F403  (model.__all__: re-exported, mypy sees them)

# The model's names, then the validation's: in step with model.__all__ by construction (ruff
# cannot see that model.__all__ holds only strings).
__all__ = [*model.__all__, "key_path", "parse_node", "summary"]  # noqa: PLE0604
