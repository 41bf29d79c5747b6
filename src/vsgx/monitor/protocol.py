"""One QMP client's session, independent of sockets.

A :class:`Session` turns the bytes a client sends into the bytes QEMU 7.2 would send back
(``monitor/qmp.c``, ``qapi/qmp-dispatch.c``): it splits the stream into JSON values
(:mod:`vsgx.monitor.qjson`), validates each request's members, keeps the capabilities
negotiation state, echoes ``id`` and frames replies and events. What a command does is the
business of an :class:`Executor` (:class:`vsgx.monitor.commands.CommandTable`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from vsgx.monitor.qjson import MAX_TOKEN_SIZE, JsonError, JsonStreamer, encode, qdict_order
from vsgx.monitor.target import CommandError

CAPABILITIES = ("oob",)
"""What the greeting offers (QEMU 7.2 offers ``oob`` on every socket monitor)."""

NEGOTIATION_COMMAND = "qmp_capabilities"


@dataclass(frozen=True)
class Request:
    """A well-formed request (docs/interop/qmp-spec.rst, "Issuing Commands"): the command,
    its ``arguments`` (``{}`` when absent) and whether it came as ``exec-oob``."""

    command: str
    arguments: dict[str, Any]
    oob: bool = False


class Executor(Protocol):
    """Runs commands for a :class:`Session`."""

    def version(self) -> dict[str, Any]:
        """The ``query-version`` reply, which the greeting repeats."""
        ...

    def execute(self, session: Session, request: Request) -> object:
        """Run ``request`` and return its ``return`` value; raise
        :class:`~vsgx.monitor.target.CommandError` for an error reply."""
        ...


def _line(message: dict[str, Any]) -> bytes:
    """A message on the wire: QEMU's JSON, then CRLF (qmp-spec.rst, "General Definitions";
    the monitor turns the ``\\n`` QEMU appends into ``\\r\\n``)."""
    return (encode(message) + "\r\n").encode("ascii")


class Session:
    """The state of one QMP connection, from greeting to hang-up.

    A session starts in capabilities negotiation mode, where only ``qmp_capabilities`` runs
    and events are not delivered, and enters command mode when that command succeeds
    (qmp-spec.rst, "Capabilities Negotiation"). A new connection gets a new session.
    """

    def __init__(self, executor: Executor, *, max_message_size: int = MAX_TOKEN_SIZE) -> None:
        self._executor = executor
        self._streamer = JsonStreamer(max_size=max_message_size)
        self.negotiated = False
        """True once ``qmp_capabilities`` has succeeded (command mode)."""
        self.oob = False
        """True when the client enabled the ``oob`` capability (qmp-spec.rst, "Out-of-band
        execution"), which makes ``exec-oob`` a known member."""
        self.hung_up = False
        """True once a command (``quit``) ended the session; input after it is ignored."""

    def greeting(self) -> bytes:
        """The greeting sent on connection (qmp-spec.rst, "Server Greeting")."""
        return _line({"QMP": {"version": self._executor.version(),
                              "capabilities": list(CAPABILITIES)}})

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Consume bytes from the client and yield the reply to every request they complete,
        in order (an error reply for each malformed one).

        Each request runs only when its reply is asked for, so a caller that sends every
        reply before taking the next one interleaves events and replies as QEMU does (an
        event a command causes goes out before that command's reply).
        """
        for item in self._streamer.feed(data):
            if self.hung_up:
                return
            if isinstance(item, JsonError):
                yield _line({"error": _error(CommandError(item.desc))})
            else:
                yield _line(self._dispatch(item))

    def event(self, name: str, data: dict[str, Any], microseconds: int) -> bytes | None:
        """The event message for a QAPI event at ``microseconds`` since the Epoch
        (qmp-spec.rst, "Asynchronous events"), or None while negotiating, when QEMU does not
        deliver events."""
        if not self.negotiated:
            return None
        message: dict[str, Any] = {
            "timestamp": {"seconds": microseconds // 1_000_000,
                          "microseconds": microseconds % 1_000_000},
            "event": name,
        }
        if data:
            message["data"] = data
        return _line(message)

    def negotiate(self, enable: list[str]) -> None:
        """``qmp_capabilities``: enter command mode with the capabilities in ``enable``."""
        if self.negotiated:
            raise CommandError("Capabilities negotiation is already complete, command ignored",
                               "CommandNotFound")
        self.negotiated = True
        self.oob = "oob" in enable

    def hang_up(self) -> None:
        """End the session after the current reply (``quit``)."""
        self.hung_up = True

    def _dispatch(self, message: object) -> dict[str, Any]:
        """``qmp_dispatch``: the reply to one JSON value."""
        if not isinstance(message, dict):
            return {"error": _error(CommandError("QMP input must be a JSON object"))}
        reply: dict[str, Any]
        try:
            request = self._check(message)
            if not self.negotiated and request.command != NEGOTIATION_COMMAND:
                raise CommandError("Expecting capabilities negotiation with "
                                   f"'{NEGOTIATION_COMMAND}'", "CommandNotFound")
            reply = {"return": self._executor.execute(self, request)}
        except CommandError as error:
            reply = {"error": _error(error)}
        if "id" in message:
            reply["id"] = message["id"]
        return reply

    def _check(self, message: dict[str, Any]) -> Request:
        """``qmp_dispatch_check_obj``: validate the request's members, in the order QEMU's
        QDict holds them, so the same error wins when several are wrong."""
        command_key = None
        for key in qdict_order(list(message)):
            value = message[key]
            if key == "execute" or (key == "exec-oob" and self.oob):
                if not isinstance(value, str):
                    raise CommandError(f"QMP input member '{key}' must be a string")
                if command_key is not None:
                    raise CommandError(f"QMP input member '{key}' clashes with "
                                       f"'{command_key}'")
                command_key = key
            elif key == "arguments":
                if not isinstance(value, dict):
                    raise CommandError("QMP input member 'arguments' must be an object")
            elif key != "id":
                raise CommandError(f"QMP input member '{key}' is unexpected")
        if command_key is None:
            raise CommandError("QMP input lacks member 'execute'")
        return Request(message[command_key], message.get("arguments", {}),
                       oob=command_key == "exec-oob")


def _error(error: CommandError) -> dict[str, str]:
    return {"class": error.error_class, "desc": error.desc}
