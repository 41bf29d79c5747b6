"""vsgx's QEMU Machine Protocol (QMP) monitor: a QMP server that behaves like QEMU 7.2's,
byte for byte where QEMU's behaviour is observable, so QEMU's own clients (``qemu.qmp``,
libvirt, ``virsh qemu-monitor-command``) can drive a vsgx machine.

Modules, each with one job:

- :mod:`~vsgx.monitor.target`: :class:`MonitorTarget`, what the monitor needs from a
  machine, and :class:`CommandError`;
- :mod:`~vsgx.monitor.qjson`: QEMU's JSON dialect (streaming parser and writer);
- :mod:`~vsgx.monitor.protocol`: one client's session (negotiation, request checks, replies,
  events), without sockets;
- :mod:`~vsgx.monitor.commands`: the QMP commands and their argument checks;
- :mod:`~vsgx.monitor.hmp`: the HMP commands behind ``human-monitor-command``;
- :mod:`~vsgx.monitor.server`: :class:`QmpServer`, the unix/TCP socket server.
"""

from __future__ import annotations

from vsgx.monitor.commands import CommandTable
from vsgx.monitor.protocol import Session
from vsgx.monitor.server import QmpServer
from vsgx.monitor.target import CommandError, EventListener, MonitorTarget

__all__ = ["CommandError", "CommandTable", "EventListener", "MonitorTarget", "QmpServer",
           "Session"]
