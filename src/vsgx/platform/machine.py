"""A virtual SGX machine: the hardware a QEMU command line describes, built on an emulated host.

:class:`VirtualMachine` assembles, in QEMU's order (``qemu_init`` → ``pc_init1``/``pc_q35_init``
→ ``pc_machine_init_sgx_epc`` → vCPU realize → ``fw_cfg_build_feature_control``): the memory
backends (host-node checks, ``prealloc``), the guest-physical layout, the virtual EPC drawn from
the host's EPC pool, the guest CPUID, one set of SGX MSRs per vCPU, the SGX processor that all
vCPUs share, the fw_cfg files and ACPI tables. :meth:`VirtualMachine.start` runs the firmware
(which locks IA32_FEATURE_CONTROL from fw_cfg) and then boots the guest
(:meth:`VirtualMachine.boot_guest`, which the layer above supplies).

Run states and events follow QEMU's ``qapi/run-state.json``; the ``query_*`` methods return
QEMU 7.2's QMP objects (``qapi/misc-target.json``, ``qapi/machine.json``), which is what
:mod:`vsgx.monitor` serves.

Migration (:mod:`vsgx.platform.migration` has the stream) follows ``migration/migration.c``:
the source goes ``setup`` → ``active`` → ``completed`` (``MIGRATION`` events when the
``events`` capability is on), stops its vCPUs (``STOP`` when it was running, run state
``finish-migrate``) and ends in ``postmigrate``, from which ``cont`` runs it again. A
destination built with ``-incoming`` waits in ``inmigrate``; it loads ``-incoming file:PATH``
when it starts, or the URI a later ``migrate-incoming`` gives with ``-incoming defer``, and then
runs (``RESUME``). The EPC is not migrated: the destination's starts empty. A machine with a
guest OS adds its guest's state (:meth:`VirtualMachine.save_guest_state`,
:meth:`VirtualMachine.check_guest_state`). Migration is synchronous here: ``migrate`` returns
once the stream is written.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any, BinaryIO

from vsgx.arch import PAGE_SIZE
from vsgx.arch.cpuid import EPC_SECTION_VALID, decode_epc_section
from vsgx.cpu.epc import Epc, EpcSection
from vsgx.cpu.msr import SgxMsrs
from vsgx.cpu.processor import SgxProcessor
from vsgx.platform.acpi import build_epc_device, build_srat
from vsgx.platform.config import BackendType, HostMemPolicy, MachineConfig, SgxFeature
from vsgx.platform.cpuid import GuestCpuid, guest_cpuid
from vsgx.platform.firmware import apply_feature_control, fw_cfg_files
from vsgx.platform.host import DEFAULT_HOST, EpcPoolExhausted, Host, open_host
from vsgx.platform.layout import GuestLayout, guest_layout
from vsgx.platform.migration import (
    MachineState,
    MigrationStreamError,
    config_mismatch,
    file_uri_path,
    fingerprint,
    read_machine,
    save_machine,
)
from vsgx.platform.options import parse_qemu_args
from vsgx.platform.qemuopts import QemuOptionError
from vsgx.platform.ram import GuestRam

Listener = Callable[[str, dict[str, Any]], None]


class RunState(StrEnum):
    """The subset of QEMU's ``RunState`` a vsgx machine passes through."""

    PRELAUNCH = "prelaunch"
    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    INMIGRATE = "inmigrate"
    """Waiting for (or loading) an incoming migration (``-incoming``)."""
    FINISH_MIGRATE = "finish-migrate"
    """The source, vCPUs stopped, writing the last of the migration stream."""
    POSTMIGRATE = "postmigrate"
    """The source after a completed migration (``cont`` runs it again)."""


class MachineError(Exception):
    """An operation the machine refuses in its current state; the message says why."""


class VirtualMachine:
    """The virtual hardware of one QEMU command line on one emulated host.

    ``warnings`` holds what QEMU would have printed as warnings while building it (features
    the host lacks). Several machines may share a host: their virtual EPC pages all come out
    of the host's pool, and each machine's EPC is its own memory.
    """

    def __init__(self, config: MachineConfig, host: Host) -> None:
        self.config = config
        self.host = host
        self.name = config.name
        self._check_backends()
        self.layout: GuestLayout = guest_layout(config)
        self.cpuid: GuestCpuid = guest_cpuid(config.cpu, host.profile, self.layout)
        self.warnings = self.cpuid.warnings
        self.cpus = config.smp.cpus
        features = self.cpuid.sgx_features()
        self.vcpu_msrs: list[SgxMsrs] = [SgxMsrs(features) for _ in range(self.cpus)]
        self.fw_cfg = fw_cfg_files(self.cpuid)
        srat = build_srat(config, self.layout)
        self.acpi_tables: dict[str, bytes] = {} if srat is None else {"SRAT": srat}
        self.epc_device = build_epc_device(self.layout)
        self.ram = GuestRam(config, self.layout)
        self.epc_sections = self._create_epc()
        self.processor: SgxProcessor | None = None
        if self.epc_sections:
            self.processor = SgxProcessor(
                Epc(self.epc_sections), self.ram, features=features,
                platform=host.secrets, boot=host.boot, msrs=self.vcpu_msrs)
        self.state = RunState.PRELAUNCH
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._migration: dict[str, Any] = {}
        """What ``query-migrate`` answers (empty before any migration)."""
        self._migration_events = False
        """The ``events`` migration capability (``migrate-set-capabilities``)."""
        self._incoming_started = False

    @classmethod
    def from_args(cls, argv: Sequence[str], *, host: Host | str = DEFAULT_HOST,
                  host_profile: str | None = None) -> VirtualMachine:
        """Build the machine ``argv`` (QEMU options, without the program name) describes, on
        ``host`` (a :class:`Host` or the name of one, see :func:`open_host`)."""
        if isinstance(host, str):
            host = open_host(host, host_profile)
        return cls(parse_qemu_args(argv), host)

    # -- construction -------------------------------------------------------------------------

    def _check_backends(self) -> None:
        """What creating the backends on this host can refuse, in command-line order:
        ``memory-backend-epc`` exists only where ``/dev/sgx_vepc`` does
        (``backends/hostmem-epc.c`` registers the type only then), and ``mbind`` refuses host
        nodes the host does not have (``host_memory_backend_memory_complete``)."""
        for backend in self.config.objects:
            if backend.type is BackendType.EPC and not self.host.profile.sgx:
                raise QemuOptionError("invalid object type: memory-backend-epc",
                                      hint=f"(host '{self.host.name}' is a "
                                           f"{self.host.profile.name} host, which has no SGX)\n")
            if any(n >= self.host.profile.numa_nodes for n in backend.host_nodes):
                raise QemuOptionError(
                    "cannot bind memory to host NUMA nodes: Invalid argument",
                    hint=f"(host '{self.host.name}' has NUMA node"
                         f"{'s 0-' if self.host.profile.numa_nodes > 1 else ' '}"
                         f"{self.host.profile.numa_nodes - 1})\n")

    def _create_epc(self) -> list[EpcSection]:
        """One EPC section per ``sgx-epc.N``, at the address the layout gives it, drawing its
        pages from the host pool (bound to the backend's host nodes); ``prealloc=on`` draws
        them all now (``qemu_prealloc_mem``; a vEPC fault that finds the host EPC exhausted is
        a SIGBUS, which QEMU reports as EFAULT)."""
        pool = self.host.pool
        sections: list[EpcSection] = []
        try:
            for place, epc in zip(self.layout.epc_sections, self.config.sgx_epc, strict=True):
                backend = epc.backend
                size = -(-backend.size // PAGE_SIZE) * PAGE_SIZE  # qemu_ram_alloc rounds up
                binding = pool.binding(backend.host_nodes,
                                       strict=backend.policy is HostMemPolicy.BIND)
                section = EpcSection(place.addr, size, place.node, backing=binding)
                sections.append(section)
                if backend.prealloc:
                    section.prealloc()
        except EpcPoolExhausted as exc:
            for section in sections:
                section.close()
            raise QemuOptionError("qemu_prealloc_mem: preallocating memory failed: Bad address",
                                  hint=f"({exc} on host '{self.host.name}')\n") from None
        return sections

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Power on: the firmware applies ``etc/msr_feature_control`` to every vCPU, then the
        guest boots. The machine is then running.

        With ``-incoming`` the machine waits in ``inmigrate`` instead; with ``-incoming
        file:PATH`` it loads that stream now and runs (a stream it refuses raises
        :class:`MachineError`, and the machine stays in ``inmigrate`` with nothing loaded:
        QEMU would exit here)."""
        with self._lock:
            if self.state is not RunState.PRELAUNCH:
                raise MachineError(f"the machine has already been started (it is {self.state})")
            if self.config.incoming is not None:
                self.state = RunState.INMIGRATE
                if self.config.incoming != "defer":
                    self._receive_uri(self.config.incoming)
                return
            self._power_on()
            self.state = RunState.RUNNING

    def _power_on(self) -> None:
        apply_feature_control(self.fw_cfg, self.vcpu_msrs)
        self.boot_guest()

    def quiesce_guest(self) -> None:
        """Stop the guest's vCPUs before a reset changes the processor under them (QEMU pauses
        all vCPUs before ``qemu_system_reset``). The bare platform runs no guest code."""

    def boot_guest(self) -> None:
        """Boot the guest OS after the firmware. The bare platform has none (like QEMU with no
        boot disk, it just sits in the firmware); :class:`vsgx.Machine` boots vsgx's Linux
        guest here."""

    def pause(self) -> None:
        """QMP ``stop``: pause the vCPUs (``STOP`` event when it was running)."""
        with self._lock:
            self._require_alive()
            if self.state is RunState.RUNNING:
                self.state = RunState.PAUSED
                self._emit("STOP", {})

    def cont(self) -> None:
        """QMP ``cont``: resume (``RESUME`` event when it was paused or not yet started)."""
        with self._lock:
            self._require_alive()
            if self.state is RunState.PRELAUNCH:
                self._power_on()
            if self.state is not RunState.RUNNING:
                self.state = RunState.RUNNING
                self._emit("RESUME", {})

    def system_reset(self) -> None:
        """QMP ``system_reset``: a platform reset. Every vCPU's MSRs return to their power-on
        values, the virtual EPC is emptied (QEMU's ``sgx_epc_reset`` runs
        ``SGX_IOC_VEPC_REMOVE_ALL``: every enclave is gone), and the firmware and guest run
        again (at the next ``cont`` if the machine was not running). The host did not reboot,
        so its per-boot keys stay."""
        with self._lock:
            self._require_alive()
            self.quiesce_guest()
            for msrs in self.vcpu_msrs:
                msrs.reset()
            if self.processor is not None:
                self.processor.power_cycle(self.host.boot)
            self._emit("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
            if self.state is RunState.RUNNING:
                self._power_on()
            else:  # qemu_system_reset: a machine that is not running waits in prelaunch
                self.state = RunState.PRELAUNCH

    def quit(self) -> None:
        """QMP ``quit``: ``SHUTDOWN`` event, then the machine is torn down."""
        with self._lock:
            if self.state is RunState.SHUTDOWN:
                return
            self._emit("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
            self.close()

    def stop(self) -> None:
        """Shut the machine down (as leaving a ``with`` block does): :meth:`close`. QMP's
        ``stop``, which only pauses, is :meth:`pause`."""
        self.close()

    def close(self) -> None:
        """Release everything: the EPC pages go back to the host pool, memory is unmapped."""
        with self._lock:
            if self.state is RunState.SHUTDOWN:
                return
            self.state = RunState.SHUTDOWN
            for section in self.epc_sections:
                section.close()
            self.ram.close()

    def __enter__(self) -> VirtualMachine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _require_alive(self) -> None:
        if self.state is RunState.SHUTDOWN:
            raise MachineError("the machine has shut down")

    # -- migration ----------------------------------------------------------------------------

    def check_migratable(self) -> None:
        """Raise :class:`MachineError` when the machine's state cannot be migrated (QEMU's
        migration blockers, ``migration_is_blocked``). The bare platform always can;
        :class:`vsgx.Machine` refuses while a guest thread is inside a vDSO call."""

    def save_guest_state(self) -> bytes | None:
        """The ``guest`` section of the stream: the guest OS's state outside guest RAM.
        The bare platform has no guest OS (None: no section)."""
        return None

    def check_guest_state(self, payload: memoryview | None) -> Callable[[], None]:
        """Check the stream's ``guest`` section (None when it has none) before anything is
        loaded, raising :class:`MigrationStreamError`; return what loads it once RAM and
        vCPU state are in. The bare platform has no guest OS to load it into, so a stream
        with one is refused as QEMU refuses a section it does not know."""
        if payload is not None:
            raise MigrationStreamError("Unknown savevm section or instance 'guest' 0. Make "
                                       "sure that your current VM setup matches your saved "
                                       "VM setup (this machine has no guest OS)")
        return lambda: None

    def migrate_to_file(self, path: str | os.PathLike[str]) -> None:
        """Migrate to the file ``path`` (QMP ``migrate`` with ``uri`` ``file:PATH``): write
        the stream, after which this machine is in ``postmigrate``. A machine built with
        ``-incoming file:PATH`` (or ``-incoming defer`` and :meth:`migrate_incoming`) loads
        it, on this host or another."""
        with self._lock:
            self._prepare_outgoing()
            self._send(os.fspath(path))

    def migrate_to_uri(self, uri: str) -> None:
        """QMP ``migrate`` (``qmp_migrate``): only ``file:PATH`` URIs."""
        with self._lock:
            self._prepare_outgoing()
            try:
                path = file_uri_path(uri, incoming=False)
            except MigrationStreamError as exc:
                self._set_migration_status("failed")
                raise MachineError(str(exc)) from None
            self._send(path)

    def migrate(self, dest: VirtualMachine) -> None:
        """Migrate to ``dest``, another machine in this process (on this host or another),
        through the same stream as :meth:`migrate_to_file`, held in a temporary file.
        ``dest`` must be waiting for it (built with ``-incoming defer`` and started). Its
        configuration is compared first, so a mismatched destination refuses before this
        machine stops; afterwards this machine is in ``postmigrate`` and ``dest`` runs."""
        if dest is self:
            raise MachineError("a machine cannot migrate to itself")
        with dest._lock:
            dest._expect_incoming()
            mismatch = config_mismatch(self._fingerprint(), dest._fingerprint())
        if mismatch is not None:
            raise MachineError(mismatch)
        with tempfile.TemporaryFile(prefix="vsgx-migration-") as stream:
            with self._lock:
                self._prepare_outgoing()
                self._send(stream)
            stream.seek(0)
            with dest._lock:
                dest._expect_incoming()
                dest._migration = {}
                dest._set_migration_status("setup")
                dest._receive(stream)
                dest._incoming_started = True

    def migrate_incoming(self, uri: str) -> None:
        """QMP ``migrate-incoming`` (``qmp_migrate_incoming``), for ``-incoming defer``: load
        the stream at ``uri`` (``file:PATH``). A refused stream loads nothing and leaves the
        machine waiting, so it may be given another (QEMU exits instead)."""
        with self._lock:
            self._expect_incoming()
            self._receive_uri(uri)
            self._incoming_started = True

    def set_migration_events(self, enabled: bool) -> None:
        """The ``events`` migration capability: emit ``MIGRATION`` at every status change
        (``migrate_generate_event``)."""
        with self._lock:
            self._migration_events = enabled

    def query_migrate(self) -> dict[str, Any]:
        """``query-migrate`` (``qapi/migration.json`` ``MigrationInfo``): ``{}`` before any
        migration; ``status``; for a completed outgoing migration, ``ram`` (its
        ``MigrationStats``: ``duplicate`` counts the zero pages left out, ``normal`` the
        pages sent), ``total-time``, ``downtime`` and ``setup-time`` in milliseconds; for a
        failed one, ``error-desc`` when the stream itself failed."""
        with self._lock:
            return dict(self._migration)

    def _expect_incoming(self) -> None:
        if self._incoming_started:
            raise MachineError("The incoming migration has already been started")
        if self.state is not RunState.INMIGRATE:
            raise MachineError("'-incoming' was not specified on the command line")

    def _fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.config, self.layout, self.cpuid)

    def _set_migration_status(self, status: str) -> None:
        self._migration["status"] = status
        if self._migration_events:
            self._emit("MIGRATION", {"status": status})

    def _fail_migration(self, message: str) -> MachineError:
        """Mark the migration ``failed`` with ``error-desc`` (``migrate_set_error``) and
        return the error to raise."""
        self._migration = {}
        self._set_migration_status("failed")
        self._migration["error-desc"] = message
        return MachineError(message)

    def _prepare_outgoing(self) -> None:
        """``migrate_prepare``: refuse a destination-to-be and blocked machines, then start
        afresh in ``setup``."""
        self._require_alive()
        if self.state is RunState.INMIGRATE:
            raise MachineError("Guest is waiting for an incoming migration")
        self.check_migratable()
        self._migration = {}
        self._set_migration_status("setup")

    def _send(self, sink: str | BinaryIO) -> None:
        """``migration_thread``: stop the vCPUs, write the stream, end in ``postmigrate``;
        on an I/O error the machine goes back to the state it had (``RESUME`` if it was
        running) and the migration is ``failed``."""
        started = time.monotonic()
        try:
            out = open(sink, "wb") if isinstance(sink, str) else sink
        except OSError as exc:
            raise self._fail_migration(f"Could not open '{sink}': {exc.strerror}") from None
        previous = self.state
        try:
            self._set_migration_status("active")
            setup = time.monotonic()
            if previous is RunState.RUNNING:
                self._emit("STOP", {})
            self.state = RunState.FINISH_MIGRATE
            first = out.tell()
            try:
                stats = save_machine(out, self._fingerprint(), self.save_vcpu_state(),
                                     self.ram.regions(), self.save_guest_state())
                out.flush()
            except OSError as exc:
                self.state = previous
                if previous is RunState.RUNNING:
                    self._emit("RESUME", {})
                raise self._fail_migration(f"migration failed: {exc.strerror}") from None
            transferred = out.tell() - first
        finally:
            if out is not sink:
                out.close()
        self.state = RunState.POSTMIGRATE
        done = time.monotonic()
        total_ms = max(1, round((done - started) * 1000))
        self._set_migration_status("completed")
        self._migration.update({
            "ram": {"transferred": transferred, "remaining": 0, "total": stats.total,
                    "duplicate": stats.duplicate, "skipped": 0, "normal": stats.normal,
                    "normal-bytes": stats.normal * PAGE_SIZE, "dirty-pages-rate": 0,
                    "mbps": round(transferred * 8 / 1e6 / max(done - started, 1e-6), 3),
                    "dirty-sync-count": 1, "postcopy-requests": 0, "page-size": PAGE_SIZE,
                    "multifd-bytes": 0, "pages-per-second": 0, "precopy-bytes": 0,
                    "downtime-bytes": transferred, "postcopy-bytes": 0,
                    "dirty-sync-missed-zero-copy": 0},
            "total-time": total_ms,
            "downtime": max(1, round((done - setup) * 1000)),
            "setup-time": round((setup - started) * 1000)})

    def _receive_uri(self, uri: str) -> None:
        """``qemu_start_incoming_migration``: open ``file:PATH`` and load it."""
        self._migration = {}
        self._set_migration_status("setup")
        try:
            path = file_uri_path(uri, incoming=True)
        except MigrationStreamError as exc:
            raise self._fail_migration(str(exc)) from None
        try:
            source = open(path, "rb")
        except OSError as exc:
            raise self._fail_migration(f"Could not open '{path}': {exc.strerror}") from None
        with source:
            self._receive(source)

    def _receive(self, source: BinaryIO) -> None:
        """``process_incoming_migration_co``: check the whole stream, the configuration it
        was made for and the guest state, then (and only then) boot the platform, load RAM,
        vCPU state and the guest state, and run. The EPC keeps nothing: the machine has just
        been built. Loading the guest state can still fail only if the destination's guest
        booted unlike the source's despite equal configurations (it then stays in
        ``inmigrate``, with RAM loaded)."""
        self._set_migration_status("active")
        try:
            size = os.fstat(source.fileno()).st_size
            if size == 0:
                raise MigrationStreamError("load of migration failed: Input/output error "
                                           "(the stream is empty)")
            # Not closed explicitly: the views into it live on in ``state``; the mapping goes
            # when the last of them does.
            data = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)
            ranges = [(base, len(region)) for base, region in self.ram.regions()]
            state = read_machine(memoryview(data), ranges)
            mismatch = config_mismatch(state.config, self._fingerprint())
            if mismatch is not None:
                raise MigrationStreamError(mismatch)
            vcpus = self._parse_vcpu_state(state.vcpus)
            load_guest = self.check_guest_state(state.guest)
        except (MigrationStreamError, MachineError) as exc:
            raise self._fail_migration(str(exc)) from None
        self._load(state, vcpus)
        try:
            load_guest()
        except MachineError as exc:  # the booted guest differs from the source's
            raise self._fail_migration(str(exc)) from None
        self.state = RunState.RUNNING
        self._emit("RESUME", {})
        self._set_migration_status("completed")

    def _load(self, state: MachineState, vcpus: list[tuple[int, list[int]]]) -> None:
        self._power_on()
        self.ram.clear()
        for addr, pages in state.ram:
            self.ram.write(addr, pages)
        self._apply_vcpu_state(vcpus)

    # -- vCPU state ---------------------------------------------------------------------------

    def save_vcpu_state(self) -> list[dict[str, Any]]:
        """Each vCPU's SGX MSRs as QEMU migrates them (``target/i386/machine.c``):
        ``cpu/msr_ia32_feature_control`` always, ``cpu/intel_sgx`` (the four LE public-key
        hash MSRs) only when the guest CPU has ``sgxlc`` (its ``needed`` function)."""
        has_lc = self.cpuid.has(SgxFeature.SGXLC)
        states = []
        for msrs in self.vcpu_msrs:
            state: dict[str, Any] = {"cpu/msr_ia32_feature_control": msrs.feature_control}
            if has_lc:
                state["cpu/intel_sgx"] = list(msrs.lepubkeyhash)
            states.append(state)
        return states

    def load_vcpu_state(self, states: Sequence[dict[str, Any]]) -> None:
        """Put saved vCPU MSRs back (``kvm_put_msrs``: host-initiated writes, so the lock bit
        and the launch-control write rules do not apply). The state must come from a machine
        with the same vCPU count and launch-control setting."""
        self._apply_vcpu_state(self._parse_vcpu_state(states))

    def _parse_vcpu_state(self, states: Sequence[dict[str, Any]]
                          ) -> list[tuple[int, list[int]]]:
        """Check saved vCPU state against this machine; (feature control, LE hashes) per
        vCPU. Nothing is changed, so a refused state loads nothing."""
        if len(states) != len(self.vcpu_msrs):
            raise MachineError(f"vCPU state for {len(states)} vCPUs does not fit a machine "
                               f"with {len(self.vcpu_msrs)}")
        has_lc = self.cpuid.has(SgxFeature.SGXLC)
        parsed = []
        for index, (msrs, state) in enumerate(zip(self.vcpu_msrs, states, strict=True)):
            if ("cpu/intel_sgx" in state) != has_lc:
                raise MachineError(f"vCPU {index}: subsection cpu/intel_sgx is "
                                   f"{'present' if not has_lc else 'missing'} but the guest "
                                   f"CPU {'lacks' if not has_lc else 'has'} sgxlc")
            hashes = state.get("cpu/intel_sgx", msrs.lepubkeyhash)
            value = state.get("cpu/msr_ia32_feature_control")
            if not (isinstance(value, int) and 0 <= value < 1 << 64
                    and isinstance(hashes, list) and len(hashes) == 4
                    and all(isinstance(h, int) and 0 <= h < 1 << 64 for h in hashes)):
                raise MachineError(f"vCPU {index}: malformed SGX MSR state")
            parsed.append((value, list(hashes)))
        return parsed

    def _apply_vcpu_state(self, states: list[tuple[int, list[int]]]) -> None:
        for msrs, (value, hashes) in zip(self.vcpu_msrs, states, strict=True):
            msrs.feature_control = value
            msrs.lepubkeyhash = hashes

    # -- events -------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, data)`` for every QMP event; returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(event, data)

    # -- what QMP reports ---------------------------------------------------------------------

    def query_sgx(self) -> dict[str, Any]:
        """``query-sgx`` (``hw/i386/sgx.c`` ``sgx_get_info``, 7.2): the four flags are
        hard-coded true; ``section-size`` (deprecated in 7.0, removed in 8.0) is the total."""
        if not self.layout.epc_sections:
            raise MachineError("No EPC regions defined, SGX not available")
        return {"sgx": True, "sgx1": True, "sgx2": True, "flc": True,
                "section-size": self.layout.epc_size,
                "sections": [{"node": s.node, "size": s.size} for s in self.layout.epc_sections]}

    def query_sgx_capabilities(self) -> dict[str, Any]:
        """``query-sgx-capabilities`` (``sgx_get_capabilities``): the host's CPUID, with one
        section per host EPC section whose ``node`` is its index (QEMU's own simplification)."""
        return host_sgx_capabilities(self.host)

    def query_memory_devices(self) -> list[dict[str, Any]]:
        """``query-memory-devices``: one ``sgx-epc`` entry per section (no ``id``: QEMU never
        sets one for these devices)."""
        return [{"type": "sgx-epc",
                 "data": {"memaddr": s.addr, "size": s.size, "node": s.node,
                          "memdev": f"/objects/{s.memdev}"}}
                for s in self.layout.epc_sections]

    def query_cpus_fast(self) -> list[dict[str, Any]]:
        """``query-cpus-fast``. vsgx runs vCPUs on its caller's threads, so ``thread-id`` is
        the process id for every vCPU."""
        smp = self.config.smp
        node_of = {cpu: node.nodeid for node in self.config.numa_nodes for cpu in node.cpus}
        out = []
        for index in range(self.cpus):
            thread, rest = index % smp.threads, index // smp.threads
            core, rest = rest % smp.cores, rest // smp.cores
            die, socket = rest % smp.dies, rest // smp.dies
            props: dict[str, int] = {"core-id": core, "thread-id": thread, "socket-id": socket}
            if smp.dies > 1:
                props["die-id"] = die
            if index in node_of:
                props["node-id"] = node_of[index]
            out.append({"cpu-index": index, "qom-path": f"/machine/unattached/device[{index}]",
                        "thread-id": os.getpid(), "props": props, "target": "x86_64"})
        return out

    def query_status(self) -> dict[str, Any]:
        """``query-status``: the run state (``singlestep`` is always false here)."""
        return {"status": str(self.state), "singlestep": False,
                "running": self.state is RunState.RUNNING}

    def epc_usage(self) -> list[dict[str, int]]:
        """Per section: its guest node, size, and the pages committed from the host so far."""
        return [{"index": s.index, "node": s.node, "size": s.size,
                 "committed": section.committed_pages * PAGE_SIZE}
                for s, section in zip(self.layout.epc_sections, self.epc_sections, strict=True)]


def host_sgx_capabilities(host: Host) -> dict[str, Any]:
    """QEMU 7.2's ``query-sgx-capabilities`` answer for ``host`` (``hw/i386/sgx.c``): without
    ``/dev/sgx_vepc`` (a host without SGX) the error is ``SGX is not enabled in KVM``."""
    prof = host.profile
    if not prof.sgx:
        raise MachineError("SGX is not enabled in KVM")
    eax0 = prof.cpuid(0x12, 0)[0]
    sections = []
    for index in range(8):  # SGX_MAX_EPC_SECTIONS
        kind, _, size = decode_epc_section(prof.cpuid(0x12, 2 + index))
        if kind != EPC_SECTION_VALID:
            break
        sections.append({"node": index, "size": size})
    return {"sgx": bool(prof.cpuid(0x7, 0)[1] >> 2 & 1), "sgx1": bool(eax0 & 1),
            "sgx2": bool(eax0 >> 1 & 1), "flc": bool(prof.cpuid(0x7, 0)[2] >> 30 & 1),
            "section-size": sum(s["size"] for s in sections), "sections": sections}
