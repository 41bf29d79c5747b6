"""SGX model-specific registers: IA32_FEATURE_CONTROL and IA32_SGXLEPUBKEYHASH0..3.

SDM Vol. 4 Table 2-2: the LE public-key hash MSRs are readable when the processor has SGX launch
control (CPUID.(EAX=07H,ECX=0):ECX[30]); they are writable only when IA32_FEATURE_CONTROL is
locked (bit 0) with SGX_LC_ENABLE (bit 17) set. IA32_FEATURE_CONTROL itself faults on any write
once locked. Reset values: feature control 0, hash MSRs Intel's launch-enclave key hash.
"""

from __future__ import annotations

from vsgx.arch import INTEL_LE_PUBKEY_HASH, FeatureControl, Msr
from vsgx.cpu.fault import gp
from vsgx.cpu.features import SgxFeatures

_FEATURE_CONTROL_DEFINED = int(
    FeatureControl.LOCKED | FeatureControl.VMXON_INSIDE_SMX | FeatureControl.VMXON_OUTSIDE_SMX
    | FeatureControl.SGX_LC | FeatureControl.SGX | FeatureControl.LMCE
)
_SGX_ENABLED = int(FeatureControl.LOCKED | FeatureControl.SGX)
_HASH_MSRS = (Msr.IA32_SGXLEPUBKEYHASH0, Msr.IA32_SGXLEPUBKEYHASH1,
              Msr.IA32_SGXLEPUBKEYHASH2, Msr.IA32_SGXLEPUBKEYHASH3)


class SgxMsrs:
    """The SGX MSRs of one logical processor."""

    sgx_enabled: bool
    """SGX is usable: feature control locked with the SGX enable bit (SDM 36.7.1). Kept in
    step with :attr:`feature_control` (every ENCLS/ENCLU leaf tests it first)."""

    def __init__(self, features: SgxFeatures) -> None:
        self.features = features
        self.feature_control = 0
        self.lepubkeyhash: list[int] = list(INTEL_LE_PUBKEY_HASH)

    @property
    def feature_control(self) -> int:
        """IA32_FEATURE_CONTROL (MSR 0x3A)."""
        return self._feature_control

    @feature_control.setter
    def feature_control(self, value: int) -> None:
        self._feature_control = value
        self.sgx_enabled = value & _SGX_ENABLED == _SGX_ENABLED

    @property
    def lepubkeyhash_writable(self) -> bool:
        fc = self.feature_control
        return (self.features.flc and bool(fc & FeatureControl.LOCKED)
                and bool(fc & FeatureControl.SGX_LC))

    def lepubkeyhash_bytes(self) -> bytes:
        """The hash MSRs as the 32-byte MRSIGNER EINIT compares (MSR 0x8C = bytes 0..7)."""
        return b"".join(v.to_bytes(8, "little") for v in self.lepubkeyhash)

    def rdmsr(self, index: int) -> int:
        if index == Msr.IA32_FEATURE_CONTROL:
            return self.feature_control
        if index in _HASH_MSRS:
            if not self.features.flc:
                raise gp(f"RDMSR {index:#x}: SGX launch control is not supported")
            return self.lepubkeyhash[index - Msr.IA32_SGXLEPUBKEYHASH0]
        raise gp(f"RDMSR {index:#x}: not an MSR this model implements")

    def wrmsr(self, index: int, value: int) -> None:
        if not 0 <= value < 1 << 64:
            raise gp(f"WRMSR {index:#x}: value does not fit 64 bits")
        if index == Msr.IA32_FEATURE_CONTROL:
            self._write_feature_control(value)
        elif index in _HASH_MSRS:
            if not self.lepubkeyhash_writable:
                raise gp(f"WRMSR {index:#x}: IA32_SGXLEPUBKEYHASH is writable only with launch "
                         "control enabled (IA32_FEATURE_CONTROL bits 17 and 0)")
            self.lepubkeyhash[index - Msr.IA32_SGXLEPUBKEYHASH0] = value
        else:
            raise gp(f"WRMSR {index:#x}: not an MSR this model implements")

    def _write_feature_control(self, value: int) -> None:
        if self.feature_control & FeatureControl.LOCKED:
            raise gp("WRMSR 0x3a: IA32_FEATURE_CONTROL is locked")
        if value & ~_FEATURE_CONTROL_DEFINED:
            raise gp(f"WRMSR 0x3a: reserved bits set in {value:#x}")
        if value & FeatureControl.SGX and not self.features.sgx1:
            raise gp("WRMSR 0x3a: SGX is not supported")
        if value & FeatureControl.SGX_LC and not self.features.flc:
            raise gp("WRMSR 0x3a: SGX launch control is not supported")
        self.feature_control = value

    def reset(self) -> None:
        """Power-on values (QEMU ``x86_cpu_set_sgxlepubkeyhash`` at reset)."""
        self.feature_control = 0
        self.lepubkeyhash = list(INTEL_LE_PUBKEY_HASH)
