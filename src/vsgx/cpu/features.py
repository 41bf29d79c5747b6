"""What an SGX processor supports: the facts CPUID leaf 0x12 reports (SDM 36.7.2 "Intel SGX
Resource Enumeration Leaves") and that the leaves check against."""

from __future__ import annotations

from dataclasses import dataclass

from vsgx.arch import (
    ATTRIBUTES,
    ATTRIBUTES_FLAGS_DEFINED,
    XFRM_LEGACY,
    AttributesFlags,
    MiscSelect,
    Xfrm,
)


@dataclass(frozen=True)
class SgxFeatures:
    """SGX capabilities of a logical processor.

    ``sgx2`` enables EAUG/EMODPR/EMODT/EACCEPT/EACCEPTCOPY/EMODPE; ``flc`` is flexible launch
    control (CPUID.7.0:ECX[30], writable IA32_SGXLEPUBKEYHASH); ``kss`` key-separation and
    sharing (CONFIGID, CONFIGSVN, ISVFAMILYID, ISVEXTPRODID); ``debug``, ``mode64``,
    ``provisionkey``, ``einittoken_key``, ``kss`` and ``aexnotify`` say whether ECREATE may set
    that ATTRIBUTES bit (CPUID.(12H,1).EAX; a hypervisor masks them, KVM by intercepting
    ECREATE). ``max_enclave_size_64`` is
    log2 of the largest enclave in 64-bit mode (CPUID.(12H,0).EDX[15:8]).
    """

    sgx1: bool = True
    sgx2: bool = True
    flc: bool = True
    kss: bool = False
    exinfo: bool = True
    aexnotify: bool = False
    provisionkey: bool = True
    einittoken_key: bool = True
    debug: bool = True
    mode64: bool = True
    max_enclave_size_64: int = 36
    xfrm_supported: int = int(Xfrm.X87 | Xfrm.SSE | Xfrm.AVX)

    @property
    def miscselect_supported(self) -> int:
        """CPUID.(12H,0).EBX: the MISCSELECT bits that may be set."""
        return int(MiscSelect.EXINFO) if self.exinfo else 0

    @property
    def attributes_supported(self) -> ATTRIBUTES:
        """CPUID.(12H,1).EAX..EDX: the ATTRIBUTES bits ECREATE accepts."""
        flags = ATTRIBUTES_FLAGS_DEFINED & ~int(AttributesFlags.CET)
        if not self.debug:
            flags &= ~int(AttributesFlags.DEBUG)
        if not self.mode64:
            flags &= ~int(AttributesFlags.MODE64BIT)
        if not self.kss:
            flags &= ~int(AttributesFlags.KSS)
        if not self.aexnotify:
            flags &= ~int(AttributesFlags.AEXNOTIFY)
        if not self.provisionkey:
            flags &= ~int(AttributesFlags.PROVISIONKEY)
        if not self.einittoken_key:
            flags &= ~int(AttributesFlags.EINITTOKEN_KEY)
        return ATTRIBUTES(flags, self.xfrm_supported | XFRM_LEGACY)
