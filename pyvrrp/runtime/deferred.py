"""Standard modules the daemon's process imports only when first used: :func:`defer`.

trio imports :mod:`ssl` (for ``SSLStream`` and its helpers) and :mod:`hmac` (for the cookies
of ``DTLSEndpoint``) when it is imported, and uses neither until a TLS stream or a DTLS
endpoint is made, which the daemon never does. Importing them loads OpenSSL's ``libssl``
and ``libcrypto`` (through ``_ssl``, and ``_hashlib`` for :mod:`hmac`): about 4.8 MB of the
daemon's resident memory, for nothing unless a mail is sent with STARTTLS
(docs/benchmarks.md, "Cost at scale").

:func:`defer` puts a placeholder for such a module in :data:`sys.modules` before trio is
imported. ``import ssl`` then binds the placeholder; the module's code runs, in the
placeholder itself, the first time an attribute it does not have yet is read (``ssl.
create_default_context`` when the mailer starts TLS): from then on it *is* the module,
and everyone who imported it holds the real thing. This relies on what trio does at import
time with these modules: nothing but binding their names (its ``_ssl.py``,
``_highlevel_ssl_helpers.py`` and ``_dtls.py`` use them only inside functions, in every
version pyproject.toml allows); tests/unit/test_startup_imports.py checks that the daemon's
start path loads neither, and the mailer's tests that STARTTLS works through a placeholder.

Why not :class:`importlib.util.LazyLoader`: its module loads on *any* attribute read, and the
``import`` statement itself reads ``__spec__`` from a module found in :data:`sys.modules`
(to wait for one being initialised), so ``import ssl`` would load it at once. The
placeholder has its ``__spec__``, ``__name__`` and the other attributes the import system
sets, and loads only on a name it lacks.

Only the daemon's command (``pyvrrp -c node.toml``) installs placeholders: a library must
not change the modules of the process that imports it.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from collections.abc import Iterable
from importlib.machinery import ModuleSpec

__all__ = ["DAEMON_DEFERRED", "defer", "is_pending"]

DAEMON_DEFERRED = ("ssl", "hmac")
"""What the daemon defers: imported by trio, used by pyvrrp only to send mail with STARTTLS
(:mod:`ssl`) or to authenticate to the mail server (:mod:`hmac`, through smtplib)."""

# The C module without which a deferred module cannot load (ssl needs _ssl; hmac does without
# _hashlib): when it is missing (a Python built without OpenSSL), the module is not deferred,
# so that ``try: import ssl`` / ``except ImportError`` (smtplib's) still sees the truth.
_NEEDS = {"ssl": "_ssl"}

# One load at a time in the whole process: the first read may come from a worker thread (the
# mailer's) while trio's thread reads too. Reentrant: a module's own code, while it runs, may
# read a name it has not defined yet, which must then fail as in any partly run module.
_loading = threading.RLock()
_running: set[str] = set()


class _Deferred(types.ModuleType):
    """A module whose code has not run yet: it runs at the first read of a missing name."""

    def __getattr__(self, name: str) -> object:
        # Called only for a name the module does not have: module attributes (``__spec__``
        # and the others the import system reads) are found without it.
        with _loading:
            if type(self) is _Deferred and self.__name__ not in _running:
                spec = self.__spec__
                if spec is None or spec.loader is None:  # set by defer(): never
                    raise ImportError(f"deferred module {self.__name__} has no loader")
                _running.add(self.__name__)
                try:
                    spec.loader.exec_module(self)
                finally:
                    _running.discard(self.__name__)
                # An ordinary module from now on: a missing name fails at once.
                object.__setattr__(self, "__class__", types.ModuleType)
        return types.ModuleType.__getattribute__(self, name)


def defer(names: Iterable[str]) -> list[str]:
    """Put a placeholder in :data:`sys.modules` for each module of ``names`` not imported yet;
    returns the names deferred. Call it before whatever imports them (trio)."""
    deferred: list[str] = []
    for name in names:
        if name in sys.modules or "." in name:
            continue  # already loaded, or a submodule (its package would be imported)
        needs = _NEEDS.get(name)
        if needs is not None and needs not in sys.modules and _find(needs) is None:
            continue
        spec = _find(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is not None:
            continue  # not found, or a package: imported as usual
        module = importlib.util.module_from_spec(spec)
        object.__setattr__(module, "__class__", _Deferred)
        sys.modules[name] = module
        deferred.append(name)
    return deferred


def is_pending(module: types.ModuleType) -> bool:
    """True while ``module`` is a placeholder of :func:`defer` whose code has not run."""
    return type(module) is _Deferred


def _find(name: str) -> ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
