"""IA32_FEATURE_CONTROL and IA32_SGXLEPUBKEYHASH0..3 (SDM Vol. 4 Table 2-2; reference §2-§3):
reset values, the lock, and the launch-control write rule."""

from __future__ import annotations

from typing import Any

import pytest

from vsgx.arch import INTEL_LE_PUBKEY_HASH, EnclsLeaf, FeatureControl, Msr, SgxError, Vector
from vsgx.cpu import SgxFeatures, SgxMsrs

LOCKED = int(FeatureControl.LOCKED)
SGX = int(FeatureControl.SGX)
SGX_LC = int(FeatureControl.SGX_LC)
HASH_MSRS = [Msr.IA32_SGXLEPUBKEYHASH0 + i for i in range(4)]


def test_reset_values() -> None:
    msrs = SgxMsrs(SgxFeatures())
    assert msrs.rdmsr(Msr.IA32_FEATURE_CONTROL) == 0
    assert [msrs.rdmsr(m) for m in HASH_MSRS] == list(INTEL_LE_PUBKEY_HASH)
    assert not msrs.sgx_enabled


def test_reset_restores_values() -> None:
    msrs = SgxMsrs(SgxFeatures())
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX | SGX_LC)
    msrs.wrmsr(Msr.IA32_SGXLEPUBKEYHASH2, 0x1234)
    msrs.reset()
    assert msrs.rdmsr(Msr.IA32_FEATURE_CONTROL) == 0
    assert [msrs.rdmsr(m) for m in HASH_MSRS] == list(INTEL_LE_PUBKEY_HASH)


def test_processor_lps_start_with_intel_hash(plat: Any) -> None:
    assert plat.cpu.lps[0].msrs.lepubkeyhash == list(INTEL_LE_PUBKEY_HASH)


@pytest.mark.parametrize("msr", HASH_MSRS)
def test_hash_writable_when_locked_with_sgx_lc(msr: int) -> None:
    msrs = SgxMsrs(SgxFeatures())
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX | SGX_LC)
    msrs.wrmsr(msr, 0xFEDCBA9876543210)
    assert msrs.rdmsr(msr) == 0xFEDCBA9876543210
    others = [m for m in HASH_MSRS if m != msr]
    assert [msrs.rdmsr(m) for m in others] == [INTEL_LE_PUBKEY_HASH[m - HASH_MSRS[0]]
                                               for m in others]


def test_hash_bytes_order() -> None:
    """MSR 0x8C holds MRSIGNER bytes 0..7 little-endian, 0x8F bytes 24..31."""
    msrs = SgxMsrs(SgxFeatures())
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX | SGX_LC)
    value = bytes(range(32))
    for i, m in enumerate(HASH_MSRS):
        msrs.wrmsr(m, int.from_bytes(value[8 * i : 8 * i + 8], "little"))
    assert msrs.lepubkeyhash_bytes() == value


@pytest.mark.parametrize("fc", [0, SGX | SGX_LC, LOCKED | SGX, LOCKED, SGX_LC],
                         ids=["unset", "not-locked", "no-SGX_LC", "locked-only", "LC-unlocked"])
def test_hash_write_without_locked_lc_gp(assert_fault: Any, fc: int) -> None:
    msrs = SgxMsrs(SgxFeatures())
    if fc:
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, fc)
    for m in HASH_MSRS:
        with assert_fault(Vector.GP):
            msrs.wrmsr(m, 1)
    assert msrs.lepubkeyhash == list(INTEL_LE_PUBKEY_HASH)


def test_hash_without_flc_gp(assert_fault: Any) -> None:
    """Without launch control (CPUID.7.0:ECX[30]=0) the hash MSRs do not exist and SGX_LC
    cannot be enabled."""
    msrs = SgxMsrs(SgxFeatures(flc=False))
    with assert_fault(Vector.GP):
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX | SGX_LC)
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX)
    for m in HASH_MSRS:
        with assert_fault(Vector.GP):
            msrs.rdmsr(m)
        with assert_fault(Vector.GP):
            msrs.wrmsr(m, 1)


@pytest.mark.parametrize("value", [LOCKED | SGX | SGX_LC, 0, LOCKED | SGX])
def test_feature_control_write_after_lock_gp(assert_fault: Any, value: int) -> None:
    msrs = SgxMsrs(SgxFeatures())
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX | SGX_LC)
    with assert_fault(Vector.GP):
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, value)
    assert msrs.rdmsr(Msr.IA32_FEATURE_CONTROL) == LOCKED | SGX | SGX_LC


def test_feature_control_writable_until_locked() -> None:
    msrs = SgxMsrs(SgxFeatures())
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, SGX)
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, SGX | SGX_LC)
    assert not msrs.sgx_enabled  # SGX needs the lock too
    msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX | SGX_LC)
    assert msrs.sgx_enabled


@pytest.mark.parametrize("value", [1 << 3, 1 << 16, 1 << 63])
def test_feature_control_reserved_bits_gp(assert_fault: Any, value: int) -> None:
    msrs = SgxMsrs(SgxFeatures())
    with assert_fault(Vector.GP):
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, value)


def test_feature_control_sgx_without_sgx1_gp(assert_fault: Any) -> None:
    msrs = SgxMsrs(SgxFeatures(sgx1=False))
    with assert_fault(Vector.GP):
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX)


@pytest.mark.parametrize("value", [-1, 1 << 64])
def test_wrmsr_value_out_of_range_gp(assert_fault: Any, value: int) -> None:
    msrs = SgxMsrs(SgxFeatures())
    with assert_fault(Vector.GP):
        msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, value)


@pytest.mark.parametrize("msr", [0x8B, 0x90, 0x10])
def test_unknown_msr_gp(assert_fault: Any, msr: int) -> None:
    msrs = SgxMsrs(SgxFeatures())
    with assert_fault(Vector.GP):
        msrs.rdmsr(msr)
    with assert_fault(Vector.GP):
        msrs.wrmsr(msr, 0)


def test_sgx_locked_without_sgx_bit_ud(make_platform: Any, assert_fault: Any) -> None:
    plat = make_platform(enable=False)
    plat.cpu.lps[0].msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, LOCKED | SGX_LC)
    with assert_fault(Vector.UD):
        plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(0))


def test_einit_uses_current_hash_msrs(plat: Any, assert_status: Any) -> None:
    """The FLC flow: the OS rewrites the hash MSRs before each EINIT."""
    enc = plat.build_enclave(init=False)
    plat.set_lehash(bytes(32))
    assert_status(plat.einit(enc.secs, lehash=None), SgxError.SGX_INVALID_EINITTOKEN, zf=True)
    assert_status(plat.einit(enc.secs), SgxError.SGX_SUCCESS)  # writes the signer's hash
