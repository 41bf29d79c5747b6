"""The guest kernel's SGX bring-up: CPU feature bits from CPUID, IA32_FEATURE_CONTROL
(``arch/x86/kernel/cpu/feat_ctl.c`` ``init_ia32_feat_ctl``), then the SGX driver's initcall
(``arch/x86/kernel/cpu/sgx/main.c`` ``sgx_init`` and ``sgx_page_cache_init``,
``driver.c`` ``sgx_drv_init``, ``virt.c`` ``sgx_vepc_init``).

Kernel configuration assumed (Debian's): ``CONFIG_X86_SGX=y``, ``CONFIG_X86_SGX_KVM=y``,
``CONFIG_KVM_INTEL=m`` (``IS_ENABLED`` is true for a module), no tboot. Messages are those of
current mainline Linux: ``SGX disabled or unsupported by BIOS.`` (was ``SGX disabled by BIOS.``
until a late-2024 change), the ``node%d has both CPUs and memory`` line (added late 2024) and
``sgx_drv_init``'s ``SGX disabled: …, /dev/sgx_enclave disabled.`` lines (added 2025, also
taken into stable kernels); older 6.x kernels lack or word them differently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from vsgx.arch import FeatureControl, Msr
from vsgx.arch.cpuid import EPC_SECTION_INVALID, EPC_SECTION_VALID, decode_epc_section
from vsgx.cpu.msr import SgxMsrs
from vsgx.guest.numa import NumaView

Cpuid = Callable[[int, int], tuple[int, int, int, int]]

SGX_CPUID = 0x12
SGX_CPUID_EPC = 2
SGX_CPUID_EPC_INVALID = EPC_SECTION_INVALID
SGX_CPUID_EPC_SECTION = EPC_SECTION_VALID
SGX_MAX_EPC_SECTIONS = 8
"""``sgx.h``: the driver's section array; sub-leaves past the eighth are never read."""


class CpuCap(StrEnum):
    """The X86_FEATURE_* bits this model tracks (``arch/x86/include/asm/cpufeatures.h``)."""

    VMX = "vmx"  # CPUID.1:ECX[5]
    SGX = "sgx"  # CPUID.7.0:EBX[2]
    SGX_LC = "sgx_lc"  # CPUID.7.0:ECX[30]


CPUINFO_SGX_FLAGS = (CpuCap.SGX, CpuCap.SGX_LC)
"""The SGX bits with a /proc/cpuinfo name (``"sgx"`` and ``"sgx_lc"`` in cpufeatures.h), in
the order /proc/cpuinfo lists them (capability word 9 before word 16). X86_FEATURE_SGX1,
SGX2 and SGX_EDECCSSA have no name there, and nothing here reads them (``sgx_drv_init`` reads
CPUID.(12H,0).EAX itself)."""

_CPUID_BITS = {CpuCap.VMX: (0x1, 0, 2, 5), CpuCap.SGX: (0x7, 0, 1, 2),
               CpuCap.SGX_LC: (0x7, 0, 2, 30)}
"""Where each capability comes from: (leaf, subleaf, register index EAX..EDX, bit)."""

_DEPENDENTS = {CpuCap.SGX: (CpuCap.SGX_LC,)}
"""``cpuid-deps.c``: clearing a feature clears the features that depend on it (of the bits
tracked here, only SGX_LC depends on SGX)."""


def cpu_caps(cpuid: Cpuid) -> frozenset[CpuCap]:
    """The capabilities ``identify_cpu`` reads from CPUID."""
    return frozenset(cap for cap, (leaf, subleaf, reg, bit) in _CPUID_BITS.items()
                     if cpuid(leaf, subleaf)[reg] >> bit & 1)


def clear_cpu_cap(caps: set[CpuCap], cap: CpuCap) -> None:
    """``clear_cpu_cap`` with ``do_clear_cpu_cap``'s dependency walk."""
    caps.discard(cap)
    for dependent in _DEPENDENTS.get(cap, ()):
        clear_cpu_cap(caps, dependent)


@dataclass(frozen=True)
class FeatCtl:
    """One CPU after ``init_ia32_feat_ctl``: its capabilities and the messages it printed."""

    caps: frozenset[CpuCap]
    messages: tuple[str, ...]


def init_ia32_feat_ctl(caps: frozenset[CpuCap], msrs: SgxMsrs) -> FeatCtl:
    """``init_ia32_feat_ctl`` for one CPU. If the firmware left IA32_FEATURE_CONTROL unlocked
    the kernel writes and locks it itself (through ``msrs``, so a vCPU whose MSR model refuses
    the value raises its #GP); then VMX and SGX are dropped as the locked value dictates.
    Messages carry the ``x86/cpu: `` prefix; they are ``pr_err_once``, so the caller keeps
    only each one's first occurrence."""
    enable_vmx = CpuCap.VMX in caps
    enable_sgx_driver = CpuCap.SGX in caps and CpuCap.SGX_LC in caps
    enable_sgx_kvm = CpuCap.SGX in caps and enable_vmx
    msr = _locked_feature_control(msrs, enable_vmx, enable_sgx_driver, enable_sgx_kvm)
    result = set(caps)
    messages = []
    if CpuCap.VMX in result and not msr & FeatureControl.VMXON_OUTSIDE_SMX:
        messages.append("x86/cpu: VMX (outside TXT) disabled by BIOS")
        clear_cpu_cap(result, CpuCap.VMX)
    messages += _update_sgx(result, msr, enable_sgx_driver, enable_sgx_kvm)
    return FeatCtl(frozenset(result), tuple(messages))


def _locked_feature_control(msrs: SgxMsrs, enable_vmx: bool, enable_sgx_driver: bool,
                            enable_sgx_kvm: bool) -> int:
    """The MSR as the BIOS locked it, or as the kernel locks it when the BIOS did not."""
    found = msrs.rdmsr(Msr.IA32_FEATURE_CONTROL)
    if found & FeatureControl.LOCKED:
        return found
    value = FeatureControl.LOCKED
    if enable_vmx:
        value |= FeatureControl.VMXON_OUTSIDE_SMX
    if enable_sgx_kvm or enable_sgx_driver:
        value |= FeatureControl.SGX
        if enable_sgx_driver:
            value |= FeatureControl.SGX_LC
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, int(value))
    return int(value)


def _update_sgx(caps: set[CpuCap], msr: int, enable_sgx_driver: bool,
                enable_sgx_kvm: bool) -> list[str]:
    """``init_ia32_feat_ctl``'s ``update_sgx`` label."""
    if not msr & FeatureControl.SGX:
        clear_cpu_cap(caps, CpuCap.SGX)
        if enable_sgx_kvm or enable_sgx_driver:
            return ["x86/cpu: SGX disabled or unsupported by BIOS."]
        return []
    messages = []
    if CpuCap.VMX not in caps and enable_sgx_kvm:
        messages.append("x86/cpu: SGX virtualization disabled due to lack of VMX.")
        enable_sgx_kvm = False
    if not msr & FeatureControl.SGX_LC and enable_sgx_driver:
        if enable_sgx_kvm:
            messages.append("x86/cpu: SGX Launch Control is locked. "
                            "Support SGX virtualization only.")
            clear_cpu_cap(caps, CpuCap.SGX_LC)
        else:
            messages.append("x86/cpu: SGX Launch Control is locked. Disable SGX.")
            clear_cpu_cap(caps, CpuCap.SGX)
    return messages


class GuestEpcSection(NamedTuple):
    """An EPC section as the guest's SGX driver set it up (``struct sgx_epc_section``): its
    physical start, size and the NUMA node whose free list gets its pages."""

    phys_addr: int
    size: int
    node: int


@dataclass(frozen=True)
class SgxInit:
    """The outcome of ``sgx_init``: log lines (``sgx: `` prefix), the sections it set up and
    the device nodes left registered, in registration order."""

    lines: tuple[str, ...]
    sections: tuple[GuestEpcSection, ...]
    devices: tuple[str, ...]


def sgx_init(caps: frozenset[CpuCap], cpuid: Cpuid, numa: NumaView) -> SgxInit:
    """``sgx_init``: nothing without X86_FEATURE_SGX; otherwise the EPC sections, then
    ``/dev/sgx_provision``, which stays only if ``sgx_drv_init`` (``/dev/sgx_enclave``) or
    ``sgx_vepc_init`` (``/dev/sgx_vepc``) succeeds."""
    if CpuCap.SGX not in caps:
        return SgxInit((), (), ())
    lines, sections = sgx_page_cache_init(cpuid, numa)
    if not sections:
        return SgxInit(tuple(lines), (), ())
    drivers, drv_lines = sgx_drv_init(caps, cpuid)
    if CpuCap.VMX in caps:  # sgx_vepc_init
        drivers.append("/dev/sgx_vepc")
    devices = ("/dev/sgx_provision", *drivers) if drivers else ()
    return SgxInit(tuple(lines + drv_lines), tuple(sections), devices)


def epc_subleaf(cpuid: Cpuid, index: int) -> tuple[int, int, int]:
    """CPUID.(12H, 2 + ``index``) decoded: (type, physical address, size)."""
    return decode_epc_section(cpuid(SGX_CPUID, SGX_CPUID_EPC + index))


def sgx_page_cache_init(cpuid: Cpuid, numa: NumaView) -> tuple[list[str], list[GuestEpcSection]]:
    """``sgx_page_cache_init``: read CPUID.(12H, 2+i) for i < 8, log and place each section.
    A section whose address no NUMA range covers goes to node 0 with a firmware-bug warning."""
    lines: list[str] = []
    sections: list[GuestEpcSection] = []
    for i in range(SGX_MAX_EPC_SECTIONS):
        kind, pa, size = epc_subleaf(cpuid, i)
        if kind == SGX_CPUID_EPC_INVALID:
            break
        if kind != SGX_CPUID_EPC_SECTION:
            lines.append(f"sgx: Unknown EPC section type: {kind}")
            break
        lines.append(f"sgx: EPC section {pa:#x}-{(pa + size - 1) & ((1 << 64) - 1):#x}")
        node = numa.target_node(pa)
        if node is None:
            lines.append("sgx: [Firmware Bug]: Unable to map EPC section to online node. "
                         "Fallback to the NUMA node 0.")
            node = 0
        else:
            node = numa.map_to_online_node(node)
        sections.append(GuestEpcSection(pa, size, node))
    if not sections:
        return [*lines, "sgx: There are zero EPC sections."], []
    with_epc = {section.node for section in sections}
    lines += [f"sgx: node{node} has both CPUs and memory but doesn't have an EPC section"
              for node in numa.online
              if node in numa.with_memory and node in numa.with_cpus and node not in with_epc]
    return lines, sections


def sgx_drv_init(caps: frozenset[CpuCap], cpuid: Cpuid) -> tuple[list[str], list[str]]:
    """``sgx_drv_init``: ``/dev/sgx_enclave`` needs launch control and SGX1; the devices it
    registered and the lines it printed."""
    if CpuCap.SGX_LC not in caps:
        return [], ["sgx: SGX disabled: SGX launch control CPU feature is not available, "
                    "/dev/sgx_enclave disabled."]
    if not cpuid(SGX_CPUID, 0)[0] & 1:
        return [], ["sgx: SGX disabled: SGX1 instruction support not available, "
                    "/dev/sgx_enclave disabled."]
    return ["/dev/sgx_enclave"], []
