"""What QEMU hands the firmware for SGX, and what the firmware does with it.

``hw/i386/fw_cfg.c`` ``fw_cfg_build_feature_control`` publishes ``etc/msr_feature_control``: the
IA32_FEATURE_CONTROL value the firmware (SeaBIOS, OVMF) writes into MSR 0x3A of every vCPU
before the OS runs, locking it. vsgx's vCPUs model neither VMX nor LMCE, so only the SGX bits
can appear: SGX_ENABLE (bit 18) when the guest CPU has ``sgx``, SGX_LC_ENABLE (bit 17) when it
has ``sgxlc`` (QEMU always leaves launch control unlocked for the guest), plus LOCKED.
"""

from __future__ import annotations

from collections.abc import Sequence

from vsgx.arch import FeatureControl, Msr
from vsgx.cpu.msr import SgxMsrs
from vsgx.platform.config import SgxFeature
from vsgx.platform.cpuid import GuestCpuid

MSR_FEATURE_CONTROL_FILE = "etc/msr_feature_control"


def fw_cfg_files(cpuid: GuestCpuid) -> dict[str, bytes]:
    """The SGX-related fw_cfg files: ``etc/msr_feature_control`` (8 bytes, little endian)
    unless no bit would be set, in which case QEMU creates no file."""
    bits = 0
    if cpuid.has(SgxFeature.SGX):
        bits |= FeatureControl.SGX
    if cpuid.has(SgxFeature.SGXLC):
        bits |= FeatureControl.SGX_LC
    if not bits:
        return {}
    return {MSR_FEATURE_CONTROL_FILE: int(bits | FeatureControl.LOCKED).to_bytes(8, "little")}


def apply_feature_control(files: dict[str, bytes], vcpus: Sequence[SgxMsrs]) -> None:
    """The firmware's part (SeaBIOS ``src/fw/msr_feature_control.c``): write the value to
    IA32_FEATURE_CONTROL on every vCPU. Without the file the MSR stays 0 (unlocked, SGX off)."""
    raw = files.get(MSR_FEATURE_CONTROL_FILE)
    if raw is None:
        return
    value = int.from_bytes(raw, "little")
    for msrs in vcpus:
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, value)
