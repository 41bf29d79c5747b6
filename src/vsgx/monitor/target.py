"""The machine a QMP monitor drives.

:class:`MonitorTarget` is everything :mod:`vsgx.monitor` needs from a machine;
``vsgx.platform.Machine`` implements it. Every ``query_*`` method returns its result already
in QMP shape (the QAPI type's members as JSON-ready ``dict``/``list``/``str``/``int``/``bool``
values, in the schema's member order); the monitor only frames it (docs/interop/qmp-spec.rst,
"Commands Responses"). A method that fails raises :class:`CommandError`, or
:class:`vsgx.platform.machine.MachineError`, which the monitor answers as a ``GenericError``
with the exception's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

EventListener = Callable[[str, dict[str, Any]], None]
"""``listener(event_name, data)``; an empty ``data`` means the event has no ``data`` member."""


class CommandError(Exception):
    """A command failed: QMP answers ``{"error": {"class": error_class, "desc": desc}}``
    (docs/interop/qmp-spec.rst, "Commands Responses", "Error").

    ``error_class`` is a QAPI ``QapiErrorClass`` name; QEMU uses ``GenericError`` for almost
    everything and ``CommandNotFound`` for unknown commands.
    """

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class


class MonitorTarget(Protocol):
    """The machine behind a monitor, as QEMU 7.2's QMP commands see it."""

    name: str | None
    """The ``-name`` guest name (``query-name``), None when not given."""

    def query_sgx(self) -> dict[str, Any]:
        """``query-sgx``: QEMU 7.2's ``SGXInfo`` (``sgx``, ``sgx1``, ``sgx2``, ``flc``,
        ``section-size`` — the total EPC size, deprecated but still present in 7.2 and
        printed by ``info sgx`` —, ``sections``). Raises :class:`CommandError`, e.g. "No EPC
        regions defined, SGX not available"."""
        ...

    def query_sgx_capabilities(self) -> dict[str, Any]:
        """``query-sgx-capabilities``: the host's ``SGXInfo``; raises :class:`CommandError`
        (QEMU: "SGX is not enabled in KVM" and similar)."""
        ...

    def query_memory_devices(self) -> list[dict[str, Any]]:
        """``query-memory-devices``: ``[{"type": "sgx-epc", "data": {"memaddr": ...,
        "size": ..., "node": ..., "memdev": "/objects/mem1"}}, ...]``."""
        ...

    def query_cpus_fast(self) -> list[dict[str, Any]]:
        """``query-cpus-fast``: one ``CpuInfoFast`` per vCPU (``cpu-index``, ``qom-path``,
        ``thread-id``, ``props``, ``target``)."""
        ...

    def query_status(self) -> dict[str, Any]:
        """``query-status``: ``{"running": bool, "singlestep": bool, "status": RunState}``."""
        ...

    def pause(self) -> None:
        """QMP ``stop``: pause the vCPUs (emits ``STOP`` when the machine was running)."""
        ...

    def cont(self) -> None:
        """``cont``: resume the vCPUs (emits ``RESUME`` when the machine was not running)."""
        ...

    def system_reset(self) -> None:
        """``system_reset``: reset the machine (emits ``RESET`` with ``guest: false``,
        ``reason: "host-qmp-system-reset"``)."""
        ...

    def quit(self) -> None:
        """``quit``: shut down (emits ``SHUTDOWN`` with ``guest: false``,
        ``reason: "host-qmp-quit"``)."""
        ...

    def migrate_to_uri(self, uri: str) -> None:
        """``migrate``: migrate to ``uri`` (``file:PATH``), emitting ``MIGRATION`` events
        when the ``events`` capability is on; returns once the migration has finished."""
        ...

    def migrate_incoming(self, uri: str) -> None:
        """``migrate-incoming``: load the incoming migration at ``uri`` (``-incoming
        defer``)."""
        ...

    def query_migrate(self) -> dict[str, Any]:
        """``query-migrate``: QEMU's ``MigrationInfo`` (``{}`` before any migration)."""
        ...

    def set_migration_events(self, enabled: bool) -> None:
        """The ``events`` migration capability (``migrate-set-capabilities``)."""
        ...

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(event_name, data)`` for every QAPI event the machine emits (``STOP``,
        ``RESUME``, ``RESET``, ``SHUTDOWN``, ...), from whatever thread emits it; return a
        function that unsubscribes. The monitor adds the timestamp."""
        ...
