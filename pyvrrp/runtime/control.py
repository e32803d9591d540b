"""The control socket: how ``pyvrrp status`` and ``pyvrrp maintenance`` talk to the daemon.

A Unix stream socket carrying line-delimited JSON: the client sends one request line, the
server answers with one response line and closes the connection.

Who may do what is checked on every connection with the kernel's credentials of the caller
(SO_PEERCRED, and SO_PEERGROUPS for its supplementary groups), as :class:`Access` says:
root (and the daemon's own user) may use every command; members of ``[global]
control_group`` too; members of ``[global] status_group`` only the read-only commands
(:data:`READ_ONLY_COMMANDS`). Anyone else is refused at once, before a request is read. The
socket file is mode 0600 without groups, 0660 owned by the one group configured, and 0666
when two different groups are (the credentials check is then the only gate).

Requests::

    {"command": "status"}
    {"command": "maintenance", "on": true, "instances": ["vip58"]}   # [] = every instance
    {"command": "events"}     # the connection stays open: one line per event (runtime.events)

Responses::

    {"ok": true, "result": ...}
    {"ok": false, "error": "what is wrong and what would be right", "code": "bad_request"}

``code`` lets a client tell a usage error from a failure: ``bad_request`` (the request is
malformed), ``unknown_instance``, ``forbidden`` (the caller may not use this command),
``timeout`` (nothing received in time), ``too_long``, ``busy`` (too many connections),
``internal`` (a bug in the daemon, logged there).

The server (:func:`serve_control`) runs in the daemon's nursery and calls a
:class:`ControlHandler` (the daemon's :class:`~pyvrrp.runtime.daemon.DaemonControl`, which
wraps its Node). Nothing a client sends can crash or block it: every read has a deadline,
lines are bounded, each connection is its own task (:mod:`pyvrrp.runtime.server`, shared
with the metrics endpoint). The client (:func:`request`) is a plain blocking socket, for the
command line.

To add a command: write an ``async def _cmd_NAME(handler, args) -> result`` that takes its
arguments from ``args`` (an :class:`Arguments`), calls ``args.done()`` before acting, and
register it in ``COMMANDS``; add the handler method it needs to :class:`ControlHandler`.

Why the module is over the project's ~700 lines: it is the whole control protocol, both
ends (the daemon's commands, their access rules, and the blocking client the CLI uses), so
that a change to a command's request or answer is made in one file; the connection handling
itself is shared with the metrics endpoint in :mod:`pyvrrp.runtime.server`.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import trio

# UnknownInstance is re-exported: it was defined here before it joined the other errors.
from pyvrrp.runtime.errors import EnvironmentProblem, UnknownInstance
from pyvrrp.runtime.events import Subscription, stream_events
from pyvrrp.runtime.server import BoundedServer, Reply

if TYPE_CHECKING:
    # Types only: ``pyvrrp status`` and the other clients load no node machinery.
    from pyvrrp.runtime.status import InstanceStatus, NodeStatus

log = logging.getLogger("pyvrrp")

MAX_LINE: Final = 64 * 1024
"""The longest request line the server reads, in bytes (without the newline)."""
REQUEST_TIMEOUT: Final = 5.0
"""Seconds a client has, from connecting, to send its whole request line."""
SEND_TIMEOUT: Final = 5.0
"""Seconds the server waits for a client to take its response."""
MAX_CLIENTS: Final = 64
"""Connections served at once; more are told the daemon is busy and closed."""
MAX_EVENT_STREAMS: Final = 16
"""``events`` streams served at once, within :data:`MAX_CLIENTS`: streams last, and a
read-only caller must not be able to take every connection from the commands."""
MAX_RESPONSE: Final = 16 * 1024 * 1024
"""The longest response line the client accepts, in bytes."""
CONNECT_RETRY: Final = 0.01
"""Seconds between the client's attempts to connect while the daemon's backlog is full."""
PROBE_TIMEOUT: Final = 2.0
"""Seconds the server waits, at start, for a daemon already on the path to accept."""
READ_ONLY_COMMANDS: Final = frozenset({"status", "events"})
"""Commands that change nothing: ``[global] status_group`` may use them."""
# SO_PEERGROUPS (Linux 4.13): the caller's supplementary groups. Python names it only in
# recent versions; the number is the same on every Linux architecture.
_SO_PEERGROUPS: Final = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_PEER_GROUPS: Final = 256  # 1024 bytes: the most getsockopt() takes from Python


class ControlError(Exception):
    """The client could not get an answer from the daemon; the message says why and what to do."""


class ControlSocketInUse(EnvironmentProblem):
    """Another daemon answers on the control socket path (``pid`` None when unknown)."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f" (pid {pid})" if pid is not None else ""
        super().__init__(
            f"another pyvrrp is running with control socket {path}{who}; stop it first, or "
            "give this one another [global] control_socket"
        )


class ControlHandler(Protocol):
    """What the control server needs from the daemon (the daemon's
    :class:`~pyvrrp.runtime.daemon.DaemonControl` implements it)."""

    def status(self) -> NodeStatus:
        """The daemon's state (see docs/operations.md, ``pyvrrp status``)."""
        ...

    async def set_maintenance(self, on: bool, instances: Sequence[str]) -> list[str]:
        """Put ``instances`` (empty: every instance) in or out of maintenance.

        Returns the instances whose maintenance flag changed; raises :class:`UnknownInstance`
        (and changes nothing) when a name is not an instance.
        """
        ...

    async def reload(self) -> dict[str, Any]:
        """Re-read and apply the configuration file; raises :class:`ReloadRejected`."""
        ...

    def subscribe_events(self) -> Subscription:
        """A subscription to the node's transitions and priority changes."""
        ...


class ReloadRejected(Exception):
    """The new configuration cannot be applied; the daemon keeps running the old one."""

    code = "invalid_config"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "the new configuration was rejected; pyvrrp keeps running the old one:\n"
            + "\n".join(self.problems)
        )


class BadRequest(Exception):
    """A request the server cannot act on; the message says what would be right."""

    code = "bad_request"


class Forbidden(BadRequest):
    """The caller may not use this command; the message says what it would need."""

    code = "forbidden"


@attrs.frozen
class Caller:
    """The process at the other end of a control connection, as the kernel says."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]  # the primary group and the supplementary ones

    def describe(self) -> str:
        """``pid 4242 uid 0``, for log lines."""
        return f"pid {self.pid} uid {self.uid}"


def _gid(key: str, group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise EnvironmentProblem(
            f"[global] {key}: group {group!r} does not exist on this host; create it or "
            f"change {key}"
        ) from None


@attrs.frozen
class Access:
    """Who may use which control command (see the module's docstring).

    ``owner`` is the daemon's own user id, which may do everything, as root may (a daemon
    run as a dedicated user with capabilities). Groups are names or numbers.
    """

    control_group: str | None = None
    status_group: str | None = None
    control_gid: int | None = None
    status_gid: int | None = None
    owner: int = attrs.field(factory=os.geteuid)

    @classmethod
    def of(cls, control_group: str | None, status_group: str | None) -> Access:
        """The access of ``[global] control_group`` and ``status_group``; raises
        :class:`EnvironmentProblem` when a group does not exist."""
        return cls(
            control_group,
            status_group,
            _gid("control_group", control_group),
            _gid("status_group", status_group),
        )

    def _in(self, gid: int | None, caller: Caller) -> bool:
        return gid is not None and gid in caller.groups

    def may(self, command: str, caller: Caller) -> bool:
        """Whether ``caller`` may use ``command``."""
        if caller.uid in (0, self.owner) or self._in(self.control_gid, caller):
            return True
        return command in READ_ONLY_COMMANDS and self._in(self.status_gid, caller)

    def may_connect(self, caller: Caller) -> bool:
        """Whether ``caller`` may use any command at all."""
        return any(self.may(command, caller) for command in ("maintenance", "status"))

    def refusal(self, command: str | None, caller: Caller | None) -> str:
        """Why ``caller`` may not use ``command`` (None: any command), and what it needs."""
        who = "an unknown process" if caller is None else f"uid {caller.uid}"
        needs = ["root"]
        if self.control_group is not None:
            needs.append(f"group {self.control_group} ([global] control_group)")
        read_only = command is None or command in READ_ONLY_COMMANDS
        if read_only and self.status_group is not None:
            needs.append(f"group {self.status_group} ([global] status_group)")
        what = f"{command}: " if command is not None else ""
        hint = ""
        if self.control_group is None and not (read_only and self.status_group is not None):
            hint = (
                "; set [global] control_group (or status_group, for status) to open it to a group"
            )
        return f"{what}permission denied for {who}: this needs {' or '.join(needs)}{hint}"

    def socket_mode(self) -> tuple[int, int | None]:
        """The socket file's mode and group (None: leave it the daemon's)."""
        gids = {g for g in (self.control_gid, self.status_gid) if g is not None}
        if not gids:
            return 0o600, None
        if len(gids) == 1:
            return 0o660, gids.pop()
        return 0o666, None


class Arguments:
    """A request's arguments, taken one by one by a command, checked for type.

    A command takes what it needs, then calls :meth:`done` before acting, which rejects any
    key it did not take: a misspelled argument is an error, never silently ignored.
    """

    def __init__(self, command: str, request: Mapping[str, Any], client: str) -> None:
        self.command = command
        self.client = client  # who asked, for the log: "pid 4242 uid 0"
        self._request = request
        self._taken = {"command"}

    def boolean(self, key: str) -> bool:
        """A required true/false argument."""
        self._taken.add(key)
        if key not in self._request:
            raise BadRequest(f'{self.command}: "{key}" is missing; give true or false')
        value = self._request[key]
        if not isinstance(value, bool):
            raise BadRequest(
                f'{self.command}: "{key}" must be true or false, not {json.dumps(value)[:40]}'
            )
        return value

    def names(self, key: str) -> list[str]:
        """An optional list of strings (absent = empty)."""
        self._taken.add(key)
        value = self._request.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(
                f'{self.command}: "{key}" must be a list of instance names, like ["vip58"]'
            )
        return value

    def done(self) -> None:
        """Reject the keys no one took."""
        extra = sorted(set(self._request) - self._taken)
        if extra:
            allowed = ", ".join(sorted(self._taken - {"command"})) or "none"
            raise BadRequest(
                f"{self.command}: unknown argument{'s' if len(extra) > 1 else ''} "
                f"{', '.join(json.dumps(k) for k in extra)} (arguments: {allowed})"
            )


Command = Callable[[ControlHandler, Arguments], Awaitable[object]]


async def _cmd_status(handler: ControlHandler, args: Arguments) -> object:
    args.done()
    return handler.status().to_json()


async def _cmd_maintenance(handler: ControlHandler, args: Arguments) -> object:
    on = args.boolean("on")
    requested = args.names("instances")
    args.done()
    # What each instance was doing before, so that the client can say what the change
    # means on the wire (a master sends priority 0, a backup just stops competing). Only a
    # courtesy: a failing status() must not stand in the way of maintenance.
    before: Mapping[str, InstanceStatus] = {}
    try:
        before = handler.status().instances
    except Exception:
        log.exception("control: status() failed while handling maintenance")
    changed = await handler.set_maintenance(on, requested)
    log.info(
        "control: maintenance %s for %s requested by %s (changed: %s)",
        "on" if on else "off",
        ", ".join(requested) or "every instance",
        args.client,
        ", ".join(changed) or "none",
    )
    names = list(dict.fromkeys(requested)) if requested else list(before)
    previous: dict[str, object] = {}
    for name in [*changed, *names]:
        info = before.get(name)
        if info is not None:
            previous[name] = {
                "state": info.state,
                "effective_priority": info.effective_priority,
                "faults": info.faults,
                "maintenance": info.maintenance,
            }
    return {
        "on": on,
        "changed": list(changed),
        "unchanged": [name for name in names if name not in changed],
        "previous": previous,
    }


async def _cmd_reload(handler: ControlHandler, args: Arguments) -> object:
    args.done()
    log.info("control: reload requested by %s", args.client)
    return await handler.reload()


async def _cmd_events(handler: ControlHandler, args: Arguments) -> object:
    # The result is not JSON: _Lines.answer streams it (see pyvrrp.runtime.events).
    args.done()
    return handler.subscribe_events()


COMMANDS: dict[str, Command] = {
    "status": _cmd_status,
    "maintenance": _cmd_maintenance,
    "reload": _cmd_reload,
    "events": _cmd_events,
}
"""Every command the server understands, by name."""


def _error(message: str, code: str) -> dict[str, object]:
    return {"ok": False, "error": message, "code": code}


def _parse(line: bytes, client: str) -> tuple[Command, Arguments]:
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        raise BadRequest(
            'the request is not JSON; send one line like {"command": "status"}'
        ) from None
    if not isinstance(request, dict):
        raise BadRequest('a request must be a JSON object, like {"command": "status"}')
    name = request.get("command")
    commands = ", ".join(sorted(COMMANDS))
    if not isinstance(name, str):
        raise BadRequest(f'the request has no "command" string; commands: {commands}')
    command = COMMANDS.get(name)
    if command is None:
        raise BadRequest(f"unknown command {json.dumps(name)[:60]}; commands: {commands}")
    return command, Arguments(name, request, client)


def _check_access(access: Access, args: Arguments, caller: Caller | None) -> None:
    if caller is None or not access.may(args.command, caller):
        # Who tried what, for the audit trail.
        log.warning("control: refused %s to %s", args.command, args.client)
        raise Forbidden(access.refusal(args.command, caller))


async def dispatch(
    handler: ControlHandler,
    line: bytes,
    *,
    client: str = "a client",
    access: Access | None = None,
    caller: Caller | None = None,
) -> dict[str, object]:
    """The response to one request line (without its newline). Never raises.

    ``client`` names who sent it, for the log lines of commands that change something.
    With ``access``, a command ``caller`` may not use is refused (code ``forbidden``).
    """
    try:
        command, args = _parse(line, client)
        if access is not None:
            _check_access(access, args, caller)
        result = await command(handler, args)
    except BadRequest as exc:
        return _error(str(exc), exc.code)
    except UnknownInstance as exc:
        return _error(str(exc), "unknown_instance")
    except ReloadRejected as exc:
        return _error(str(exc), exc.code)
    except Exception:
        # A bug in the daemon must not take the control socket, let alone the routers,
        # down with it: log it loudly and tell the client where to look.
        log.exception("control: request failed: %r", line[:200])
        return _error("internal error in pyvrrp (the daemon logged the details)", "internal")
    return {"ok": True, "result": result}


def _encode(response: Mapping[str, object]) -> bytes:
    try:
        text = json.dumps(response, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        log.exception("control: cannot encode a response as JSON")
        text = json.dumps(_error("internal error in pyvrrp: a result is not JSON", "internal"))
    return text.encode() + b"\n"


class _TooLong(Exception):
    pass


async def _read_line(stream: trio.SocketStream) -> bytes:
    """One request line (EOF ends it too); raises _TooLong past MAX_LINE."""
    buffer = bytearray()
    while True:
        chunk = await stream.receive_some(MAX_LINE + 1)
        if not chunk:
            return bytes(buffer)
        newline = chunk.find(b"\n")
        buffer += chunk if newline < 0 else chunk[:newline]
        if len(buffer) > MAX_LINE:
            raise _TooLong
        if newline >= 0:
            return bytes(buffer)


def _peer(sock: trio.socket.SocketType | socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a Unix socket, if the kernel says."""
    caller = peer_credentials(sock)
    return None if caller is None else (caller.pid, caller.uid)


def peer_credentials(sock: trio.socket.SocketType | socket.socket) -> Caller | None:
    """The process at the other end of a Unix socket (SO_PEERCRED, SO_PEERGROUPS), or None
    when the kernel does not say."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    if pid <= 0:
        return None
    groups = {gid}
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_PEER_GROUPS)
        groups.update(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        # An old kernel, or more groups than asked for: the user database's groups instead.
        with contextlib.suppress(KeyError, OSError):
            groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    return Caller(pid, uid, gid, frozenset(groups))


class _Lines:
    """The :class:`~pyvrrp.runtime.server.Service` of the control socket: JSON lines."""

    def __init__(
        self, handler: ControlHandler, request_timeout: float, access: Access | None = None
    ) -> None:
        self.handler = handler
        self.request_timeout = request_timeout
        self.access = access
        self.streams = 0  # events streams being served

    async def receive(self, stream: trio.SocketStream) -> bytes | Reply:
        if self.access is not None:
            caller = peer_credentials(stream.socket)
            if caller is None or not self.access.may_connect(caller):
                # Refused before reading anything: a caller with no right holds nothing.
                return _reply(_error(self.access.refusal(None, caller), Forbidden.code))
        try:
            line = await _read_line(stream)
        except _TooLong:
            return _reply(_error(f"request line longer than {MAX_LINE} bytes", "too_long"))
        if not line.strip():
            return _reply(
                _error('empty request; send one line like {"command": "status"}', "bad_request")
            )
        return line

    def timed_out(self) -> Reply:
        return _reply(
            _error(
                f"no request line within {self.request_timeout:g} s; send one JSON object and "
                "a newline",
                "timeout",
            )
        )

    def busy(self) -> Reply:
        return _reply(_error("pyvrrp is busy: too many control clients", "busy"))

    async def answer(self, request: bytes, stream: trio.SocketStream) -> Reply:
        caller = peer_credentials(stream.socket)
        client = caller.describe() if caller else "an unknown process"
        response = await dispatch(
            self.handler, request, client=client, access=self.access, caller=caller
        )
        result = response.get("result")
        if isinstance(result, Subscription):  # the events command: a stream, not one line
            if self.streams >= MAX_EVENT_STREAMS:
                result.close()
                return _reply(
                    _error(
                        f"pyvrrp is busy: {MAX_EVENT_STREAMS} events streams are open already",
                        "busy",
                    )
                )
            self.streams += 1
            try:
                await stream_events(result, stream)
            finally:
                self.streams -= 1
            return Reply(b"")
        return _reply(response)


def _reply(response: Mapping[str, object]) -> Reply:
    return Reply(_encode(response))


async def _probe(path: str) -> int | None:
    """Whether a daemon answers on ``path``: its pid (0 when unknown), or None if none does."""
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                await probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except PermissionError:
            raise EnvironmentProblem(
                f"control socket {path} exists and this user may not connect to it (is "
                "another pyvrrp running as root?); run as root or remove it"
            ) from None
        except OSError as exc:
            raise EnvironmentProblem(
                f"control socket {path} exists and cannot be checked: {exc.strerror or exc}; "
                "remove it if no pyvrrp is running"
            ) from None
        except trio.TooSlowError:
            # Connecting blocks only when a listener's backlog is full: someone is there.
            return 0
        peer = _peer(probe)
        return peer[0] if peer else 0


def _check_directory(path: str) -> None:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise EnvironmentProblem(
            f"control socket {path}: directory {directory} does not exist; create it "
            "(systemd: RuntimeDirectory=) or set [global] control_socket to a path in an "
            "existing directory"
        )


async def _remove_stale(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise EnvironmentProblem(
            f"control socket {path} exists and is not a socket; remove it or set "
            "[global] control_socket to another path"
        )
    pid = await _probe(path)
    if pid is not None:
        raise ControlSocketInUse(path, pid or None)
    log.info("control: removing the stale socket %s left by a previous run", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def _listen(path: str, access: Access) -> tuple[trio.socket.SocketType, tuple[int, int]]:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        # The umask closes the window between bind() and chmod() in which another user could
        # connect; the chmod makes the mode exact whatever umask the daemon was given.
        old_umask = os.umask(0o177)
        try:
            await sock.bind(path)
        finally:
            os.umask(old_umask)
        bound = True
        mode, group = access.socket_mode()
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, mode)
        sock.listen(MAX_CLIENTS)
        info = os.stat(path)
    except OSError as exc:
        sock.close()
        if bound:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if exc.errno == errno.EADDRINUSE:
            raise ControlSocketInUse(path, None) from None
        raise EnvironmentProblem(
            f"cannot create control socket {path}: {exc.strerror or exc} (run as root, or "
            "set [global] control_socket to a path this user may create)"
        ) from None
    return sock, (info.st_dev, info.st_ino)


def _unlink_if_ours(path: str, identity: tuple[int, int]) -> None:
    # Only remove the socket we made: never one a later daemon put on the path.
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass


async def serve_control(
    path: str,
    handler: ControlHandler,
    *,
    access: Access | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at ``path`` until cancelled; remove the socket file at exit.

    ``access`` says who may use which command (None: root and the daemon's own user only,
    the socket mode 0600).

    Reports itself started (``nursery.start``) once clients can connect. Raises
    :class:`ControlSocketInUse` when another daemon answers on ``path``, and
    :class:`~pyvrrp.runtime.errors.EnvironmentProblem` when the socket cannot be created (a
    missing directory, no permission, a path that is not a socket). A socket file left by
    a daemon that died is removed.
    """
    if len(os.fsencode(path)) > 107:
        raise EnvironmentProblem(
            f"control socket {path} is longer than the 107 bytes a Unix socket path may have"
        )
    _check_directory(path)
    await _remove_stale(path)
    if access is None:
        access = Access()
    sock, identity = await _listen(path, access)
    listener = trio.SocketListener(sock)
    try:
        task_status.started()
        server = BoundedServer(
            "control",
            _Lines(handler, REQUEST_TIMEOUT, access),
            max_clients=MAX_CLIENTS,
            request_timeout=REQUEST_TIMEOUT,
            send_timeout=SEND_TIMEOUT,
        )
        await server.serve([listener])
    finally:
        _unlink_if_ours(path, identity)
        await trio.aclose_forcefully(listener)


def _not_running(path: str) -> ControlError:
    return ControlError(
        f"pyvrrp is not running: no control socket at {path} (is the daemon started with "
        "this configuration?)"
    )


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                # The daemon's listen backlog is full (a burst of clients): a Unix socket
                # with a timeout does not wait for room, it fails at once. Wait here.
                if time.monotonic() + CONNECT_RETRY > deadline:
                    raise TimeoutError from None
                time.sleep(CONNECT_RETRY)
    except FileNotFoundError:
        sock.close()
        raise _not_running(path) from None
    except PermissionError:
        sock.close()
        raise ControlError(
            f"permission denied on {path}: run as root, or as a member of the group of "
            "[global] control_group (or status_group, for status)"
        ) from None
    except ConnectionRefusedError:
        sock.close()
        raise ControlError(
            f"pyvrrp is not running: nothing listens on {path} (a socket left by a daemon "
            "that stopped; the next daemon start removes it)"
        ) from None
    except TimeoutError:
        sock.close()
        raise ControlError(
            f"pyvrrp did not accept a connection on {path} within {timeout:g} s (is it stuck?)"
        ) from None
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


def _receive_line(sock: socket.socket, path: str, deadline: float) -> bytes:
    buffer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        buffer += chunk if newline < 0 else chunk[:newline]
        if len(buffer) > MAX_RESPONSE:
            raise ControlError(f"malformed response from {path}: longer than {MAX_RESPONSE} bytes")
        if newline >= 0:
            break
    if not buffer:
        raise ControlError(f"pyvrrp closed the connection on {path} without answering")
    return bytes(buffer)


def request(path: str, payload: Mapping[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its response object.

    The response has ``"ok": true`` and a ``"result"``, or ``"ok": false`` and an
    ``"error"`` message (and a ``"code"``). Raises :class:`ControlError` when no valid
    response arrives within ``timeout`` seconds in all: the daemon is not running, the
    caller may not use the socket, the daemon does not answer, or the answer is not a
    response.
    """
    deadline = time.monotonic() + timeout
    line = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
    sock = _connect(path, timeout)
    with sock:
        try:
            # A server that closed early (a request it refused) has sent its reason.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(line)
            data = _receive_line(sock, path, deadline)
        except TimeoutError:
            raise ControlError(
                f"pyvrrp did not answer on {path} within {timeout:g} s (is it stuck? see its log)"
            ) from None
        except OSError as exc:
            raise ControlError(
                f"lost the connection to pyvrrp on {path}: {exc.strerror or exc}"
            ) from None
    try:
        response = json.loads(data)
    except (ValueError, RecursionError):
        raise ControlError(
            f"malformed response from {path}: not JSON: {data[:80]!r} (is it pyvrrp?)"
        ) from None
    if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
        raise ControlError(f'malformed response from {path}: no "ok" field (is it pyvrrp?)')
    if response["ok"] and "result" not in response:
        raise ControlError(f'malformed response from {path}: "ok" without a "result"')
    if not response["ok"] and not isinstance(response.get("error"), str):
        raise ControlError(f'malformed response from {path}: a failure without an "error"')
    return response


__all__ = [
    "COMMANDS",
    "MAX_EVENT_STREAMS",
    "MAX_LINE",
    "READ_ONLY_COMMANDS",
    "REQUEST_TIMEOUT",
    "Access",
    "Arguments",
    "BadRequest",
    "Caller",
    "ControlError",
    "ControlHandler",
    "ControlSocketInUse",
    "Forbidden",
    "UnknownInstance",
    "dispatch",
    "peer_credentials",
    "request",
    "serve_control",
]
