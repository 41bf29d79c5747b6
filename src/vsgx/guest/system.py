"""The running guest operating system: what it found at boot (:class:`GuestKernel`) and the
kernel services its processes use — physical memory, the EPC allocator, the ENCLS wrappers,
the SGX device nodes — and :meth:`GuestOS.spawn`, which starts a process.

``/dev/sgx_enclave`` and ``/dev/sgx_provision`` exist when boot registered them
(:attr:`GuestKernel.devices`). ``/dev/sgx_vepc`` would need VMX, which vsgx's vCPUs do not
have, so the guest never registers it and this model has no driver for it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from vsgx.cpu.processor import SgxProcessor
from vsgx.engine import Vcpu
from vsgx.guest.boot import GuestKernel, GuestPlatform
from vsgx.guest.encl import Enclave
from vsgx.guest.encls import Encls
from vsgx.guest.epc import EpcAllocator
from vsgx.guest.memory import GuestRamView, PhysicalMemory
from vsgx.guest.numa import NumaMemblk
from vsgx.guest.process import Process
from vsgx.guest.sgx import GuestEpcSection
from vsgx.guest.sgx_driver import SgxDriverConfig, SgxEnclaveDevice, SgxProvisionDevice
from vsgx.guest.vdso import VcpuPool
from vsgx.guest.vfs import FileOperations

SGX_ENCLAVE = "/dev/sgx_enclave"
SGX_PROVISION = "/dev/sgx_provision"


class GuestMachine(GuestPlatform, Protocol):
    """The machine a guest OS runs on: what boot reads, plus guest RAM and the SGX processor
    (None without EPC)."""

    @property
    def ram(self) -> GuestRamView: ...

    @property
    def processor(self) -> SgxProcessor | None: ...


KICK_TIMEOUT = 5.0
"""How long the reclaimer waits for the threads it interrupted to leave an enclave."""


def kick_enclave_threads(processor: SgxProcessor, cpus: VcpuPool, encl: Enclave) -> None:
    """The reclaimer's IPI (``sgx_encl_ewb`` -> ``on_each_cpu_mask``): interrupt every vCPU
    running inside ``encl`` until each one that was inside at the last ETRACK has left it by
    an AEX (``thread_exited``), so that EWB can succeed. Interrupts are re-sent while
    waiting, since one sent between two runs of a vCPU is lost."""
    idx = processor.epc.index_of(encl.secs_pa)
    deadline = time.monotonic() + KICK_TIMEOUT
    while time.monotonic() < deadline:
        with processor.lock:
            state = processor.enclaves.get(idx) if idx is not None else None
            waiting = set() if state is None else set(state.tracking)
        if not waiting:
            return
        cpus.interrupt(waiting)
        time.sleep(0.0005)


class GuestOS:
    """vsgx's running Linux guest. The boot facts of :class:`GuestKernel` are available as
    attributes of the same names."""

    def __init__(self, kernel: GuestKernel, machine: GuestMachine) -> None:
        self.kernel = kernel
        self.memory = PhysicalMemory(machine.ram, [(s.phys_addr, s.size)
                                                   for s in kernel.epc_sections])
        self.epc: EpcAllocator | None = None
        """The EPC page allocator (None when the guest set up no EPC)."""
        self._devices: dict[str, FileOperations] = {}
        processor = machine.processor
        if processor is not None and kernel.epc_sections:
            self.epc = EpcAllocator(kernel.epc_sections, Encls(processor, self.memory))
            drivers: dict[str, FileOperations] = {
                SGX_ENCLAVE: SgxEnclaveDevice(self.epc, SgxDriverConfig.from_cpuid(
                    machine.cpuid)),
                SGX_PROVISION: SgxProvisionDevice(),
            }
            self._devices = {name: drivers[name] for name in kernel.devices if name in drivers}
        self._next_pid = 1
        self._processes: list[Process] = []
        self._lock = threading.Lock()
        self.cpus: VcpuPool | None = None
        """The vCPUs processes run their enclaves on (None without an SGX processor)."""
        if processor is not None:
            regions, cpuid = machine.ram.regions(), machine.cpuid
            self.cpus = VcpuPool(machine.cpus, lambda lp: Vcpu(processor, lp, regions, cpuid))
            if self.epc is not None:
                self.epc.reclaimer.kick_enclave_threads = functools.partial(
                    kick_enclave_threads, processor, self.cpus)

    # -- boot facts ---------------------------------------------------------------------------

    @property
    def dmesg(self) -> tuple[str, ...]:
        return self.kernel.dmesg

    @property
    def cpuinfo_flags(self) -> tuple[str, ...]:
        return self.kernel.cpuinfo_flags

    @property
    def sgx(self) -> bool:
        return self.kernel.sgx

    @property
    def sgx_lc(self) -> bool:
        return self.kernel.sgx_lc

    @property
    def devices(self) -> tuple[str, ...]:
        return self.kernel.devices

    @property
    def epc_sections(self) -> tuple[GuestEpcSection, ...]:
        return self.kernel.epc_sections

    @property
    def numa_memory(self) -> tuple[NumaMemblk, ...]:
        return self.kernel.numa_memory

    # -- processes ----------------------------------------------------------------------------

    @property
    def device_ops(self) -> Mapping[str, FileOperations]:
        """The device nodes boot registered and their drivers' file operations."""
        return self._devices

    @property
    def next_pid(self) -> int:
        """The pid the next :meth:`spawn` gives (pids are not reused)."""
        return self._next_pid

    def spawn(self, *, node: int = 0) -> Process:
        """A new process (an empty address space, no open files) running on NUMA ``node``."""
        if node < 0:
            raise ValueError(f"NUMA node {node} does not exist")
        with self._lock:
            pid, self._next_pid = self._next_pid, self._next_pid + 1
            process = self.new_process(pid, node)
            self._processes = [*self.processes, process]
        return process

    def new_process(self, pid: int, node: int) -> Process:
        """A process object with pid ``pid`` that the guest does not list yet (what
        :meth:`spawn` and a migration's :meth:`adopt_processes` start from)."""
        return Process(pid, self.memory, self._devices, node, cpus=self.cpus)

    def adopt_processes(self, processes: Sequence[Process], next_pid: int) -> None:
        """Take over the processes a migration rebuilt (from :meth:`new_process`), and the
        pid counter, in a guest that runs none."""
        with self._lock:
            if self.processes:
                raise RuntimeError("the guest already runs processes")
            self._processes = list(processes)
            self._next_pid = next_pid

    def process(self, pid: int) -> Process:
        """The running process with pid ``pid`` (what a program holds on to across a
        migration: ``src.migrate(dest); dest.guest.process(pid)``); ProcessLookupError
        (ESRCH) when no such process runs."""
        for process in self.processes:
            if process.pid == pid:
                return process
        raise ProcessLookupError(f"no process with pid {pid} runs in the guest")

    @property
    def processes(self) -> tuple[Process, ...]:
        """The processes spawned that have not exited."""
        return tuple(p for p in self._processes if not p.exited)

    def shutdown(self) -> None:
        """Release the vCPUs' execution engines (the machine is going away)."""
        if self.cpus is not None:
            self.cpus.close()

