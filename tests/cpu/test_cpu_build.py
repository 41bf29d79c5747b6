"""ECREATE, EADD, EEXTEND, EREMOVE and leaf dispatch: every #GP/#PF/#UD condition and status code
the SDM lists for these leaves (SDM Vol. 3D ECREATE/EADD/EEXTEND/EREMOVE; reference §1, §2, §5)."""

from __future__ import annotations

from typing import Any

import pytest

from vsgx.arch import (
    PAGE_SIZE,
    SECINFO,
    SECS,
    TCS,
    AttributesFlags,
    EnclsLeaf,
    EncluLeaf,
    MiscSelect,
    PageType,
    SgxError,
    TcsFlags,
    Vector,
    Xfrm,
    secinfo_flags,
)
from vsgx.cpu import EnclaveContext, SgxFeatures
from vsgx.crypto import MeasurementBuilder

R, W, X = 1, 2, 4
REG_RW = secinfo_flags(PageType.PT_REG, R | W)
MODE64 = int(AttributesFlags.MODE64BIT)


def _ecreate_operands(plat: Any, *, secs: SECS | bytes | None = None,
                      secinfo_raw: bytes | None = None, **pageinfo: int) -> None:
    """Write a (possibly broken) ECREATE operand set: PAGEINFO at PAGEINFO_PA."""
    raw = (secs or plat.make_secs())
    plat.write(plat.SRC_PA, raw.to_bytes() if isinstance(raw, SECS) else raw)
    plat.write(plat.SECINFO_PA, secinfo_raw or SECINFO.of(PageType.PT_SECS).to_bytes())
    fields = {"linaddr": 0, "srcpge": plat.SRC_PA, "secinfo": plat.SECINFO_PA, "secs": 0}
    fields.update(pageinfo)
    plat.write_pageinfo(**fields)


# -- ECREATE ------------------------------------------------------------------------------------

def test_ecreate_success_makes_secs_page(plat: Any) -> None:
    idx = plat.alloc()
    secs = plat.make_secs().replace(mrenclave=b"\x11" * 32, isvsvn=0, isvprodid=0)
    _ecreate_operands(plat, secs=secs)
    result = plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(idx))
    assert result.status.ok and not result.status.zf and not result.status.cf
    entry = plat.cpu.epcm.entry(idx)
    assert entry.valid and entry.page_type == PageType.PT_SECS
    assert not (entry.r or entry.w or entry.x or entry.pending or entry.modified or entry.blocked)
    stored = SECS.from_bytes(plat.epc_bytes(idx), strict=False)
    assert stored.size == secs.size and stored.baseaddr == secs.baseaddr
    assert stored.mrenclave == bytes(32)  # MRENCLAVE is (re)initialised by ECREATE
    expected = MeasurementBuilder()
    expected.ecreate(secs.ssaframesize, secs.size)
    assert plat.cpu.enclaves[idx].builder.digest() == expected.digest()


def test_ecreate_misaligned_pageinfo_gp(plat: Any, assert_fault: Any) -> None:
    _ecreate_operands(plat)
    plat.write(plat.PAGEINFO_PA + 0x10, plat.read(plat.PAGEINFO_PA, 32))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA + 0x10, plat.pa(plat.alloc()))


@pytest.mark.parametrize("field,offset", [("srcpge", 0x800), ("srcpge", 8), ("secinfo", 0x20),
                                          ("secinfo", 8)])
def test_ecreate_misaligned_srcpge_or_secinfo_gp(plat: Any, assert_fault: Any, field: str,
                                                 offset: int) -> None:
    _ecreate_operands(plat)
    base = plat.SRC_PA if field == "srcpge" else plat.SECINFO_PA
    plat.write(base + offset, plat.read(base, 64))
    _ecreate_operands(plat, **{field: base + offset})
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("field", ["linaddr", "secs"])
def test_ecreate_linaddr_or_secs_nonzero_gp(plat: Any, assert_fault: Any, field: str) -> None:
    _ecreate_operands(plat, **{field: 0x1000})
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("pt", [PageType.PT_REG, PageType.PT_TCS, PageType.PT_VA])
def test_ecreate_secinfo_not_pt_secs_gp(plat: Any, assert_fault: Any, pt: PageType) -> None:
    _ecreate_operands(plat, secinfo_raw=SECINFO.of(pt).to_bytes())
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("offset,value", [(0, 0x40), (2, 0x01), (8, 1), (63, 0x80)],
                         ids=["flags-bit6", "flags-bit16", "byte8", "byte63"])
def test_ecreate_secinfo_reserved_bits_gp(plat: Any, assert_fault: Any, offset: int,
                                          value: int) -> None:
    raw = bytearray(SECINFO.of(PageType.PT_SECS).to_bytes())
    raw[offset] |= value
    _ecreate_operands(plat, secinfo_raw=bytes(raw))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("offset", [24, 40, 100, 170, 262, 1000, 4095])
def test_ecreate_secs_reserved_bytes_gp(plat: Any, assert_fault: Any, offset: int) -> None:
    raw = bytearray(plat.make_secs().to_bytes())
    raw[offset] = 1
    _ecreate_operands(plat, secs=bytes(raw))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("changes", [
    pytest.param({"size": 0x1000, "baseaddr": 0x100000}, id="size-4K"),
    pytest.param({"size": 0, "baseaddr": 0x100000}, id="size-0"),
    pytest.param({"size": 0x3000, "baseaddr": 0x100000}, id="size-not-pow2"),
    pytest.param({"size": 0x20000, "baseaddr": 0x101000}, id="base-not-aligned-to-size"),
    pytest.param({"flags": MODE64 | int(AttributesFlags.INIT)}, id="INIT-set"),
    pytest.param({"flags": MODE64 | int(AttributesFlags.KSS)}, id="KSS-unsupported"),
    pytest.param({"flags": MODE64 | int(AttributesFlags.AEXNOTIFY)}, id="AEXNOTIFY-unsupported"),
    pytest.param({"flags": MODE64 | int(AttributesFlags.CET)}, id="CET-unsupported"),
    pytest.param({"flags": MODE64 | 1 << 8}, id="reserved-flag-bit8"),
    pytest.param({"flags": MODE64 | 1 << 63}, id="reserved-flag-bit63"),
    pytest.param({"xfrm": 0}, id="xfrm-0"),
    pytest.param({"xfrm": 1}, id="xfrm-no-SSE"),
    pytest.param({"xfrm": 2}, id="xfrm-no-x87"),
    pytest.param({"xfrm": 3 | int(Xfrm.PKRU)}, id="xfrm-unsupported-PKRU"),
    pytest.param({"xfrm": 3 | int(Xfrm.OPMASK)}, id="xfrm-unsupported-AVX512"),
    pytest.param({"miscselect": int(MiscSelect.CPINFO)}, id="miscselect-CPINFO-unsupported"),
    pytest.param({"miscselect": 1 << 31}, id="miscselect-reserved"),
    pytest.param({"configid": b"\x01" * 64}, id="CONFIGID-without-KSS"),
    pytest.param({"configsvn": 1}, id="CONFIGSVN-without-KSS"),
    pytest.param({"ssaframesize": 0}, id="SSAFRAMESIZE-0"),
])
def test_ecreate_bad_secs_gp(plat: Any, assert_fault: Any, changes: dict[str, Any]) -> None:
    _ecreate_operands(plat, secs=plat.make_secs(**changes))
    idx = plat.alloc()
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(idx))
    assert not plat.cpu.epcm.valid(idx)


def test_ecreate_ssaframe_too_small_for_xfrm_gp(make_platform: Any, assert_fault: Any) -> None:
    """SSAFRAMESIZE*4096 < XSAVE(XFRM) + MISC + GPRSGX: AMX tile data alone is 8 KiB."""
    xfrm = 3 | int(Xfrm.AMX_TILECFG | Xfrm.AMX_TILEDATA)
    plat = make_platform(features=SgxFeatures(xfrm_supported=xfrm))
    _ecreate_operands(plat, secs=plat.make_secs(xfrm=xfrm, ssaframesize=1))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))
    _ecreate_operands(plat, secs=plat.make_secs(xfrm=xfrm, ssaframesize=3))
    assert plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc())).status.ok


def test_ecreate_kss_accepted_when_supported(make_platform: Any) -> None:
    plat = make_platform(features=SgxFeatures(kss=True))
    secs = plat.make_secs(flags=MODE64 | int(AttributesFlags.KSS), configid=b"\x05" * 64,
                          configsvn=2)
    idx = plat.ecreate(secs)
    assert plat.cpu.enclaves[idx].secs.configsvn == 2


def test_ecreate_32bit_elrange_above_4g_gp(plat: Any, assert_fault: Any) -> None:
    _ecreate_operands(plat, secs=plat.make_secs(flags=0, size=0x20000, baseaddr=1 << 32))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_ecreate_epc_page_already_valid_pf(plat: Any, assert_fault: Any) -> None:
    idx = plat.ecreate()
    _ecreate_operands(plat)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(idx))


def test_ecreate_rcx_not_epc_pf(plat: Any, assert_fault: Any) -> None:
    _ecreate_operands(plat)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.FREE_PA):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.FREE_PA)


def test_ecreate_rcx_misaligned_gp(plat: Any, assert_fault: Any) -> None:
    _ecreate_operands(plat)
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(plat.alloc()) + 0x800)


def test_ecreate_unmapped_operand_is_ordinary_pf(plat: Any, assert_fault: Any) -> None:
    """A PAGEINFO in unmapped ordinary memory is a plain #PF (PFEC.SGX clear)."""
    unmapped = plat.SCRATCH_SIZE + 0x1000
    with assert_fault(Vector.PF, pfec_sgx=False):
        plat.encls(EnclsLeaf.ECREATE, unmapped, plat.pa(plat.alloc()))


def test_ecreate_without_sgx_enabled_ud(make_platform: Any, assert_fault: Any) -> None:
    plat = make_platform(enable=False)
    _ecreate_operands(plat)
    with assert_fault(Vector.UD):
        plat.encls(EnclsLeaf.ECREATE, plat.PAGEINFO_PA, plat.pa(0))


# -- dispatch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("leaf", [0x10, 0x11, 0x12, 0x13, 0x20, 0xFFFF])
def test_unsupported_encls_leaf_gp(plat: Any, assert_fault: Any, leaf: int) -> None:
    with assert_fault(Vector.GP):
        plat.encls(leaf, 0, 0, 0)


def test_enclu_on_uninitialised_enclave_gp(plat: Any, assert_fault: Any) -> None:
    enc = plat.build_enclave(init=False)
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EGETKEY, enc.ctx, enc.rw_la(0), enc.rw_la(1))


def test_enclu_without_enclave_gp(plat: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EREPORT, EnclaveContext(secs=5), 0, 0, 0)


@pytest.mark.parametrize("leaf", [int(EncluLeaf.EENTER), int(EncluLeaf.ERESUME), 0x20])
def test_enclu_entry_or_unknown_leaf_inside_enclave_gp(plat: Any, enclave: Any,
                                                       assert_fault: Any, leaf: int) -> None:
    """EENTER/ERESUME in enclave mode and undefined ENCLU leaves are #GP(0) (SDM ENCLU)."""
    with assert_fault(Vector.GP):
        plat.cpu.enclu(leaf, enclave.ctx, enclave.tcs_la, 0, 0)


def test_enclu_without_sgx_enabled_ud(make_platform: Any, assert_fault: Any) -> None:
    plat = make_platform(enable=False)
    with assert_fault(Vector.UD):
        plat.cpu.enclu(EncluLeaf.EREPORT, EnclaveContext(secs=0), 0, 0, 0)


# -- EADD ---------------------------------------------------------------------------------------

def _eadd_operands(plat: Any, secs_idx: int, la: int, flags: int = REG_RW,
                   data: bytes | None = None, **pageinfo: int) -> None:
    plat.write(plat.SRC_PA, data if data is not None else bytes(PAGE_SIZE))
    plat.write_secinfo(flags)
    fields = {"linaddr": la, "srcpge": plat.SRC_PA, "secinfo": plat.SECINFO_PA,
              "secs": plat.pa(secs_idx)}
    fields.update(pageinfo)
    plat.write_pageinfo(**fields)


def test_eadd_reg_success(plat: Any) -> None:
    secs = plat.ecreate()
    la = plat.ENCLAVE_BASE + 0x3000
    data = bytes(range(256)) * 16
    idx = plat.alloc()
    _eadd_operands(plat, secs, la, secinfo_flags(PageType.PT_REG, R | X), data)
    assert plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(idx)).status.ok
    entry = plat.cpu.epcm.entry(idx)
    assert entry.valid and entry.page_type == PageType.PT_REG
    assert (entry.r, entry.w, entry.x) == (True, False, True)
    assert entry.enclavesecs == secs and entry.enclaveaddress == la
    assert plat.epc_bytes(idx) == data


@pytest.mark.parametrize("pt", [PageType.PT_SECS, PageType.PT_VA, PageType.PT_TRIM,
                                PageType.PT_SS_FIRST, PageType.PT_SS_REST])
def test_eadd_page_type_not_reg_or_tcs_gp(plat: Any, assert_fault: Any, pt: PageType) -> None:
    secs = plat.ecreate()
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE, secinfo_flags(pt, R))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("rwx", [W, W | X])
def test_eadd_write_without_read_gp(plat: Any, assert_fault: Any, rwx: int) -> None:
    secs = plat.ecreate()
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE, secinfo_flags(PageType.PT_REG, rwx))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_eadd_secinfo_reserved_gp(plat: Any, assert_fault: Any) -> None:
    secs = plat.ecreate()
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE)
    plat.write(plat.SECINFO_PA + 8, b"\x01")
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("offset", [-PAGE_SIZE, 0x2_0000, 0x800, 0x1_0000_0000],
                         ids=["below-base", "at-end", "misaligned", "far-above"])
def test_eadd_linaddr_outside_elrange_or_misaligned_gp(plat: Any, assert_fault: Any,
                                                       offset: int) -> None:
    secs = plat.ecreate()
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE + offset)
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("field", ["srcpge", "secinfo", "secs"])
def test_eadd_misaligned_pageinfo_fields_gp(plat: Any, assert_fault: Any, field: str) -> None:
    secs = plat.ecreate()
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE)
    value = {"srcpge": plat.SRC_PA + 0x40, "secinfo": plat.SECINFO_PA + 0x20,
             "secs": plat.pa(secs) + 0x40}[field]
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE, **{field: value})
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_eadd_after_einit_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    _eadd_operands(plat, enclave.secs, enclave.free_la())
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_eadd_destination_valid_pf(plat: Any, assert_fault: Any) -> None:
    secs = plat.ecreate()
    idx = plat.eadd(secs, plat.ENCLAVE_BASE)
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE + PAGE_SIZE)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(idx))


def test_eadd_destination_not_epc_pf(plat: Any, assert_fault: Any) -> None:
    secs = plat.ecreate()
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE)
    with assert_fault(Vector.PF, pfec_sgx=True):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.FREE_PA)


@pytest.mark.parametrize("kind", ["reg-page", "free-page", "va-page"])
def test_eadd_secs_operand_not_a_secs_pf(plat: Any, assert_fault: Any, kind: str) -> None:
    secs = plat.ecreate()
    if kind == "reg-page":
        fake = plat.eadd(secs, plat.ENCLAVE_BASE)
    elif kind == "va-page":
        fake = plat.epa()
    else:
        fake = plat.alloc()
    _eadd_operands(plat, fake, plat.ENCLAVE_BASE + PAGE_SIZE)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(fake)):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_eadd_tcs_reserved_bytes_gp(plat: Any, assert_fault: Any) -> None:
    secs = plat.ecreate()
    raw = bytearray(plat.make_tcs().to_bytes())
    raw[100] = 1
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE, secinfo_flags(PageType.PT_TCS), bytes(raw))
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


@pytest.mark.parametrize("flags", [1 << 2, 1 << 63])
def test_eadd_tcs_reserved_flags_gp(plat: Any, assert_fault: Any, flags: int) -> None:
    secs = plat.ecreate()
    tcs = plat.make_tcs(flags=flags)
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE, secinfo_flags(PageType.PT_TCS),
                   tcs.to_bytes())
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_eadd_tcs_32bit_fs_gs_limit_gp(plat: Any, assert_fault: Any) -> None:
    secs = plat.ecreate(flags=0)
    tcs = plat.make_tcs(fslimit=0x1000)
    _eadd_operands(plat, secs, plat.ENCLAVE_BASE, secinfo_flags(PageType.PT_TCS),
                   tcs.to_bytes())
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EADD, plat.PAGEINFO_PA, plat.pa(plat.alloc()))


def test_eadd_tcs_is_stored_sanitised_with_rwx_zero(plat: Any) -> None:
    secs = plat.ecreate()
    la = plat.ENCLAVE_BASE
    tcs = plat.make_tcs(state=1, cssa=1, aep=0xDEAD000,
                        flags=int(TcsFlags.DBGOPTIN | TcsFlags.AEXNOTIFY))
    idx = plat.eadd_tcs(secs, la, tcs, rwx=R | W | X)
    stored = TCS.from_bytes(plat.epc_bytes(idx))
    assert (stored.state, stored.cssa, stored.aep) == (0, 0, 0)
    assert stored.flags == int(TcsFlags.AEXNOTIFY)  # DBGOPTIN cleared, other flags kept
    assert (stored.ossa, stored.nssa, stored.oentry) == (tcs.ossa, tcs.nssa, tcs.oentry)
    entry = plat.cpu.epcm.entry(idx)
    assert entry.page_type == PageType.PT_TCS
    assert not (entry.r or entry.w or entry.x)
    # The measurement hashes the TCS SECINFO with R/W/X cleared (flags 0x100).
    expected = MeasurementBuilder()
    expected.ecreate(1, plat.ENCLAVE_SIZE)
    expected.eadd(0, 0x100)
    assert plat.cpu.enclaves[secs].builder.digest() == expected.digest()


# -- EEXTEND ------------------------------------------------------------------------------------

def test_eextend_extends_measurement(plat: Any) -> None:
    secs = plat.ecreate()
    data = bytes(range(256)) * 16
    idx = plat.eadd(secs, plat.ENCLAVE_BASE + 0x1000, data, secinfo_flags(PageType.PT_REG, 5))
    plat.eextend_page(secs, idx)
    expected = MeasurementBuilder()
    expected.ecreate(1, plat.ENCLAVE_SIZE)
    expected.eadd(0x1000, 0x205)
    for off in range(0, PAGE_SIZE, 256):
        expected.eextend(0x1000 + off, data[off : off + 256])
    assert plat.cpu.enclaves[secs].builder.digest() == expected.digest()


@pytest.mark.parametrize("offset", [0x80, 0x10, 1])
def test_eextend_misaligned_gp(plat: Any, assert_fault: Any, offset: int) -> None:
    secs = plat.ecreate()
    idx = plat.eadd(secs, plat.ENCLAVE_BASE)
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EEXTEND, plat.pa(secs), plat.pa(idx) + offset)


def test_eextend_misaligned_secs_gp(plat: Any, assert_fault: Any) -> None:
    secs = plat.ecreate()
    idx = plat.eadd(secs, plat.ENCLAVE_BASE)
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EEXTEND, plat.pa(secs) + 0x100, plat.pa(idx))


@pytest.mark.parametrize("kind", ["secs", "va", "invalid", "other-enclave"])
def test_eextend_target_not_reg_tcs_of_this_enclave_pf(plat: Any, assert_fault: Any,
                                                       kind: str) -> None:
    secs = plat.ecreate()
    plat.eadd(secs, plat.ENCLAVE_BASE)
    if kind == "secs":
        target = secs
    elif kind == "va":
        target = plat.epa()
    elif kind == "invalid":
        target = plat.alloc()
    else:
        other = plat.ecreate()
        target = plat.eadd(other, plat.ENCLAVE_BASE)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(target)):
        plat.encls(EnclsLeaf.EEXTEND, plat.pa(secs), plat.pa(target))


def test_eextend_tcs_page_allowed(plat: Any) -> None:
    secs = plat.ecreate()
    idx = plat.eadd_tcs(secs, plat.ENCLAVE_BASE)
    assert plat.encls(EnclsLeaf.EEXTEND, plat.pa(secs), plat.pa(idx)).status.ok


def test_eextend_after_einit_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EEXTEND, plat.pa(enclave.secs), plat.pa(enclave.rw(0)))


# -- EREMOVE ------------------------------------------------------------------------------------

def test_eremove_secs_with_children_child_present(plat: Any, enclave: Any,
                                                  assert_status: Any) -> None:
    result = plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(enclave.secs))
    assert_status(result, SgxError.SGX_CHILD_PRESENT, zf=True, cf=False)
    assert plat.cpu.epcm.valid(enclave.secs)


@pytest.mark.parametrize("page", ["rw", "tcs"])
def test_eremove_child_while_thread_inside_enclave_act(plat: Any, enclave: Any,
                                                       assert_status: Any, page: str) -> None:
    plat.cpu.enclaves[enclave.secs].inside.add(1)
    idx = enclave.rw(0) if page == "rw" else enclave.tcs
    result = plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx))
    assert_status(result, SgxError.SGX_ENCLAVE_ACT, zf=True)
    assert plat.cpu.epcm.valid(idx)
    plat.cpu.enclaves[enclave.secs].inside.clear()
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx)), SgxError.SGX_SUCCESS)
    assert not plat.cpu.epcm.valid(idx)


def test_eremove_invalid_page_succeeds(plat: Any, assert_status: Any) -> None:
    idx = plat.alloc()
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx)), SgxError.SGX_SUCCESS,
                  zf=False)
    assert not plat.cpu.epcm.valid(idx)


def test_eremove_secs_after_children_gone(plat: Any, enclave: Any, assert_status: Any) -> None:
    for idx in enclave.pages.values():
        assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx)), SgxError.SGX_SUCCESS)
        assert not plat.cpu.epcm.valid(idx)
        assert plat.epc_bytes(idx) == bytes(PAGE_SIZE)
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(enclave.secs)), SgxError.SGX_SUCCESS)
    assert not plat.cpu.epcm.valid(enclave.secs)
    assert enclave.secs not in plat.cpu.enclaves


def test_eremove_va_page(plat: Any, assert_status: Any) -> None:
    va = plat.epa()
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(va)), SgxError.SGX_SUCCESS)
    assert not plat.cpu.epcm.valid(va)


def test_eremove_misaligned_gp(plat: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(0) + 8)


def test_eremove_not_epc_pf(plat: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF, address=plat.FREE_PA):
        plat.encls(EnclsLeaf.EREMOVE, 0, plat.FREE_PA)
