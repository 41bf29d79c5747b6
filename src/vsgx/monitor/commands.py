"""The QMP commands vsgx implements, with QEMU 7.2's argument checking.

:class:`CommandTable` is the :class:`~vsgx.monitor.protocol.Executor` of a monitor: it finds
the command, refuses out-of-band execution (none of these commands allows it), checks the
arguments the way QEMU's QAPI input visitor does (``qapi/qobject-input-visitor.c``: members in
schema order, then anything left over) and runs the command against the
:class:`~vsgx.monitor.target.MonitorTarget` (docs/interop/qmp-spec.rst, "Issuing Commands",
"Compatibility Considerations").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import vsgx
from vsgx.monitor import hmp
from vsgx.monitor.protocol import CAPABILITIES, Request, Session
from vsgx.monitor.qjson import qdict_order
from vsgx.monitor.target import CommandError, MonitorTarget
from vsgx.platform.machine import MachineError

_log = logging.getLogger(__name__)

QEMU_VERSION = (7, 2, 0)
"""The QEMU release whose QMP vsgx speaks."""

_INT64 = range(-(1 << 63), 1 << 63)

MIGRATION_CAPABILITIES = (
    "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events",
    "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
    "pause-before-switchover", "multifd", "dirty-bitmaps", "postcopy-blocktime",
    "late-block-activate", "x-ignore-shared", "validate-uuid", "background-snapshot",
    "zero-copy-send", "postcopy-preempt")
"""QEMU 7.2's ``MigrationCapability`` enum (``qapi/migration.json``)."""


@dataclass(frozen=True)
class _Param:
    """One command argument: its name, its QAPI type (``str``, ``int``, ``bool``,
    ``QMPCapability-list`` for ``['QMPCapability']``, ``MigrationCapabilityStatus-list``
    for ``['MigrationCapabilityStatus']``) and whether it may be absent."""

    name: str
    kind: str
    optional: bool = False


def _check_value(param: _Param, value: object) -> None:
    """Type-check one present argument as ``qobject_input_type_*`` does."""
    if param.kind == "str" and not isinstance(value, str):
        raise CommandError(f"Invalid parameter type for '{param.name}', expected: string")
    if param.kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)
                                    and value in _INT64):
        raise CommandError(f"Invalid parameter type for '{param.name}', expected: integer")
    if param.kind == "bool" and not isinstance(value, bool):
        raise CommandError(f"Invalid parameter type for '{param.name}', expected: boolean")
    if param.kind == "MigrationCapabilityStatus-list":
        _check_migration_capabilities(param.name, value)
    if param.kind == "QMPCapability-list":
        if not isinstance(value, list):
            raise CommandError(f"Invalid parameter type for '{param.name}', expected: array")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise CommandError(f"Invalid parameter type for '{param.name}[{index}]', "
                                   "expected: string")
            if item not in CAPABILITIES:
                # QEMU 7.2 names list elements of enum type 'null' here.
                raise CommandError(f"Parameter 'null' does not accept value '{item}'")


def _check_migration_capabilities(name: str, value: object) -> None:
    """``['MigrationCapabilityStatus']``: each element an object with ``capability`` (a
    ``MigrationCapability``) and ``state`` (bool), nothing else."""
    if not isinstance(value, list):
        raise CommandError(f"Invalid parameter type for '{name}', expected: array")
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            raise CommandError(f"Invalid parameter type for '{where}', expected: object")
        capability = item.get("capability")
        if "capability" not in item:
            raise CommandError(f"Parameter '{where}.capability' is missing")
        if not isinstance(capability, str):
            raise CommandError(f"Invalid parameter type for '{where}.capability', "
                               "expected: string")
        if capability not in MIGRATION_CAPABILITIES:
            raise CommandError(f"Parameter 'capability' does not accept value '{capability}'")
        if "state" not in item:
            raise CommandError(f"Parameter '{where}.state' is missing")
        if not isinstance(item["state"], bool):
            raise CommandError(f"Invalid parameter type for '{where}.state', "
                               "expected: boolean")
        for member in qdict_order(list(item)):
            if member not in ("capability", "state"):
                raise CommandError(f"Parameter '{where}.{member}' is unexpected")


def _check_arguments(params: tuple[_Param, ...], arguments: dict[str, Any]) -> None:
    """Visit the members in schema order, then reject the first one left over (in QDict
    order; QEMU takes the first in its GLib hash table, which differs only when several are
    left over)."""
    for param in params:
        if param.name in arguments:
            _check_value(param, arguments[param.name])
        elif not param.optional:
            raise CommandError(f"Parameter '{param.name}' is missing")
    known = {param.name for param in params}
    for name in qdict_order(list(arguments)):
        if name not in known:
            raise CommandError(f"Parameter '{name}' is unexpected")


@dataclass(frozen=True)
class _Command:
    params: tuple[_Param, ...]
    run: Callable[[Session, dict[str, Any]], object]


def _c_int(value: int) -> int:
    """``value`` converted to a C ``int``, as ``monitor_set_cpu(mon, int cpu_index)``
    receives the int64 ``cpu-index``."""
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


class CommandTable:
    """The commands of one monitor, run against ``target``."""

    def __init__(self, target: MonitorTarget) -> None:
        self._target = target
        t = target
        no_args: tuple[_Param, ...] = ()
        # In the order QEMU 7.2's query-commands lists them.
        self._commands: dict[str, _Command] = {
            "query-sgx-capabilities": _Command(no_args, lambda s, a: t.query_sgx_capabilities()),
            "query-sgx": _Command(no_args, lambda s, a: t.query_sgx()),
            "human-monitor-command": _Command(
                (_Param("command-line", "str"), _Param("cpu-index", "int", optional=True)),
                self._human_monitor_command),
            "cont": _Command(no_args, lambda s, a: t.cont()),
            "stop": _Command(no_args, lambda s, a: t.pause()),
            "query-name": _Command(no_args, self._query_name),
            "query-memory-devices": _Command(no_args, lambda s, a: t.query_memory_devices()),
            "system_reset": _Command(no_args, lambda s, a: t.system_reset()),
            "query-cpus-fast": _Command(no_args, lambda s, a: t.query_cpus_fast()),
            "quit": _Command(no_args, self._quit),
            "query-commands": _Command(
                no_args, lambda s, a: [{"name": name} for name in self._commands]),
            "query-version": _Command(no_args, lambda s, a: self.version()),
            "qmp_capabilities": _Command(
                (_Param("enable", "QMPCapability-list", optional=True),),
                lambda s, a: s.negotiate(a.get("enable", []))),
            "migrate-incoming": _Command((_Param("uri", "str"),),
                                         lambda s, a: t.migrate_incoming(a["uri"])),
            # ``detach`` is ignored, as QEMU ignores it ("exists only for compatibility").
            "migrate": _Command((_Param("uri", "str"), _Param("detach", "bool", optional=True)),
                                lambda s, a: t.migrate_to_uri(a["uri"])),
            "migrate-set-capabilities": _Command(
                (_Param("capabilities", "MigrationCapabilityStatus-list"),),
                self._migrate_set_capabilities),
            "query-migrate": _Command(no_args, lambda s, a: t.query_migrate()),
            "query-status": _Command(no_args, lambda s, a: t.query_status()),
        }

    def version(self) -> dict[str, Any]:
        """``query-version``: QEMU's version triple and vsgx as the package."""
        major, minor, micro = QEMU_VERSION
        return {"qemu": {"major": major, "minor": minor, "micro": micro},
                "package": f"vsgx {vsgx.__version__}"}

    def execute(self, session: Session, request: Request) -> object:
        """``qmp_dispatch`` from the command lookup on. A command without a result returns
        ``{}`` (qmp-spec.rst, "Success")."""
        command = self._commands.get(request.command)
        if command is None:
            raise CommandError(f"The command {request.command} has not been found",
                               "CommandNotFound")
        if request.oob:
            raise CommandError(f"The command {request.command} does not support OOB")
        _check_arguments(command.params, request.arguments)
        try:
            result = command.run(session, request.arguments)
        except CommandError:
            raise
        except MachineError as error:  # the machine refusing, in QEMU's words
            raise CommandError(str(error)) from error
        except Exception as error:
            # The target broke its contract (errors are CommandError); keep the session.
            _log.exception("QMP command %s failed", request.command)
            raise CommandError(str(error)) from error
        return {} if result is None else result

    def _query_name(self, session: Session, arguments: dict[str, Any]) -> object:
        name = self._target.name
        return {} if name is None else {"name": name}

    def _human_monitor_command(self, session: Session, arguments: dict[str, Any]) -> object:
        if "cpu-index" in arguments:
            cpus = {cpu["cpu-index"] for cpu in self._target.query_cpus_fast()}
            if _c_int(arguments["cpu-index"]) not in cpus:
                raise CommandError("Parameter 'cpu-index' expects a CPU number")
        return hmp.run(self._target, self.version(), arguments["command-line"])

    def _migrate_set_capabilities(self, session: Session, arguments: dict[str, Any]) -> object:
        """Only ``events`` means something to vsgx's migration; the other capabilities tune
        how QEMU moves RAM over a network, which a ``file:`` stream does not do, and are
        refused rather than silently ignored."""
        for item in arguments["capabilities"]:
            if item["capability"] != "events":
                raise CommandError(f"vsgx does not support the migration capability "
                                   f"'{item['capability']}' (only 'events')")
        for item in arguments["capabilities"]:
            self._target.set_migration_events(item["state"])
        return None

    def _quit(self, session: Session, arguments: dict[str, Any]) -> object:
        self._target.quit()
        session.hang_up()
        return None
