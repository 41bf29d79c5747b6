"""The guest's CPUID leaves 7 and 0x12, computed from ``-cpu`` and the host as QEMU 7.2 with KVM
computes them.

Sources: ``target/i386/cpu.c`` (``x86_cpu_expand_features``, ``x86_cpu_filter_features`` and
the ``0x12`` case of ``cpu_x86_cpuid``), ``target/i386/kvm/kvm.c`` (``kvm_arch_init_vcpu``,
``kvm_enable_sgx_provisioning``). The steps:

1. The model's feature words: ``-cpu host`` takes every SGX bit the host offers KVM; every other
   model has none (no built-in QEMU model enables SGX).
2. ``+feat``/``feat=on`` set bits and ``-feat``/``feat=off`` clear them.
3. Requested bits the host lacks are dropped with QEMU's warning: "sub-features that are not
   present in hardware cannot be forced on via '-cpu'".
4. Leaf 0x12 is all zero unless the guest has ``sgx``; subleaf 0 and 1 are the host's values
   masked by the guest's feature words (subleaf 1 ECX always has x87 and SSE); PROVISIONKEY is
   dropped silently when the host has no ``/dev/sgx_provision`` (its driver needs launch
   control); subleaf 2+ describe the guest's EPC sections with the host's section property.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsgx.arch.cpuid import encode_epc_section
from vsgx.cpu.features import SgxFeatures
from vsgx.platform.config import CpuConfig, SgxFeature
from vsgx.platform.host import HostProfile
from vsgx.platform.layout import GuestLayout

Registers = tuple[int, int, int, int]
_REGS = ("eax", "ebx", "ecx", "edx")
XSTATE_FP_SSE = 0x3


def missing_feature_warning(feature: SgxFeature) -> str:
    """QEMU's ``mark_unavailable_features`` warning (``target/i386/cpu.c``), newer format."""
    bit = feature.cpuid
    return (f"host doesn't support requested feature: CPUID[eax={bit.leaf:02x}h,"
            f"ecx={bit.subleaf:02x}h].{bit.register.upper()}.{feature.value} [bit {bit.bit}]")


@dataclass(frozen=True)
class GuestCpuid:
    """The guest's leaf 7 / 0x12 values, and the warnings QEMU printed building them.

    ``enabled`` is the set of SGX feature flags the guest CPU ends up with. ``leaves`` maps
    (leaf, subleaf) to (EAX, EBX, ECX, EDX) for leaf 7 subleaf 0 and leaf 0x12 subleaves 0, 1,
    one per EPC section, and the invalid subleaf that ends the list.
    """

    enabled: frozenset[SgxFeature]
    leaves: dict[tuple[int, int], Registers]
    warnings: tuple[str, ...]

    def __call__(self, leaf: int, subleaf: int) -> Registers:
        """CPUID as the guest executes it (zeros for leaves vsgx does not model)."""
        return self.leaves.get((leaf, subleaf), (0, 0, 0, 0))

    def has(self, feature: SgxFeature) -> bool:
        """The guest's CPUID bit for ``feature`` is set."""
        bit = feature.cpuid
        return bool(self(bit.leaf, bit.subleaf)[_REGS.index(bit.register)] >> bit.bit & 1)

    def sgx_features(self) -> SgxFeatures:
        """What the guest's SGX processor allows, read back from these CPUID values."""
        _, miscselect, _, edx0 = self(0x12, 0)
        _eax1, _, ecx1, edx1 = self(0x12, 1)
        return SgxFeatures(
            sgx1=self.has(SgxFeature.SGX1), sgx2=self.has(SgxFeature.SGX2),
            flc=self.has(SgxFeature.SGXLC), kss=self.has(SgxFeature.SGX_KSS),
            exinfo=bool(miscselect & 1), aexnotify=self.has(SgxFeature.SGX_AEX_NOTIFY),
            provisionkey=self.has(SgxFeature.SGX_PROVISIONKEY),
            einittoken_key=self.has(SgxFeature.SGX_TOKENKEY),
            debug=self.has(SgxFeature.SGX_DEBUG), mode64=self.has(SgxFeature.SGX_MODE64),
            max_enclave_size_64=edx0 >> 8 & 0xFF, xfrm_supported=ecx1 | edx1 << 32)

    def entries(self) -> list[dict[str, int]]:
        """The leaves in order, as ``vsgx cpuid --json`` prints them."""
        return [{"leaf": leaf, "subleaf": subleaf, **dict(zip(_REGS, regs, strict=True))}
                for (leaf, subleaf), regs in sorted(self.leaves.items())]


def _host_offers(host: HostProfile, feature: SgxFeature) -> bool:
    bit = feature.cpuid
    return bool(host.kvm_cpuid(bit.leaf, bit.subleaf)[_REGS.index(bit.register)] >> bit.bit & 1)


def guest_cpuid(cpu: CpuConfig, host: HostProfile, layout: GuestLayout) -> GuestCpuid:
    """Build the guest's CPUID from the ``-cpu`` option, the host and the memory map."""
    enabled = {f for f in SgxFeature if _host_offers(host, f)} if cpu.model == "host" else set()
    missing: set[SgxFeature] = set()
    for feature, on in cpu.features:
        if not on:
            enabled.discard(feature)
        elif _host_offers(host, feature):
            enabled.add(feature)
        else:
            enabled.discard(feature)
            missing.add(feature)
    if SgxFeature.SGX not in enabled:
        enabled.discard(SgxFeature.SGXLC)
    words = _feature_words(enabled)
    leaves: dict[tuple[int, int], Registers] = {
        (0x7, 0): (0, words[0x7, 0, "ebx"], words[0x7, 0, "ecx"], 0)}
    if SgxFeature.SGX in enabled:
        leaves.update(_leaf12(host, layout, words, host_xcr0=cpu.model == "host"))
    if SgxFeature.SGX_PROVISIONKEY in enabled and not host.sgx_lc_available:
        # kvm_enable_sgx_provisioning() cannot open /dev/sgx_provision: the host's SGX driver
        # registers it only with launch control, so QEMU clears the bit without a word.
        enabled.discard(SgxFeature.SGX_PROVISIONKEY)
        eax, ebx, ecx, edx = leaves[0x12, 1]
        leaves[0x12, 1] = (eax & ~(1 << 4), ebx, ecx, edx)
    if SgxFeature.SGX not in enabled:
        enabled = set()
    # x86_cpu_filter_features reports in feature-word order, then bit order.
    order = sorted(missing, key=lambda f: (f.cpuid.leaf, f.cpuid.subleaf,
                                           _REGS.index(f.cpuid.register), f.cpuid.bit))
    return GuestCpuid(frozenset(enabled), leaves,
                      tuple(missing_feature_warning(f) for f in order))


def _feature_words(enabled: set[SgxFeature]) -> dict[tuple[int, int, str], int]:
    words = {(0x7, 0, "ebx"): 0, (0x7, 0, "ecx"): 0, (0x12, 0, "eax"): 0,
             (0x12, 0, "ebx"): 0, (0x12, 1, "eax"): 0}
    for feature in enabled:
        bit = feature.cpuid
        words[bit.leaf, bit.subleaf, bit.register] |= 1 << bit.bit
    return words


def _leaf12(host: HostProfile, layout: GuestLayout, words: dict[tuple[int, int, str], int], *,
            host_xcr0: bool) -> dict[tuple[int, int], Registers]:
    eax0, ebx0, _, edx0 = host.cpuid(0x12, 0)
    eax1, _, ecx1, edx1 = host.cpuid(0x12, 1)
    if not host_xcr0:
        ecx1 = edx1 = 0
    leaves: dict[tuple[int, int], Registers] = {
        (0x12, 0): (eax0 & words[0x12, 0, "eax"], ebx0 & words[0x12, 0, "ebx"], 0, edx0),
        # Subleaf 1: ATTRIBUTES[31:0] masked; XFRM limited to what the guest's XCR0 allows.
        # vsgx's guest XCR0 is the host's for -cpu host and x87|SSE otherwise (no built-in
        # model vsgx accepts enables XSAVE components for SGX).
        (0x12, 1): (eax1 & words[0x12, 1, "eax"], 0, ecx1 | XSTATE_FP_SSE, edx1),
    }
    host_property = host.cpuid(0x12, 2)[2] & 0xF
    for section in layout.epc_sections:
        leaves[0x12, 2 + section.index] = encode_epc_section(section.addr, section.size,
                                                              host_property)
    leaves[0x12, 2 + len(layout.epc_sections)] = (0, 0, 0, 0)
    return leaves
