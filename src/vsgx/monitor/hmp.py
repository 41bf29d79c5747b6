"""The human monitor (HMP) commands ``human-monitor-command`` can run.

vsgx knows QEMU 7.2's ``info`` command with the subcommands ``memory-devices``, ``name``,
``sgx``, ``status`` and ``version``, each printing exactly what QEMU prints
(``monitor/hmp-cmds.c``, ``hw/i386/sgx.c`` ``hmp_info_sgx``); command lines are split the way
``monitor/hmp.c`` splits them, so unknown commands and stray arguments get QEMU's messages.
Output lines end in CRLF, as the monitor's output buffer converts them.
:func:`format_info_sgx` is the ``info sgx`` text on its own, for other front ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vsgx.monitor.target import CommandError, MonitorTarget
from vsgx.platform.machine import MachineError

_SPACE = " \t\n\v\f\r"
"""``qemu_isspace`` (C ``isspace``)."""


def _enabled(flag: object) -> str:
    return "enabled" if flag else "disabled"


def format_info_sgx(info: dict[str, Any]) -> str:
    """``hmp_info_sgx``'s text for a ``query-sgx`` result, as the QEMU 7.2 binary prints it
    (lines end in ``\\n``): the four flags, ``size:`` with the (deprecated) ``section-size``,
    then one line per EPC section. (8.0 dropped the ``size:`` line and added a final
    ``total size=`` one.)"""
    lines = [f"SGX support: {_enabled(info['sgx'])}",
             f"SGX1 support: {_enabled(info['sgx1'])}",
             f"SGX2 support: {_enabled(info['sgx2'])}",
             f"FLC support: {_enabled(info['flc'])}",
             f"size: {info['section-size']}"]
    lines += [f"NUMA node #{section['node']}: size={section['size']}"
              for section in info["sections"]]
    return "".join(line + "\n" for line in lines)


def _info_sgx(target: MonitorTarget, version: dict[str, Any]) -> str:
    """``info sgx``: :func:`format_info_sgx`, or the error message."""
    try:
        return format_info_sgx(target.query_sgx())
    except CommandError as error:
        return error.desc + "\n"
    except MachineError as error:
        return f"{error}\n"


def _info_status(target: MonitorTarget, version: dict[str, Any]) -> str:
    """``hmp_info_status``: ``VM status: running`` or ``paused``, with the run state when
    it is neither running nor plain paused."""
    info = target.query_status()
    text = "VM status: " + ("running" if info["running"] else "paused")
    if info["singlestep"]:
        text += " (single step mode)"
    if not info["running"] and info["status"] != "paused":
        text += f" ({info['status']})"
    return text + "\n"


def _info_name(target: MonitorTarget, version: dict[str, Any]) -> str:
    """``hmp_info_name``: the guest name, or nothing."""
    return "" if target.name is None else target.name + "\n"


def _info_version(target: MonitorTarget, version: dict[str, Any]) -> str:
    """``hmp_info_version``: ``MAJOR.MINOR.MICRO`` directly followed by the package."""
    qemu = version["qemu"]
    return f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}{version['package']}\n"


def _info_memory_devices(target: MonitorTarget, version: dict[str, Any]) -> str:
    """``hmp_info_memory_devices`` for the ``sgx-epc`` devices (the only kind vsgx has)."""
    text = ""
    for device in target.query_memory_devices():
        data = device["data"]
        text += (f"Memory device [{device['type']}]: \"{data.get('id', '')}\"\n"
                 f"  memaddr: 0x{data['memaddr']:x}\n"
                 f"  size: {data['size']}\n"
                 f"  node: {data['node']}\n"
                 f"  memdev: {data['memdev']}\n")
    return text


_Handler = Callable[[MonitorTarget, dict[str, Any]], str]

# hmp-commands-info.hx, in its (alphabetical) order: name -> (help, handler).
_INFO: dict[str, tuple[str, _Handler]] = {
    "memory-devices": ("show memory devices", _info_memory_devices),
    "name": ("show the current VM name", _info_name),
    "sgx": ("show intel SGX information", _info_sgx),
    "status": ("show the current VM status (running|paused)", _info_status),
    "version": ("show the version of QEMU", _info_version),
}


def _info_help(target: MonitorTarget, version: dict[str, Any]) -> str:
    """``info`` alone: ``help_cmd(mon, "info")``, one ``info NAME PARAMS -- HELP`` line per
    subcommand (none takes parameters)."""
    return "".join(f"info {name}  -- {help_text}\n" for name, (help_text, _) in _INFO.items())


def _command_name(line: str, pos: int) -> tuple[str, int] | None:
    """``get_command_name``: the word at ``pos`` (after blanks, up to a blank or ``/``) and
    where it ends; None at the end of the line."""
    while pos < len(line) and line[pos] in _SPACE:
        pos += 1
    if pos == len(line):
        return None
    start = pos
    while pos < len(line) and line[pos] != "/" and line[pos] not in _SPACE:
        pos += 1
    return line[start:pos], pos


def run(target: MonitorTarget, version: dict[str, Any], command_line: str) -> str:
    """``handle_hmp_command``: run one HMP command line and return its output."""
    return _run(target, version, command_line).replace("\n", "\r\n")


def _run(target: MonitorTarget, version: dict[str, Any], line: str) -> str:
    found = _command_name(line, 0)
    if found is None:
        return ""
    name, pos = found
    if name != "info":
        return f"unknown command: '{line[:pos]}'\n"
    while pos < len(line) and line[pos] in _SPACE:
        pos += 1
    if pos == len(line):
        return _info_help(target, version)
    found = _command_name(line, pos)
    assert found is not None
    name, pos = found
    if name not in _INFO:
        return f"unknown command: '{line[:pos]}'\n"
    while pos < len(line) and line[pos] in _SPACE:
        pos += 1
    if pos < len(line):
        # monitor_parse_arguments: none of these commands takes arguments.
        return (f"{name}: extraneous characters at the end of line\n"
                f"Try \"help {line[:pos].rstrip(_SPACE)}\" for more information\n")
    return _INFO[name][1](target, version)
