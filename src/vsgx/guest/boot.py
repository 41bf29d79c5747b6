"""Booting vsgx's Linux guest as far as SGX is concerned: what a Linux 6.x kernel (Debian's
configuration) finds, prints and creates on a vsgx machine.

The order is the kernel's: ACPI tables are installed and the SRAT read during ``setup_arch``
(``x86_numa_init``); every vCPU present at boot goes through ``identify_cpu`` and
``init_ia32_feat_ctl``; then the ``sgx_init`` device initcall sets up the EPC and registers the
``/dev/sgx_*`` nodes. :attr:`GuestKernel.dmesg` holds the lines these steps print at the
default log level, without timestamps. Lines of the x86 NUMA core that depend on the E820 map
(``NUMA: Node 0 [mem …] + [mem …]``, ``Faking a node at …``, ``NODE_DATA(…)``) and the ACPI
table listing (which shows table addresses) are outside this model.

vsgx's vCPUs have no VMX (the guest CPUID leaf 1 reads zero), so SGX virtualization is off in
the guest: ``sgx_vepc_init`` finds no X86_FEATURE_VMX and there is no ``/dev/sgx_vepc``, and
without launch control the guest's SGX driver has nothing to offer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vsgx.cpu.msr import SgxMsrs
from vsgx.guest.numa import NumaMemblk, acpi_numa_init, numa_view
from vsgx.guest.sgx import (
    CPUINFO_SGX_FLAGS,
    SGX_CPUID_EPC_SECTION,
    CpuCap,
    Cpuid,
    GuestEpcSection,
    cpu_caps,
    epc_subleaf,
    init_ia32_feat_ctl,
    sgx_init,
)


class GuestPlatform(Protocol):
    """What the guest sees of the machine it boots on (read-only members, so a plain attribute
    of a narrower type, e.g. a ``list`` or a ``GuestCpuid``, satisfies them)."""

    @property
    def cpuid(self) -> Callable[[int, int], tuple[int, int, int, int]]:
        """The guest's CPUID (leaf, subleaf) -> (EAX, EBX, ECX, EDX)."""

    @property
    def vcpu_msrs(self) -> Sequence[SgxMsrs]:
        """Each vCPU's SGX MSRs, IA32_FEATURE_CONTROL already written by the firmware."""

    @property
    def acpi_tables(self) -> Mapping[str, bytes]:
        """The firmware's ACPI tables by signature (``"SRAT"`` when the machine has NUMA)."""

    @property
    def cpus(self) -> int:
        """The number of vCPUs present at boot (the first ``cpus`` of ``vcpu_msrs``)."""


@dataclass(frozen=True)
class GuestKernel:
    """The booted guest kernel's SGX-relevant state.

    ``cpuinfo_flags`` are the SGX flags /proc/cpuinfo shows (``sgx``, ``sgx_lc``), from the
    feature set common to all boot CPUs (``boot_cpu_data``), which ``sgx`` and ``sgx_lc``
    also report (``cpu_feature_enabled``). ``devices`` are the SGX device nodes in
    registration order. ``epc_sections`` are the sections the SGX driver set up (at most 8),
    with the node whose free list holds their pages. ``numa_memory`` are the SRAT's memory
    ranges with ``end`` exclusive (empty when NUMA setup did not use an SRAT).
    """

    dmesg: tuple[str, ...]
    cpuinfo_flags: tuple[str, ...]
    sgx: bool
    sgx_lc: bool
    devices: tuple[str, ...]
    epc_sections: tuple[GuestEpcSection, ...]
    numa_memory: tuple[NumaMemblk, ...]


def boot(platform: GuestPlatform) -> GuestKernel:
    """Boot the guest on ``platform``. Like Linux, this locks IA32_FEATURE_CONTROL on any
    vCPU whose firmware left it unlocked."""
    cpuid = platform.cpuid
    table = platform.acpi_tables.get("SRAT")
    srat = None if table is None else acpi_numa_init(table)
    numa = numa_view(srat, platform.cpus, _ram_end(cpuid))
    caps, feat_ctl_lines = identify_cpus(cpuid, platform.vcpu_msrs[:platform.cpus])
    sgx = sgx_init(caps, cpuid, numa)
    srat_lines = () if srat is None else srat.lines
    return GuestKernel(
        dmesg=(*srat_lines, *feat_ctl_lines, *sgx.lines),
        cpuinfo_flags=tuple(str(flag) for flag in CPUINFO_SGX_FLAGS if flag in caps),
        sgx=CpuCap.SGX in caps, sgx_lc=CpuCap.SGX_LC in caps, devices=sgx.devices,
        epc_sections=sgx.sections, numa_memory=numa.ranges)


def identify_cpus(cpuid: Cpuid, vcpus: Sequence[SgxMsrs]) -> tuple[frozenset[CpuCap],
                                                                    tuple[str, ...]]:
    """``identify_cpu`` on each boot vCPU: the capabilities common to all of them (the AND
    ``identify_cpu`` folds into ``boot_cpu_data``) and ``init_ia32_feat_ctl``'s messages,
    each once (they are ``pr_err_once``)."""
    found = cpu_caps(cpuid)
    common = set(found)
    messages: list[str] = []
    for msrs in vcpus:
        result = init_ia32_feat_ctl(found, msrs)
        common &= result.caps
        messages += [message for message in result.messages if message not in messages]
    return frozenset(common), tuple(messages)


def _ram_end(cpuid: Cpuid) -> int | None:
    """Where RAM ends for :func:`numa_view`: the first EPC section's address."""
    kind, addr, _ = epc_subleaf(cpuid, 0)
    return addr if kind == SGX_CPUID_EPC_SECTION else None
