"""SGX2 dynamic memory management: EAUG, EMODPR, EMODT (ENCLS) and EACCEPT, EACCEPTCOPY, EMODPE
(ENCLU) - every status code and fault the SDM lists for them (reference §5)."""

from __future__ import annotations

from typing import Any

import pytest

from vsgx.arch import (
    PAGE_SIZE,
    SECINFO,
    EnclsLeaf,
    EncluLeaf,
    PageType,
    SgxError,
    Vector,
    secinfo_flags,
)
from vsgx.cpu import EnclaveContext, SgxFeatures
from vsgx.cpu.enclu import accept, accept_copy, modpe

R, W, X = 1, 2, 4
PENDING, MODIFIED, PR = 8, 16, 32
REG = PageType.PT_REG
TCS_T = PageType.PT_TCS
TRIM = PageType.PT_TRIM


def _si(pt: PageType, bits: int = 0) -> SECINFO:
    return SECINFO(secinfo_flags(pt, bits & 7, bits & ~7))


def _entry(plat: Any, idx: int) -> Any:
    return plat.cpu.epcm.entry(idx)


# -- EAUG -----------------------------------------------------------------------------------------

def test_eaug_success_pending_rw_zeroed(plat: Any, enclave: Any) -> None:
    idx = plat.alloc()
    plat.epc.page(idx)[:] = b"\x55" * PAGE_SIZE
    la = enclave.free_la(0)
    plat.eaug(enclave, la, idx=idx)
    e = _entry(plat, idx)
    assert e.valid and e.page_type == PageType.PT_REG
    assert (e.r, e.w, e.x, e.pending, e.modified, e.pr) == (True, True, False, True, False,
                                                             False)
    assert e.enclavesecs == enclave.secs and e.enclaveaddress == la
    assert plat.epc_bytes(idx) == bytes(PAGE_SIZE)


def _eaug_raw(plat: Any, enc: Any, la: int, idx: int | None = None, **pageinfo: int) -> Any:
    fields = {"linaddr": la, "secs": plat.pa(enc.secs)}
    fields.update(pageinfo)
    plat.write_pageinfo(**fields)
    return plat.encls(EnclsLeaf.EAUG, plat.PAGEINFO_PA, plat.pa(plat.alloc() if idx is None
                                                                 else idx))


def test_eaug_before_einit_gp(plat: Any, assert_fault: Any) -> None:
    enc = plat.build_enclave(init=False)
    with assert_fault(Vector.GP):
        _eaug_raw(plat, enc, enc.free_la())


@pytest.mark.parametrize("field", ["srcpge", "secinfo"])
def test_eaug_srcpge_or_secinfo_nonzero_gp(plat: Any, enclave: Any, assert_fault: Any,
                                           field: str) -> None:
    with assert_fault(Vector.GP):
        _eaug_raw(plat, enclave, enclave.free_la(), **{field: 0x1000})


@pytest.mark.parametrize("offset", [-PAGE_SIZE, 0x2_0000, 0x8800])
def test_eaug_linaddr_outside_elrange_or_misaligned_gp(plat: Any, enclave: Any,
                                                       assert_fault: Any, offset: int) -> None:
    with assert_fault(Vector.GP):
        _eaug_raw(plat, enclave, enclave.base + offset)


def test_eaug_destination_valid_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    busy = enclave.rw(0)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(busy)):
        _eaug_raw(plat, enclave, enclave.free_la(), idx=busy)


def test_eaug_secs_not_a_secs_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF, pfec_sgx=True):
        _eaug_raw(plat, enclave, enclave.free_la(), secs=plat.pa(enclave.rw(0)))


def test_eaug_without_sgx2_gp(make_platform: Any, assert_fault: Any) -> None:
    plat = make_platform(features=SgxFeatures(sgx2=False))
    enc = plat.build_enclave()
    with assert_fault(Vector.GP):
        _eaug_raw(plat, enc, enc.free_la())


@pytest.mark.parametrize("leaf", [EnclsLeaf.EMODPR, EnclsLeaf.EMODT])
def test_emodpr_emodt_without_sgx2_gp(make_platform: Any, assert_fault: Any,
                                      leaf: EnclsLeaf) -> None:
    plat = make_platform(features=SgxFeatures(sgx2=False))
    enc = plat.build_enclave()
    plat.write_secinfo(secinfo_flags(TRIM))
    with assert_fault(Vector.GP):
        plat.encls(leaf, plat.SECINFO_PA, plat.pa(enc.rw(0)))


# -- EMODPR ---------------------------------------------------------------------------------------

def test_emodpr_restricts_and_sets_pr(plat: Any, enclave: Any, assert_status: Any) -> None:
    idx = enclave.rw(0)
    assert_status(plat.emodpr(idx, secinfo_flags(REG, R | X)), SgxError.SGX_SUCCESS)
    e = _entry(plat, idx)
    assert (e.r, e.w, e.x, e.pr) == (True, False, False, True)  # X is not added
    assert not (e.pending or e.modified)


def test_emodpr_pending_page_not_modifiable(plat: Any, enclave: Any, assert_status: Any) -> None:
    idx = plat.eaug(enclave, enclave.free_la())
    assert_status(plat.emodpr(idx, secinfo_flags(REG, R)), SgxError.SGX_PAGE_NOT_MODIFIABLE,
                  zf=True, cf=False)
    assert _entry(plat, idx).w and not _entry(plat, idx).pr


def test_emodpr_modified_page_not_modifiable(plat: Any, enclave: Any,
                                             assert_status: Any) -> None:
    idx = enclave.rw(1)
    assert_status(plat.emodt(idx, secinfo_flags(TRIM)), SgxError.SGX_SUCCESS)
    assert_status(plat.emodpr(idx, secinfo_flags(REG, R)), SgxError.SGX_PAGE_NOT_MODIFIABLE,
                  zf=True)


@pytest.mark.parametrize("rwx", [W, W | X])
def test_emodpr_write_without_read_gp(plat: Any, enclave: Any, assert_fault: Any,
                                      rwx: int) -> None:
    with assert_fault(Vector.GP):
        plat.emodpr(enclave.rw(0), secinfo_flags(REG, rwx))


def test_emodpr_secinfo_reserved_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    plat.write_secinfo(secinfo_flags(REG, R))
    plat.write(plat.SECINFO_PA + 40, b"\x01")
    with assert_fault(Vector.GP):
        plat.encls(EnclsLeaf.EMODPR, plat.SECINFO_PA, plat.pa(enclave.rw(0)))


@pytest.mark.parametrize("kind", ["tcs", "secs", "va", "invalid"])
def test_emodpr_not_a_reg_page_pf(plat: Any, enclave: Any, assert_fault: Any,
                                  kind: str) -> None:
    idx = {"tcs": enclave.tcs, "secs": enclave.secs, "va": plat.epa(),
           "invalid": plat.alloc()}[kind]
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.emodpr(idx, secinfo_flags(REG, R))


def test_emodpr_before_einit_gp(plat: Any, assert_fault: Any) -> None:
    enc = plat.build_enclave(init=False)
    with assert_fault(Vector.GP):
        plat.emodpr(enc.rw(0), secinfo_flags(REG, R))


@pytest.mark.parametrize("leaf", [EnclsLeaf.EMODPR, EnclsLeaf.EMODT])
def test_emodpr_emodt_misaligned_gp(plat: Any, enclave: Any, assert_fault: Any,
                                    leaf: EnclsLeaf) -> None:
    plat.write_secinfo(secinfo_flags(TRIM))
    with assert_fault(Vector.GP):
        plat.encls(leaf, plat.SECINFO_PA + 0x20, plat.pa(enclave.rw(0)))
    with assert_fault(Vector.GP):
        plat.encls(leaf, plat.SECINFO_PA, plat.pa(enclave.rw(0)) + 0x100)


# -- EMODT ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("new", [PageType.PT_REG, PageType.PT_SECS, PageType.PT_VA,
                                 PageType.PT_SS_FIRST])
def test_emodt_to_disallowed_type_gp(plat: Any, enclave: Any, assert_fault: Any,
                                     new: PageType) -> None:
    with assert_fault(Vector.GP):
        plat.emodt(enclave.rw(0), secinfo_flags(new))


def test_emodt_tcs_to_tcs_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(enclave.tcs)):
        plat.emodt(enclave.tcs, secinfo_flags(TCS_T))


@pytest.mark.parametrize("kind", ["secs", "va", "invalid"])
def test_emodt_not_an_enclave_page_pf(plat: Any, enclave: Any, assert_fault: Any,
                                      kind: str) -> None:
    idx = {"secs": enclave.secs, "va": plat.epa(), "invalid": plat.alloc()}[kind]
    with assert_fault(Vector.PF, pfec_sgx=True):
        plat.emodt(idx, secinfo_flags(TRIM))


def test_emodt_pending_page_not_modifiable(plat: Any, enclave: Any, assert_status: Any) -> None:
    idx = plat.eaug(enclave, enclave.free_la())
    assert_status(plat.emodt(idx, secinfo_flags(TRIM)), SgxError.SGX_PAGE_NOT_MODIFIABLE,
                  zf=True, cf=False)
    assert _entry(plat, idx).page_type == PageType.PT_REG


@pytest.mark.parametrize("src,new", [("rw", TCS_T), ("rw", TRIM), ("tcs", TRIM)])
def test_emodt_success(plat: Any, enclave: Any, assert_status: Any, src: str,
                       new: PageType) -> None:
    idx = enclave.rw(0) if src == "rw" else enclave.tcs
    assert_status(plat.emodt(idx, secinfo_flags(new, R | W | X)), SgxError.SGX_SUCCESS)
    e = _entry(plat, idx)
    assert e.page_type == new
    assert e.modified and not (e.r or e.w or e.x or e.pr or e.pending)


def test_emodt_clears_pr(plat: Any, enclave: Any, assert_status: Any) -> None:
    idx = enclave.rw(0)
    plat.emodpr(idx, secinfo_flags(REG, R))
    assert_status(plat.emodt(idx, secinfo_flags(TRIM)), SgxError.SGX_SUCCESS)
    assert not _entry(plat, idx).pr


def test_emodt_before_einit_gp(plat: Any, assert_fault: Any) -> None:
    enc = plat.build_enclave(init=False)
    with assert_fault(Vector.GP):
        plat.emodt(enc.rw(0), secinfo_flags(TRIM))


# -- EACCEPT --------------------------------------------------------------------------------------

def test_eaccept_eaug_page_without_etrack(plat: Any, enclave: Any, assert_status: Any) -> None:
    la = enclave.free_la()
    idx = plat.eaug(enclave, la)
    status = accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), la)
    assert_status(status, SgxError.SGX_SUCCESS, zf=False)
    e = _entry(plat, idx)
    assert not (e.pending or e.modified or e.pr) and (e.r, e.w) == (True, True)
    plat.cpu.enclave_write(enclave.ctx, la, b"now usable", 8)


def test_eaccept_emodpr_not_tracked_then_success(plat: Any, enclave: Any,
                                                 assert_status: Any) -> None:
    la = enclave.rw_la(0)
    plat.emodpr(enclave.rw(0), secinfo_flags(REG, R))
    request = _si(REG, R | PR)
    assert_status(accept(plat.cpu, enclave.ctx, request, la), SgxError.SGX_NOT_TRACKED,
                  zf=True, cf=False)
    assert _entry(plat, enclave.rw(0)).pr
    plat.etrack(enclave.secs)
    assert_status(accept(plat.cpu, enclave.ctx, request, la), SgxError.SGX_SUCCESS)
    e = _entry(plat, enclave.rw(0))
    assert not e.pr and (e.r, e.w, e.x) == (True, False, False)


def test_eaccept_not_tracked_while_thread_inside(plat: Any, enclave: Any,
                                                 assert_status: Any) -> None:
    state = plat.cpu.enclaves[enclave.secs]
    plat.emodpr(enclave.rw(0), secinfo_flags(REG, R))
    state.inside.add(3)
    plat.etrack(enclave.secs)
    assert_status(accept(plat.cpu, enclave.ctx, _si(REG, R | PR), enclave.rw_la(0)),
                  SgxError.SGX_NOT_TRACKED, zf=True)


@pytest.mark.parametrize("rwx", [R | W, R | X, 0])
def test_eaccept_attributes_mismatch_rwx(plat: Any, enclave: Any, assert_status: Any,
                                         rwx: int) -> None:
    plat.emodpr(enclave.rw(0), secinfo_flags(REG, R))
    plat.etrack(enclave.secs)
    status = accept(plat.cpu, enclave.ctx, _si(REG, rwx | PR), enclave.rw_la(0))
    assert_status(status, SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH, zf=True, cf=False)
    assert _entry(plat, enclave.rw(0)).pr  # nothing accepted


@pytest.mark.parametrize("request_bits", [
    pytest.param((REG, R | W | PR), id="pending-page-accepted-as-PR"),
    pytest.param((TCS_T, MODIFIED), id="type-TCS"),
    pytest.param((REG, R | W | X | PENDING), id="rwx"),
])
def test_eaccept_eaug_page_mismatch(plat: Any, enclave: Any, assert_status: Any,
                                    request_bits: tuple[PageType, int]) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    status = accept(plat.cpu, enclave.ctx, _si(*request_bits), la)
    assert_status(status, SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH, zf=True)


def test_eaccept_plain_page_mismatch(plat: Any, enclave: Any, assert_status: Any) -> None:
    """An EADDed page with nothing to accept does not match a PENDING request."""
    status = accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), enclave.rw_la(0))
    assert_status(status, SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH, zf=True)


def test_eaccept_enclaveaddress_mismatch(plat: Any, enclave: Any, assert_status: Any) -> None:
    """The OS maps linear address A onto the pending page that EAUG put at address B."""
    la_b = enclave.free_la(1)
    idx = plat.eaug(enclave, la_b)
    la_a = enclave.free_la(2)

    def translate(la: int) -> int:
        return plat.pa(idx) + (la & (PAGE_SIZE - 1))

    ctx = EnclaveContext(secs=enclave.secs, translate=translate)
    status = accept(plat.cpu, ctx, _si(REG, R | W | PENDING), la_a)
    assert_status(status, SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH, zf=True)


def test_eaccept_other_enclaves_page_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    other = plat.build_enclave()
    la = other.free_la()
    idx = plat.eaug(other, la)
    ctx = EnclaveContext(secs=enclave.secs,
                         translate=lambda a: plat.pa(idx) + (a & (PAGE_SIZE - 1)))
    with assert_fault(Vector.PF, pfec_sgx=True, address=la):
        accept(plat.cpu, ctx, _si(REG, R | W | PENDING), la)


@pytest.mark.parametrize("bits", [
    pytest.param((REG, R | W), id="REG-neither-PR-nor-PENDING"),
    pytest.param((REG, R | W | PENDING | MODIFIED), id="REG-MODIFIED"),
    pytest.param((TRIM, 0), id="TRIM-without-MODIFIED"),
    pytest.param((TRIM, MODIFIED | PENDING), id="TRIM-PENDING"),
    pytest.param((TRIM, MODIFIED | PR), id="TRIM-PR"),
    pytest.param((TCS_T, 0), id="TCS-without-MODIFIED"),
    pytest.param((PageType.PT_VA, MODIFIED), id="VA"),
    pytest.param((PageType.PT_SECS, PENDING), id="SECS"),
])
def test_eaccept_bad_secinfo_combination_gp(plat: Any, enclave: Any, assert_fault: Any,
                                            bits: tuple[PageType, int]) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.GP):
        accept(plat.cpu, enclave.ctx, _si(*bits), la)


def test_eaccept_secinfo_reserved_bits_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.GP):
        accept(plat.cpu, enclave.ctx, SECINFO(secinfo_flags(REG, R | W, PENDING) | 1 << 6), la)


@pytest.mark.parametrize("la_offset", [0x8010, 0x2_0000, -PAGE_SIZE])
def test_eaccept_misaligned_or_outside_elrange_gp(plat: Any, enclave: Any, assert_fault: Any,
                                                  la_offset: int) -> None:
    plat.eaug(enclave, enclave.free_la())
    with assert_fault(Vector.GP):
        accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), enclave.base + la_offset)


def test_eaccept_unmapped_page_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF):
        accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), enclave.free_la(5))


def test_eaccept_trim_then_eremove(plat: Any, enclave: Any, assert_status: Any) -> None:
    idx, la = enclave.rw(3), enclave.rw_la(3)
    assert_status(plat.emodt(idx, secinfo_flags(TRIM)), SgxError.SGX_SUCCESS)
    assert_status(accept(plat.cpu, enclave.ctx, _si(TRIM, MODIFIED), la),
                  SgxError.SGX_NOT_TRACKED, zf=True)
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_SUCCESS)
    assert_status(accept(plat.cpu, enclave.ctx, _si(TRIM, MODIFIED), la), SgxError.SGX_SUCCESS)
    e = _entry(plat, idx)
    assert e.page_type == TRIM and not (e.modified or e.pending or e.pr)
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx)), SgxError.SGX_SUCCESS)
    assert not plat.cpu.epcm.valid(idx)


def test_eremove_accepted_trim_page_while_thread_inside(plat: Any, enclave: Any,
                                                        assert_status: Any) -> None:
    idx, la = enclave.rw(3), enclave.rw_la(3)
    plat.emodt(idx, secinfo_flags(TRIM))
    plat.etrack(enclave.secs)
    assert_status(accept(plat.cpu, enclave.ctx, _si(TRIM, MODIFIED), la), SgxError.SGX_SUCCESS)
    plat.cpu.enclaves[enclave.secs].inside.add(1)  # the enclave keeps running (Linux trims so)
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx)), SgxError.SGX_SUCCESS)
    assert not plat.cpu.epcm.valid(idx)


def test_eremove_unaccepted_trim_page_while_thread_inside(plat: Any, enclave: Any,
                                                          assert_status: Any) -> None:
    idx = enclave.rw(3)
    plat.emodt(idx, secinfo_flags(TRIM))
    plat.cpu.enclaves[enclave.secs].inside.add(1)
    assert_status(plat.encls(EnclsLeaf.EREMOVE, 0, plat.pa(idx)), SgxError.SGX_ENCLAVE_ACT,
                  zf=True)


def _tcs_image(plat: Any, **fields: Any) -> bytes:
    return plat.make_tcs(**fields).to_bytes()


def test_eaccept_new_tcs(plat: Any, enclave: Any, assert_status: Any) -> None:
    la = enclave.free_la()
    idx = plat.eaug(enclave, la)
    accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), la)
    plat.cpu.enclave_write(enclave.ctx, la, _tcs_image(plat), 8)
    assert_status(plat.emodt(idx, secinfo_flags(TCS_T)), SgxError.SGX_SUCCESS)
    plat.etrack(enclave.secs)
    assert_status(accept(plat.cpu, enclave.ctx, _si(TCS_T, MODIFIED), la), SgxError.SGX_SUCCESS)
    e = _entry(plat, idx)
    assert e.page_type == TCS_T and not e.modified


@pytest.mark.parametrize("fields", [
    pytest.param({"flags": 1}, id="DBGOPTIN"),
    pytest.param({"cssa": 1}, id="CSSA>=NSSA"),
    pytest.param({"nssa": 0}, id="NSSA-0"),
    pytest.param({"aep": 0x1000}, id="AEP"),
    pytest.param({"state": 1}, id="STATE"),
    pytest.param({"flags": 4}, id="reserved-flag"),
    pytest.param({"_reserved": 200}, id="reserved-byte"),
])
def test_eaccept_new_tcs_bad_contents_gp(plat: Any, enclave: Any, assert_fault: Any,
                                         fields: dict[str, int]) -> None:
    la = enclave.free_la()
    idx = plat.eaug(enclave, la)
    accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), la)
    fields = dict(fields)
    reserved = fields.pop("_reserved", None)
    image = bytearray(_tcs_image(plat, **fields))
    if reserved is not None:
        image[reserved] = 1
    plat.cpu.enclave_write(enclave.ctx, la, bytes(image), 8)
    plat.emodt(idx, secinfo_flags(TCS_T))
    plat.etrack(enclave.secs)
    with assert_fault(Vector.GP):
        accept(plat.cpu, enclave.ctx, _si(TCS_T, MODIFIED), la)


def test_eaccept_register_level(plat: Any, enclave: Any, assert_status: Any) -> None:
    la = enclave.free_la()
    idx = plat.eaug(enclave, la)
    secinfo_la = enclave.rw_la(0) + 0x40
    plat.enclave_write(enclave, secinfo_la, _si(REG, R | W | PENDING).to_bytes())
    result = plat.cpu.enclu(EncluLeaf.EACCEPT, enclave.ctx, secinfo_la, la)
    assert_status(result, SgxError.SGX_SUCCESS)
    assert not _entry(plat, idx).pending


def test_eaccept_register_level_misaligned_secinfo_gp(plat: Any, enclave: Any,
                                                      assert_fault: Any) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EACCEPT, enclave.ctx, enclave.rw_la(0) + 0x20, la)


def test_eaccept_register_level_secinfo_in_pending_page_pf(plat: Any, enclave: Any,
                                                           assert_fault: Any) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.PF, pfec_sgx=True):
        plat.cpu.enclu(EncluLeaf.EACCEPT, enclave.ctx, la, la)


def test_eaccept_without_sgx2_gp(make_platform: Any, assert_fault: Any) -> None:
    plat = make_platform(features=SgxFeatures(sgx2=False))
    enc = plat.build_enclave()
    with assert_fault(Vector.GP):
        accept(plat.cpu, enc.ctx, _si(REG, R | PR), enc.rw_la(0))


def test_eaccept_mismatch_reported_before_not_tracked(plat: Any, enclave: Any,
                                                      assert_status: Any) -> None:
    plat.emodpr(enclave.rw(0), secinfo_flags(REG, R))
    status = accept(plat.cpu, enclave.ctx, _si(REG, R | W | PR), enclave.rw_la(0))
    assert_status(status, SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH, zf=True)


def test_eaccept_pr_bit_not_compared(plat: Any, enclave: Any, assert_status: Any) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    status = accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING | PR), la)
    assert_status(status, SgxError.SGX_SUCCESS)


# -- EACCEPTCOPY ----------------------------------------------------------------------------------

def test_eacceptcopy_copies_and_sets_permissions(plat: Any, enclave: Any,
                                                 assert_status: Any) -> None:
    la = enclave.free_la()
    idx = plat.eaug(enclave, la)
    src_la = enclave.rw_la(1)
    status = accept_copy(plat.cpu, enclave.ctx, _si(REG, R | X), la, src_la)
    assert_status(status, SgxError.SGX_SUCCESS, zf=False)
    assert plat.epc_bytes(idx) == plat.epc_bytes(enclave.rw(1))
    e = _entry(plat, idx)
    assert (e.r, e.w, e.x, e.pending, e.modified, e.pr) == (True, False, True, False, False,
                                                             False)


def test_eacceptcopy_register_level(plat: Any, enclave: Any, assert_status: Any) -> None:
    la = enclave.free_la()
    idx = plat.eaug(enclave, la)
    secinfo_la = enclave.rw_la(0)
    plat.enclave_write(enclave, secinfo_la, _si(REG, R | W).to_bytes())
    result = plat.cpu.enclu(EncluLeaf.EACCEPTCOPY, enclave.ctx, secinfo_la, la, enclave.ro_la)
    assert_status(result, SgxError.SGX_SUCCESS)
    assert plat.epc_bytes(idx) == plat.epc_bytes(enclave.idx(enclave.ro_la))


@pytest.mark.parametrize("dest", ["eadded", "accepted-eaug"])
def test_eacceptcopy_destination_not_pending_mismatch(plat: Any, enclave: Any,
                                                      assert_status: Any, dest: str) -> None:
    if dest == "eadded":
        la = enclave.rw_la(2)
    else:
        la = enclave.free_la()
        plat.eaug(enclave, la)
        accept(plat.cpu, enclave.ctx, _si(REG, R | W | PENDING), la)
    before = plat.epc_bytes(enclave.idx(la))
    status = accept_copy(plat.cpu, enclave.ctx, _si(REG, R | W), la, enclave.rw_la(1))
    assert_status(status, SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH, zf=True, cf=False)
    assert plat.epc_bytes(enclave.idx(la)) == before


@pytest.mark.parametrize("bits", [
    pytest.param((REG, W), id="W-without-R"),
    pytest.param((TCS_T, 0), id="not-REG"),
    pytest.param((TRIM, 0), id="TRIM"),
])
def test_eacceptcopy_bad_secinfo_gp(plat: Any, enclave: Any, assert_fault: Any,
                                    bits: tuple[PageType, int]) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.GP):
        accept_copy(plat.cpu, enclave.ctx, _si(*bits), la, enclave.rw_la(1))


def test_eacceptcopy_source_pending_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    dest, src = enclave.free_la(0), enclave.free_la(1)
    plat.eaug(enclave, dest)
    plat.eaug(enclave, src)
    with assert_fault(Vector.PF, pfec_sgx=True, address=src):
        accept_copy(plat.cpu, enclave.ctx, _si(REG, R | W), dest, src)


def test_eacceptcopy_misaligned_source_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.GP):
        accept_copy(plat.cpu, enclave.ctx, _si(REG, R | W), la, enclave.rw_la(1) + 8)


# -- EMODPE ---------------------------------------------------------------------------------------

def test_emodpe_extends_permissions(plat: Any, enclave: Any) -> None:
    idx = enclave.idx(enclave.ro_la)
    modpe(plat.cpu, enclave.ctx, _si(REG, R | W), enclave.ro_la)
    e = _entry(plat, idx)
    assert (e.r, e.w, e.x) == (True, True, False)
    modpe(plat.cpu, enclave.ctx, _si(REG, X), enclave.ro_la)  # never removes permissions
    e = _entry(plat, idx)
    assert (e.r, e.w, e.x) == (True, True, True)
    assert not (e.pending or e.modified or e.pr)


def test_emodpe_register_level(plat: Any, enclave: Any, assert_status: Any) -> None:
    secinfo_la = enclave.rw_la(0) + 0x80
    plat.enclave_write(enclave, secinfo_la, _si(REG, R | X).to_bytes())
    result = plat.cpu.enclu(EncluLeaf.EMODPE, enclave.ctx, secinfo_la, enclave.rw_la(1))
    assert_status(result, SgxError.SGX_SUCCESS)
    assert _entry(plat, enclave.rw(1)).x


def test_emodpe_pending_page_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    la = enclave.free_la()
    plat.eaug(enclave, la)
    with assert_fault(Vector.PF, pfec_sgx=True, address=la):
        modpe(plat.cpu, enclave.ctx, _si(REG, R | W | X), la)


def test_emodpe_modified_or_tcs_page_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    plat.emodt(enclave.rw(0), secinfo_flags(TRIM))
    with assert_fault(Vector.PF, pfec_sgx=True):
        modpe(plat.cpu, enclave.ctx, _si(REG, R), enclave.rw_la(0))
    with assert_fault(Vector.PF, pfec_sgx=True):
        modpe(plat.cpu, enclave.ctx, _si(REG, R), enclave.tcs_la)


def test_emodpe_write_without_read_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        modpe(plat.cpu, enclave.ctx, _si(REG, W), enclave.ro_la)


def test_emodpe_misaligned_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        modpe(plat.cpu, enclave.ctx, _si(REG, R | X), enclave.ro_la + 0x10)
