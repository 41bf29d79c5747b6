"""A stand-in for ``vsgx.platform.Machine`` implementing :class:`vsgx.monitor.MonitorTarget`
with QEMU 7.2's run-state semantics (as observed on ``qemu-system-x86_64``): ``stop`` emits
``STOP`` only when running, ``cont`` emits ``RESUME`` only when not, ``system_reset`` emits
``RESET`` and leaves a stopped machine in ``prelaunch``, ``quit`` emits ``SHUTDOWN``.

By default it looks like ``-machine none`` (running, no name, no CPUs, no SGX) so the QEMU
case table applies to it; the keyword arguments give it SGX sections, CPUs and a name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from vsgx.monitor import CommandError, EventListener

MiB = 1 << 20
TWO_SECTIONS = ((0, 64 * MiB), (1, 28 * MiB))
"""The reference's example: ``NUMA node #0: size=67108864``, ``#1: size=29360128``."""


class FakeMachine:
    def __init__(self, *, name: str | None = None, cpus: int = 0,
                 sections: tuple[tuple[int, int], ...] = (),
                 status: str = "running") -> None:
        self.name = name
        self.cpus = cpus
        self.sections = sections
        self.status = status
        self.quit_called = threading.Event()
        self._listeners: list[EventListener] = []
        self.migration: dict[str, Any] = {}
        self.migration_events = False
        self._lock = threading.Lock()

    # -- queries ---------------------------------------------------------------------------

    def query_sgx(self) -> dict[str, Any]:
        if not self.sections:
            raise CommandError("SGX is only supported on PC machines")
        return {"sgx": True, "sgx1": True, "sgx2": True, "flc": True,
                "section-size": sum(size for _, size in self.sections),
                "sections": [{"node": node, "size": size} for node, size in self.sections]}

    def query_sgx_capabilities(self) -> dict[str, Any]:
        raise CommandError("SGX is not enabled in KVM")

    def query_memory_devices(self) -> list[dict[str, Any]]:
        devices, address = [], 0x180000000
        for index, (node, size) in enumerate(self.sections):
            devices.append({"type": "sgx-epc", "data": {
                "memaddr": address, "size": size, "node": node,
                "memdev": f"/objects/mem{index + 1}"}})
            address += size
        return devices

    def query_cpus_fast(self) -> list[dict[str, Any]]:
        return [{"cpu-index": index, "qom-path": f"/machine/unattached/device[{index}]",
                 "thread-id": 1000 + index,
                 "props": {"core-id": 0, "thread-id": 0, "socket-id": index},
                 "target": "x86_64"} for index in range(self.cpus)]

    def query_status(self) -> dict[str, Any]:
        running = self.status == "running"
        return {"running": running, "singlestep": False, "status": self.status}

    # -- run state -------------------------------------------------------------------------

    def pause(self) -> None:
        if self.status == "running":
            self.status = "paused"
            self.emit("STOP", {})

    def cont(self) -> None:
        if self.status != "running":
            self.status = "running"
            self.emit("RESUME", {})

    def system_reset(self) -> None:
        self.emit("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
        if self.status != "running":
            self.status = "prelaunch"

    def quit(self) -> None:
        self.emit("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        self.quit_called.set()

    # -- migration -------------------------------------------------------------------------

    def migrate_to_uri(self, uri: str) -> None:
        """QEMU 7.2 with ``-machine none``: ``setup``, then every URI here fails."""
        self._migration_status("setup")
        self._migration_status("failed")
        raise CommandError("Parameter 'uri' expects a valid migration protocol")

    def migrate_incoming(self, uri: str) -> None:
        raise CommandError("'-incoming' was not specified on the command line")

    def query_migrate(self) -> dict[str, Any]:
        return dict(self.migration)

    def set_migration_events(self, enabled: bool) -> None:
        self.migration_events = enabled

    def _migration_status(self, status: str) -> None:
        self.migration["status"] = status
        if self.migration_events:
            self.emit("MIGRATION", {"status": status})

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.remove(listener)

        return unsubscribe

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._listeners)

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Call every listener, as the machine does from whatever thread changes state."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event, data)
