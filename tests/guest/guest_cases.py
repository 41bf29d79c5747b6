"""Guest platforms built from the real pieces (command line -> layout -> CPUID -> SRAT -> MSRs
as the firmware leaves them), for the guest-boot tests."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from seeds import SEED_NUMA

from vsgx.cpu.msr import SgxMsrs
from vsgx.platform import parse_qemu_args
from vsgx.platform.acpi import build_srat
from vsgx.platform.cpuid import guest_cpuid
from vsgx.platform.host import PROFILES
from vsgx.platform.layout import guest_layout

Cpuid = Callable[[int, int], tuple[int, int, int, int]]
FC_SGX_LC = 0x60001  # LOCKED | SGX_LC | SGX, what QEMU's fw_cfg gives a -cpu host guest
FC_SGX = 0x40001  # LOCKED | SGX: launch control locked
FC_LC_ONLY = 0x20001  # LOCKED | SGX_LC: SGX off

ONE_EPC = ("-machine pc -m 4G -cpu host -object memory-backend-epc,id=mem1,size=64M,"
           "prealloc=on -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0")
NUMA_EXAMPLE = SEED_NUMA


@dataclass
class FakePlatform:
    """The four members of ``GuestPlatform`` as plain attributes."""

    cpuid: Cpuid
    vcpu_msrs: Sequence[SgxMsrs]
    acpi_tables: dict[str, bytes] = field(default_factory=dict)
    cpus: int = 1


def platform(args: str, feature_control: int | None = FC_SGX_LC, *,
             host: str = "icelake-sp") -> FakePlatform:
    """The guest's view of the machine ``args`` describes on a ``host`` profile host, every
    vCPU's IA32_FEATURE_CONTROL set to ``feature_control`` (None: left as at reset, 0)."""
    config = parse_qemu_args(shlex.split(args))
    layout = guest_layout(config)
    cpuid = guest_cpuid(config.cpu, PROFILES[host], layout)
    msrs = [SgxMsrs(cpuid.sgx_features()) for _ in range(config.smp.cpus)]
    if feature_control is not None:
        for vcpu in msrs:
            vcpu.feature_control = feature_control
    srat = build_srat(config, layout)
    tables = {} if srat is None else {"SRAT": srat}
    return FakePlatform(cpuid, msrs, tables, config.smp.cpus)


def with_vmx(cpuid: Cpuid) -> Cpuid:
    """``cpuid`` plus CPUID.1:ECX.VMX, which vsgx's vCPUs never have (for the kernel paths
    that only a VMX-capable guest takes)."""
    def leaf(eax: int, ecx: int) -> tuple[int, int, int, int]:
        a, b, c, d = cpuid(eax, ecx)
        return (a, b, c | 1 << 5, d) if (eax, ecx) == (1, 0) else (a, b, c, d)
    return leaf


def epc_args(count: int, size: str = "1M", node: int = 0) -> str:
    """``count`` EPC sections of ``size`` on ``node``."""
    objs = " ".join(f"-object memory-backend-epc,id=e{i},size={size}" for i in range(count))
    props = ",".join(f"sgx-epc.{i}.memdev=e{i},sgx-epc.{i}.node={node}" for i in range(count))
    return f"{objs} -M {props}"
