"""EDBGRD / EDBGWR (SDM Vol. 3D EDBGRD, EDBGWR; same text in the 2016, 2018 and 2023 editions).

What the SDM pseudo-code specifies, in order: 8-byte alignment (#GP); RCX in the EPC (#PF); EPCM
entry valid (#PF); page type REG or TCS (EDBGRD also VA), else #PF; PENDING or MODIFIED page ->
SGX_PAGE_NOT_DEBUGGABLE (the only status code these leaves have); a TCS may be written only in
its FLAGS word (#GP); the owning enclave must have ATTRIBUTES.DEBUG, else #GP(0). EDBGRD of a VA
slot returns all-ones if the slot is in use and 0 otherwise. EPCM RWX and BLOCKED are ignored.
"""

from __future__ import annotations

from typing import Any

import pytest

from vsgx.arch import (
    TCS,
    EnclsLeaf,
    PageType,
    SgxError,
    TcsFlags,
    Vector,
    secinfo_flags,
)

EDBGRD, EDBGWR = EnclsLeaf.EDBGRD, EnclsLeaf.EDBGWR
R, W, X = 1, 2, 4
U64 = (1 << 64) - 1


def _rd(plat: Any, addr: int) -> Any:
    return plat.encls(EDBGRD, 0, addr)


def _wr(plat: Any, addr: int, value: int) -> Any:
    return plat.encls(EDBGWR, value, addr)


@pytest.mark.parametrize("which", ["rw", "ro", "rx"])
def test_debug_write_read_round_trip(plat: Any, debug_enclave: Any, assert_status: Any,
                                     which: str) -> None:
    """EPCM RWX are ignored: even read-only and execute pages can be read and written."""
    enc = debug_enclave
    la = {"rw": enc.rw_la(1), "ro": enc.ro_la, "rx": enc.rx_la}[which] + 0x238
    addr = plat.pa(enc.idx(la)) + (la & 0xFFF)
    original = _rd(plat, addr)
    assert_status(original.status, SgxError.SGX_SUCCESS, zf=False)
    assert original.rbx == int.from_bytes(plat.enclave_read(enc, la, 8), "little")
    assert_status(_wr(plat, addr, 0x0123456789ABCDEF), SgxError.SGX_SUCCESS, zf=False)
    result = _rd(plat, addr)
    assert_status(result, SgxError.SGX_SUCCESS)
    assert result.rbx == 0x0123456789ABCDEF
    assert plat.enclave_read(enc, la, 8) == (0x0123456789ABCDEF).to_bytes(8, "little")


def test_debug_read_tcs(plat: Any, debug_enclave: Any, assert_status: Any) -> None:
    enc = debug_enclave
    result = _rd(plat, plat.pa(enc.tcs) + 16)  # OSSA
    assert_status(result, SgxError.SGX_SUCCESS)
    assert result.rbx == TCS.from_bytes(plat.epc_bytes(enc.tcs)).ossa


def test_debug_write_tcs_dbgoptin(plat: Any, debug_enclave: Any, assert_status: Any) -> None:
    enc = debug_enclave
    assert_status(_wr(plat, plat.pa(enc.tcs) + 8, int(TcsFlags.DBGOPTIN)), SgxError.SGX_SUCCESS)
    assert TCS.from_bytes(plat.epc_bytes(enc.tcs)).flags == int(TcsFlags.DBGOPTIN)
    assert_status(_wr(plat, plat.pa(enc.tcs) + 8, 0), SgxError.SGX_SUCCESS)
    assert TCS.from_bytes(plat.epc_bytes(enc.tcs)).flags == 0


@pytest.mark.parametrize("offset", [0, 16, 32, 0xFF8])
def test_debug_write_tcs_outside_flags_gp(plat: Any, debug_enclave: Any, assert_fault: Any,
                                          offset: int) -> None:
    before = plat.epc_bytes(debug_enclave.tcs)
    with assert_fault(Vector.GP):
        _wr(plat, plat.pa(debug_enclave.tcs) + offset, 0x1000)
    assert plat.epc_bytes(debug_enclave.tcs) == before


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
@pytest.mark.parametrize("offset", [4, 1, 0xFFC])
def test_debug_misaligned_gp(plat: Any, debug_enclave: Any, assert_fault: Any,
                             leaf: EnclsLeaf, offset: int) -> None:
    with assert_fault(Vector.GP):
        plat.encls(leaf, 0, plat.pa(debug_enclave.rw(0)) + offset)


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
def test_debug_invalid_page_pf(plat: Any, assert_fault: Any, leaf: EnclsLeaf) -> None:
    idx = plat.alloc()
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.encls(leaf, 0, plat.pa(idx))


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
def test_debug_not_epc_pf(plat: Any, assert_fault: Any, leaf: EnclsLeaf) -> None:
    with assert_fault(Vector.PF):
        plat.encls(leaf, 0, plat.FREE_PA)


# -- the SDM order of checks ------------------------------------------------------------------

@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
def test_debug_production_enclave_gp(plat: Any, enclave: Any, assert_fault: Any,
                                     leaf: EnclsLeaf) -> None:
    with assert_fault(Vector.GP):
        plat.encls(leaf, 0x41, plat.pa(enclave.rw(0)))


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
@pytest.mark.parametrize("state", ["pending", "modified"])
def test_debug_pending_or_modified_page_not_debuggable(plat: Any, debug_enclave: Any,
                                                       assert_status: Any, leaf: EnclsLeaf,
                                                       state: str) -> None:
    enc = debug_enclave
    if state == "pending":
        idx = plat.eaug(enc, enc.free_la())
    else:
        idx = enc.rw(2)
        assert plat.emodt(idx, secinfo_flags(PageType.PT_TCS)).status.ok  # TCS, MODIFIED=1
    result = plat.encls(leaf, 0x41, plat.pa(idx) + 0x40)
    assert_status(result, SgxError.SGX_PAGE_NOT_DEBUGGABLE, zf=True, cf=False)


def test_debug_read_va_slot(plat: Any, enclave: Any, assert_status: Any) -> None:
    va = plat.epa()
    plat.evict(enclave.secs, enclave.rw(0), plat.va_slot(va, 1))
    empty, used = _rd(plat, plat.va_slot(va, 0)), _rd(plat, plat.va_slot(va, 1))
    assert_status(empty, SgxError.SGX_SUCCESS)
    assert_status(used, SgxError.SGX_SUCCESS)
    assert (empty.rbx, used.rbx) == (0, U64)


def test_debug_write_va_pf(plat: Any, assert_fault: Any) -> None:
    va = plat.epa()
    with assert_fault(Vector.PF, pfec_sgx=True):
        _wr(plat, plat.va_slot(va, 0), 1)


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
def test_debug_secs_pf(plat: Any, debug_enclave: Any, assert_fault: Any,
                       leaf: EnclsLeaf) -> None:
    with assert_fault(Vector.PF, pfec_sgx=True):
        plat.encls(leaf, 0, plat.pa(debug_enclave.secs))


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
def test_debug_trim_page_pf(plat: Any, debug_enclave: Any, assert_fault: Any,
                            leaf: EnclsLeaf) -> None:
    idx = debug_enclave.rw(3)
    assert plat.emodt(idx, secinfo_flags(PageType.PT_TRIM)).status.ok
    with assert_fault(Vector.PF, pfec_sgx=True):
        plat.encls(leaf, 0, plat.pa(idx))


@pytest.mark.parametrize("leaf", [EDBGRD, EDBGWR])
def test_debug_blocked_page_accessible(plat: Any, debug_enclave: Any, assert_status: Any,
                                       leaf: EnclsLeaf) -> None:
    idx = debug_enclave.rw(0)
    assert plat.eblock(idx).status.ok
    assert_status(plat.encls(leaf, 7, plat.pa(idx)), SgxError.SGX_SUCCESS)


def test_debug_write_tcs_flags_other_bits(plat: Any, debug_enclave: Any,
                                          assert_status: Any) -> None:
    value = int(TcsFlags.DBGOPTIN | TcsFlags.AEXNOTIFY)
    assert_status(_wr(plat, plat.pa(debug_enclave.tcs) + 8, value), SgxError.SGX_SUCCESS)
    assert TCS.from_bytes(plat.epc_bytes(debug_enclave.tcs)).flags == value
