"""EPC paging: EPA, EBLOCK, ETRACK, EWB, ELDU, ELDB (SDM Vol. 3D EPA/EBLOCK/ETRACK/EWB/ELDB/ELDU;
reference §5-§6). Every status code and fault those leaves list, plus the anti-replay and
power-cycle properties of evicted pages."""

from __future__ import annotations

from typing import Any

import pytest

from vsgx.arch import (
    KEYREQUEST,
    PAGE_SIZE,
    PAGEINFO,
    PCMD,
    KeyName,
    KeyPolicy,
    PageType,
    SgxError,
    Vector,
)
from vsgx.cpu.enclu import getkey
from vsgx.crypto import BootSecrets, MacMismatch, eldu_open, pcmd_mac_header

R, W, X = 1, 2, 4


def _slot_value(plat: Any, slot_pa: int) -> int:
    idx = (slot_pa - plat.EPC_BASE) // PAGE_SIZE
    off = slot_pa % PAGE_SIZE
    return int.from_bytes(plat.epc_bytes(idx, off, 8), "little")


# -- EPA ------------------------------------------------------------------------------------------

def test_epa_creates_zeroed_va_page(plat: Any, assert_status: Any) -> None:
    idx = plat.alloc()
    plat.epc.page(idx)[:] = b"\xAA" * PAGE_SIZE  # stale contents must be cleared
    assert_status(plat.encls(0x0A, int(PageType.PT_VA), plat.pa(idx)), SgxError.SGX_SUCCESS)
    entry = plat.cpu.epcm.entry(idx)
    assert entry.valid and entry.page_type == PageType.PT_VA
    assert not (entry.r or entry.w or entry.x or entry.blocked)
    assert entry.enclaveaddress == 0
    assert plat.epc_bytes(idx) == bytes(PAGE_SIZE)


@pytest.mark.parametrize("rbx", [0, 1, 2, 4, 0x300])
def test_epa_rbx_not_pt_va_gp(plat: Any, assert_fault: Any, rbx: int) -> None:
    idx = plat.alloc()
    with assert_fault(Vector.GP):
        plat.encls(0x0A, rbx, plat.pa(idx))
    assert not plat.cpu.epcm.valid(idx)


@pytest.mark.parametrize("kind", ["va", "secs", "reg"])
def test_epa_page_in_use_pf(plat: Any, assert_fault: Any, kind: str) -> None:
    if kind == "va":
        idx = plat.epa()
    else:
        secs = plat.ecreate()
        idx = secs if kind == "secs" else plat.eadd(secs, plat.ENCLAVE_BASE)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.encls(0x0A, int(PageType.PT_VA), plat.pa(idx))


def test_epa_misaligned_gp(plat: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.encls(0x0A, int(PageType.PT_VA), plat.pa(0) + 0x10)


def test_epa_not_epc_pf(plat: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF):
        plat.encls(0x0A, int(PageType.PT_VA), plat.FREE_PA)


# -- EBLOCK ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["rw", "tcs"])
def test_eblock_success_sets_blocked(plat: Any, enclave: Any, assert_status: Any,
                                     page: str) -> None:
    idx = enclave.rw(0) if page == "rw" else enclave.tcs
    assert_status(plat.eblock(idx), SgxError.SGX_SUCCESS, zf=False, cf=False)
    assert plat.cpu.epcm.entry(idx).blocked


def test_eblock_invalid_page_pg_invld(plat: Any, assert_status: Any) -> None:
    assert_status(plat.eblock(plat.alloc()), SgxError.SGX_PG_INVLD, zf=True, cf=False)


def test_eblock_secs_pg_is_secs(plat: Any, enclave: Any, assert_status: Any) -> None:
    assert_status(plat.eblock(enclave.secs), SgxError.SGX_PG_IS_SECS, zf=False, cf=True)
    assert not plat.cpu.epcm.entry(enclave.secs).blocked


def test_eblock_va_notblockable(plat: Any, assert_status: Any) -> None:
    va = plat.epa()
    assert_status(plat.eblock(va), SgxError.SGX_NOTBLOCKABLE, zf=False, cf=True)
    assert not plat.cpu.epcm.entry(va).blocked


def test_eblock_already_blocked_blkstate(plat: Any, enclave: Any, assert_status: Any) -> None:
    idx = enclave.rw(1)
    assert_status(plat.eblock(idx), SgxError.SGX_SUCCESS)
    assert_status(plat.eblock(idx), SgxError.SGX_BLKSTATE, zf=False, cf=True)
    assert plat.cpu.epcm.entry(idx).blocked


def test_eblock_misaligned_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.encls(0x09, 0, plat.pa(enclave.rw(0)) + 0x40)


def test_eblock_not_epc_pf(plat: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF, address=plat.FREE_PA):
        plat.encls(0x09, 0, plat.FREE_PA)


# -- ETRACK ---------------------------------------------------------------------------------------

def test_etrack_success(plat: Any, enclave: Any, assert_status: Any) -> None:
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_SUCCESS, zf=False)
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_SUCCESS, zf=False)


def test_etrack_prev_trk_incmpl_until_threads_leave(plat: Any, enclave: Any,
                                                    assert_status: Any) -> None:
    state = plat.cpu.enclaves[enclave.secs]
    state.inside.add(1)  # a logical processor is executing inside the enclave
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_SUCCESS)
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_PREV_TRK_INCMPL, zf=True, cf=False)
    # The processor model has no "leave the enclave" entry point (EEXIT/AEX live in the
    # execution engine): simulate the exit by dropping LP 1 from both sets.
    state.inside.discard(1)
    state.tracking.discard(1)
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_SUCCESS)


@pytest.mark.parametrize("kind", ["reg", "va", "invalid"])
def test_etrack_not_a_secs_pf(plat: Any, enclave: Any, assert_fault: Any, kind: str) -> None:
    idx = {"reg": enclave.rw(0), "va": plat.epa(), "invalid": plat.alloc()}[kind]
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.etrack(idx)


def test_etrack_misaligned_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.encls(0x0C, 0, plat.pa(enclave.secs) + 8)


# -- EWB ------------------------------------------------------------------------------------------

def test_ewb_success_writes_pcmd_and_linaddr(plat: Any, enclave: Any,
                                             assert_status: Any) -> None:
    idx, la = enclave.rw(2), enclave.rw_la(2)
    plaintext = plat.epc_bytes(idx)
    va = plat.epa()
    slot = plat.va_slot(va, 5)
    plat.eblock(idx)
    plat.etrack(enclave.secs)
    ev = plat.ewb(idx, slot)
    assert_status(ev.result, SgxError.SGX_SUCCESS, zf=False, cf=False)
    pcmd = PCMD.from_bytes(ev.pcmd)  # strict: reserved bytes are zero
    assert pcmd.secinfo.flags == (int(PageType.PT_REG) << 8) | R | W
    assert pcmd.enclaveid == plat.cpu.enclaves[enclave.secs].eid
    assert pcmd.mac != bytes(16)
    assert ev.linaddr == la
    assert ev.ciphertext != plaintext
    assert not plat.cpu.epcm.valid(idx)
    assert _slot_value(plat, slot) != 0
    assert plat.cpu.enclaves[enclave.secs].children == len(enclave.pages) - 1


def test_ewb_not_blocked(plat: Any, enclave: Any, assert_status: Any) -> None:
    va = plat.epa()
    ev = plat.ewb(enclave.rw(0), plat.va_slot(va))
    assert_status(ev.result, SgxError.SGX_PAGE_NOT_BLOCKED, zf=True, cf=False)
    assert plat.cpu.epcm.valid(enclave.rw(0))
    assert _slot_value(plat, plat.va_slot(va)) == 0


def test_ewb_not_tracked_without_etrack(plat: Any, enclave: Any, assert_status: Any) -> None:
    va = plat.epa()
    plat.eblock(enclave.rw(0))
    ev = plat.ewb(enclave.rw(0), plat.va_slot(va))
    assert_status(ev.result, SgxError.SGX_NOT_TRACKED, zf=True, cf=False)
    assert plat.cpu.epcm.valid(enclave.rw(0))


def test_ewb_not_tracked_when_etrack_precedes_eblock(plat: Any, enclave: Any,
                                                     assert_status: Any) -> None:
    va = plat.epa()
    plat.etrack(enclave.secs)
    plat.eblock(enclave.rw(0))
    ev = plat.ewb(enclave.rw(0), plat.va_slot(va))
    assert_status(ev.result, SgxError.SGX_NOT_TRACKED, zf=True)


def test_ewb_not_tracked_while_thread_inside(plat: Any, enclave: Any,
                                             assert_status: Any) -> None:
    state = plat.cpu.enclaves[enclave.secs]
    state.inside.add(2)
    va = plat.epa()
    plat.eblock(enclave.rw(0))
    plat.etrack(enclave.secs)
    ev = plat.ewb(enclave.rw(0), plat.va_slot(va))
    assert_status(ev.result, SgxError.SGX_NOT_TRACKED, zf=True)
    state.inside.discard(2)  # the thread exits (see test_etrack_prev_trk_incmpl...)
    state.tracking.discard(2)
    assert_status(plat.ewb(enclave.rw(0), plat.va_slot(va)).result, SgxError.SGX_SUCCESS)


def test_ewb_va_slot_occupied_still_completes(plat: Any, enclave: Any,
                                              assert_status: Any) -> None:
    va = plat.epa()
    slot = plat.va_slot(va, 3)
    first = plat.evict(enclave.secs, enclave.rw(0), slot)
    old_version = _slot_value(plat, slot)
    second_idx = enclave.rw(1)
    plat.eblock(second_idx)
    plat.etrack(enclave.secs)
    ev = plat.ewb(second_idx, slot)
    assert_status(ev.result, SgxError.SGX_VA_SLOT_OCCUPIED, zf=False, cf=True)
    assert not plat.cpu.epcm.valid(second_idx)  # the eviction happened anyway
    assert PCMD.from_bytes(ev.pcmd).mac != bytes(16) and ev.linaddr == enclave.rw_la(1)
    assert _slot_value(plat, slot) not in (0, old_version)
    # The slot now versions the second page: it reloads, the first one no longer does.
    assert_status(plat.eld(ev, plat.alloc(), secs_idx=enclave.secs), SgxError.SGX_SUCCESS)
    assert_status(plat.eld(first, plat.alloc(), secs_idx=enclave.secs),
                  SgxError.SGX_MAC_COMPARE_FAIL, zf=True)


def test_ewb_secs_with_children_child_present(plat: Any, enclave: Any,
                                              assert_status: Any) -> None:
    va = plat.epa()
    ev = plat.ewb(enclave.secs, plat.va_slot(va))
    assert_status(ev.result, SgxError.SGX_CHILD_PRESENT, zf=True, cf=False)
    assert plat.cpu.epcm.valid(enclave.secs)


def test_ewb_rcx_and_rdx_same_page_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    va = plat.epa()
    plat.write_pageinfo(srcpge=plat.BLOB_PA, secinfo=plat.PCMD_PA)
    with assert_fault(Vector.GP):
        plat.encls(0x0B, plat.PAGEINFO_PA, plat.pa(va), plat.pa(va) + 8)


@pytest.mark.parametrize("what", ["pcmd", "srcpge", "pageinfo", "rcx", "rdx"])
def test_ewb_misaligned_operands_gp(plat: Any, enclave: Any, assert_fault: Any,
                                    what: str) -> None:
    va = plat.epa()
    idx = enclave.rw(0)
    plat.eblock(idx)
    plat.etrack(enclave.secs)
    pageinfo = plat.PAGEINFO_PA
    rcx, rdx = plat.pa(idx), plat.va_slot(va)
    fields = {"srcpge": plat.BLOB_PA, "secinfo": plat.PCMD_PA}
    if what == "pcmd":
        fields["secinfo"] = plat.PCMD_PA + 0x40
    elif what == "srcpge":
        fields["srcpge"] = plat.BLOB_PA + 0x100
    elif what == "pageinfo":
        pageinfo = plat.PAGEINFO_PA + 0x10
    elif what == "rcx":
        rcx += 0x200
    else:
        rdx += 4
    plat.write_pageinfo(at=pageinfo, **fields)
    with assert_fault(Vector.GP):
        plat.encls(0x0B, pageinfo, rcx, rdx)
    assert plat.cpu.epcm.valid(idx)


@pytest.mark.parametrize("field", ["linaddr", "secs"])
def test_ewb_pageinfo_linaddr_or_secs_nonzero_gp(plat: Any, enclave: Any, assert_fault: Any,
                                                 field: str) -> None:
    va = plat.epa()
    plat.eblock(enclave.rw(0))
    plat.etrack(enclave.secs)
    plat.write_pageinfo(srcpge=plat.BLOB_PA, secinfo=plat.PCMD_PA,
                        **{field: plat.pa(enclave.secs) if field == "secs" else enclave.rw_la()})
    with assert_fault(Vector.GP):
        plat.encls(0x0B, plat.PAGEINFO_PA, plat.pa(enclave.rw(0)), plat.va_slot(va))


@pytest.mark.parametrize("kind", ["reg", "invalid", "secs"])
def test_ewb_va_slot_not_in_va_page_pf(plat: Any, enclave: Any, assert_fault: Any,
                                       kind: str) -> None:
    plat.eblock(enclave.rw(0))
    plat.etrack(enclave.secs)
    holder = {"reg": enclave.rw(1), "invalid": plat.alloc(), "secs": enclave.secs}[kind]
    plat.write_pageinfo(srcpge=plat.BLOB_PA, secinfo=plat.PCMD_PA)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(holder) + 16):
        plat.encls(0x0B, plat.PAGEINFO_PA, plat.pa(enclave.rw(0)), plat.pa(holder) + 16)


def test_ewb_va_slot_not_epc_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    plat.eblock(enclave.rw(0))
    plat.etrack(enclave.secs)
    plat.write_pageinfo(srcpge=plat.BLOB_PA, secinfo=plat.PCMD_PA)
    with assert_fault(Vector.PF):
        plat.encls(0x0B, plat.PAGEINFO_PA, plat.pa(enclave.rw(0)), plat.FREE_PA)


def test_ewb_invalid_page_pf(plat: Any, assert_fault: Any) -> None:
    va = plat.epa()
    idx = plat.alloc()
    plat.write_pageinfo(srcpge=plat.BLOB_PA, secinfo=plat.PCMD_PA)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(idx)):
        plat.encls(0x0B, plat.PAGEINFO_PA, plat.pa(idx), plat.va_slot(va))


# -- ELDU / ELDB ----------------------------------------------------------------------------------

@pytest.mark.parametrize("blocked", [False, True], ids=["ELDU", "ELDB"])
def test_eld_round_trip(plat: Any, enclave: Any, assert_status: Any, blocked: bool) -> None:
    idx, la = enclave.rw(1), enclave.rw_la(1)
    plaintext = plat.epc_bytes(idx)
    va = plat.epa()
    slot = plat.va_slot(va, 511)
    ev = plat.evict(enclave.secs, idx, slot)
    new = plat.alloc()
    result = plat.eld(ev, new, secs_idx=enclave.secs, blocked=blocked)
    assert_status(result, SgxError.SGX_SUCCESS, zf=False, cf=False)
    assert plat.epc_bytes(new) == plaintext
    entry = plat.cpu.epcm.entry(new)
    assert entry.valid and entry.page_type == PageType.PT_REG
    assert (entry.r, entry.w, entry.x) == (True, True, False)
    assert entry.enclavesecs == enclave.secs and entry.enclaveaddress == la
    assert entry.blocked == blocked
    assert _slot_value(plat, slot) == 0  # cleared: the blob cannot be loaded again
    if not blocked:
        # The enclave sees its page again at the same linear address.
        assert plat.cpu.enclave_read(enclave.ctx, la, 64, 8) == plaintext[:64]


def test_eld_tcs_round_trip(plat: Any, enclave: Any, assert_status: Any) -> None:
    plaintext = plat.epc_bytes(enclave.tcs)
    va = plat.epa()
    ev = plat.evict(enclave.secs, enclave.tcs, plat.va_slot(va))
    assert PCMD.from_bytes(ev.pcmd).secinfo.flags == int(PageType.PT_TCS) << 8
    new = plat.alloc()
    assert_status(plat.eld(ev, new, secs_idx=enclave.secs), SgxError.SGX_SUCCESS)
    assert plat.epc_bytes(new) == plaintext
    assert plat.cpu.epcm.entry(new).page_type == PageType.PT_TCS


@pytest.fixture
def evicted(plat: Any, enclave: Any) -> Any:
    """(enclave, VA index, Evicted) for RW page 0 evicted into slot 0."""
    va = plat.epa()
    return enclave, va, plat.evict(enclave.secs, enclave.rw(0), plat.va_slot(va, 0))


def _flip(data: bytes, offset: int, mask: int = 1) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


@pytest.mark.parametrize("tamper", [
    "ciphertext-first", "ciphertext-last", "pcmd-mac", "pcmd-secinfo-rwx", "pcmd-secinfo-type",
    "pcmd-reserved", "linaddr", "version-slot", "other-enclave-secs",
])
def test_eld_mac_compare_fail(plat: Any, evicted: Any, assert_status: Any, tamper: str) -> None:
    enc, va, ev = evicted
    kwargs: dict[str, Any] = {"secs_idx": enc.secs}
    if tamper == "ciphertext-first":
        kwargs["ciphertext"] = _flip(ev.ciphertext, 0)
    elif tamper == "ciphertext-last":
        kwargs["ciphertext"] = _flip(ev.ciphertext, PAGE_SIZE - 1, 0x80)
    elif tamper == "pcmd-mac":
        kwargs["pcmd"] = _flip(ev.pcmd, 112)
    elif tamper == "pcmd-secinfo-rwx":
        kwargs["pcmd"] = _flip(ev.pcmd, 0, X)  # claim the page was executable
    elif tamper == "pcmd-secinfo-type":
        kwargs["pcmd"] = _flip(ev.pcmd, 1, 0x03)  # PT_REG -> PT_TRIM
    elif tamper == "pcmd-reserved":
        kwargs["pcmd"] = _flip(ev.pcmd, 80)
    elif tamper == "linaddr":
        kwargs["linaddr"] = enc.rw_la(3)
    elif tamper == "version-slot":
        kwargs["va_slot"] = plat.va_slot(va, 1)  # an empty slot: version 0
    else:
        other = plat.build_enclave(tag=enc.tag)  # same contents, different EID
        kwargs["secs_idx"] = other.secs
    new = plat.alloc()
    result = plat.eld(ev, new, **kwargs)
    assert_status(result, SgxError.SGX_MAC_COMPARE_FAIL, zf=True, cf=False)
    assert not plat.cpu.epcm.valid(new)
    assert _slot_value(plat, ev.va_slot) != 0  # a failed load leaves the version in place
    # The untampered blob still loads.
    assert_status(plat.eld(ev, plat.alloc(), secs_idx=enc.secs), SgxError.SGX_SUCCESS)


def test_eld_replay_after_successful_load(plat: Any, evicted: Any, assert_status: Any) -> None:
    """The slot is cleared when the page loads, so the same blob cannot be loaded twice
    (not even after the loaded copy is removed again)."""
    enc, _, ev = evicted
    first = plat.alloc()
    assert_status(plat.eld(ev, first, secs_idx=enc.secs), SgxError.SGX_SUCCESS)
    assert_status(plat.encls(0x03, 0, plat.pa(first)), SgxError.SGX_SUCCESS)  # EREMOVE
    assert_status(plat.eld(ev, plat.alloc(), secs_idx=enc.secs), SgxError.SGX_MAC_COMPARE_FAIL,
                  zf=True)


def test_eld_stale_blob_after_reevict(plat: Any, evicted: Any, assert_status: Any) -> None:
    """Evict, load, evict again into the same slot: the first blob is now stale."""
    enc, _, ev1 = evicted
    new = plat.alloc()
    assert_status(plat.eld(ev1, new, secs_idx=enc.secs), SgxError.SGX_SUCCESS)
    ev2 = plat.evict(enc.secs, new, ev1.va_slot)
    assert_status(ev2.result, SgxError.SGX_SUCCESS, cf=False)  # the slot was free again
    assert_status(plat.eld(ev1, plat.alloc(), secs_idx=enc.secs), SgxError.SGX_MAC_COMPARE_FAIL,
                  zf=True)
    assert_status(plat.eld(ev2, plat.alloc(), secs_idx=enc.secs), SgxError.SGX_SUCCESS)


def test_eld_after_power_cycle_mac_compare_fail(plat: Any, evicted: Any,
                                                assert_status: Any) -> None:
    enc, _, ev = evicted
    version = _slot_value(plat, ev.va_slot)
    plat.cpu.power_cycle(BootSecrets.random())
    assert not plat.cpu.epcm.valid(enc.secs) and not plat.cpu.enclaves
    # The EPC is gone: rebuild the enclave (same contents) and a VA page first.
    rebuilt = plat.build_enclave(tag=enc.tag)
    va = plat.epa()
    slot = plat.va_slot(va, 0)
    # Even with the old version number replayed into the slot, the paging key has changed.
    plat.epc.page(va)[0:8] = version.to_bytes(8, "little")
    result = plat.eld(ev, plat.alloc(), secs_idx=rebuilt.secs, va_slot=slot)
    assert_status(result, SgxError.SGX_MAC_COMPARE_FAIL, zf=True, cf=False)


def test_eld_destination_valid_pf(plat: Any, evicted: Any, assert_fault: Any) -> None:
    enc, _, ev = evicted
    busy = enc.rw(1)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(busy)):
        plat.eld(ev, busy, secs_idx=enc.secs)


@pytest.mark.parametrize("kind", ["reg", "invalid"])
def test_eld_va_slot_not_in_va_page_pf(plat: Any, evicted: Any, assert_fault: Any,
                                       kind: str) -> None:
    enc, _, ev = evicted
    holder = enc.rw(1) if kind == "reg" else plat.alloc()
    with assert_fault(Vector.PF, pfec_sgx=True):
        plat.eld(ev, plat.alloc(), secs_idx=enc.secs, va_slot=plat.pa(holder))


@pytest.mark.parametrize("kind", ["reg", "invalid", "va"])
def test_eld_pageinfo_secs_not_a_secs_pf(plat: Any, evicted: Any, assert_fault: Any,
                                         kind: str) -> None:
    enc, va, ev = evicted
    fake = {"reg": enc.rw(1), "invalid": plat.alloc(), "va": va}[kind]
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(fake)):
        plat.eld(ev, plat.alloc(), secs_idx=fake)


def test_eld_same_page_gp(plat: Any, evicted: Any, assert_fault: Any) -> None:
    enc, va, ev = evicted
    with assert_fault(Vector.GP):
        plat.eld(ev, va, secs_idx=enc.secs, va_slot=plat.va_slot(va, 0))


@pytest.mark.parametrize("what", ["pcmd", "srcpge", "rdx"])
def test_eld_misaligned_operands_gp(plat: Any, evicted: Any, assert_fault: Any,
                                    what: str) -> None:
    enc, _va, ev = evicted
    plat.write(plat.BLOB_PA, ev.ciphertext)
    plat.write(plat.PCMD_PA, ev.pcmd)
    fields = {"linaddr": ev.linaddr, "srcpge": plat.BLOB_PA, "secinfo": plat.PCMD_PA,
              "secs": plat.pa(enc.secs)}
    rdx = ev.va_slot
    if what == "pcmd":
        fields["secinfo"] += 0x40
    elif what == "srcpge":
        fields["srcpge"] += 0x10
    else:
        rdx += 2
    plat.write_pageinfo(**fields)
    with assert_fault(Vector.GP):
        plat.encls(0x08, plat.PAGEINFO_PA, plat.pa(plat.alloc()), rdx)


def test_va_page_evict_and_reload(plat: Any, enclave: Any, assert_status: Any) -> None:
    """A VA page can itself be evicted (into another VA page) and reloaded with its slots."""
    va_inner = plat.epa()
    ev_page = plat.evict(enclave.secs, enclave.rw(0), plat.va_slot(va_inner, 7))
    va_outer = plat.epa()
    ev_va = plat.ewb(va_inner, plat.va_slot(va_outer, 0))  # no EBLOCK/ETRACK for a VA page
    assert_status(ev_va.result, SgxError.SGX_SUCCESS)
    pcmd = PCMD.from_bytes(ev_va.pcmd)
    assert pcmd.secinfo.flags == int(PageType.PT_VA) << 8 and pcmd.enclaveid == 0
    assert ev_va.linaddr == 0
    new_va = plat.alloc()
    assert_status(plat.eld(ev_va, new_va), SgxError.SGX_SUCCESS)
    assert plat.cpu.epcm.entry(new_va).page_type == PageType.PT_VA
    assert not plat.cpu.epcm.entry(new_va).blocked
    ev_page.va_slot = plat.va_slot(new_va, 7)  # the version moved with its VA page
    assert_status(plat.eld(ev_page, plat.alloc(), secs_idx=enclave.secs), SgxError.SGX_SUCCESS)


@pytest.mark.parametrize("blocked", [False, True], ids=["ELDU", "ELDB"])
def test_secs_evict_and_reload_then_child(plat: Any, enclave: Any, assert_status: Any,
                                          blocked: bool) -> None:
    request = KEYREQUEST(keyname=KeyName.SEAL_KEY, keypolicy=int(KeyPolicy.MRENCLAVE))
    status, seal_before = getkey(plat.cpu, enclave.ctx, request)
    assert status.ok
    va = plat.epa()
    contents = {la: plat.epc_bytes(idx) for la, idx in enclave.pages.items()}
    for idx in enclave.pages.values():
        assert_status(plat.eblock(idx), SgxError.SGX_SUCCESS)
    assert_status(plat.etrack(enclave.secs), SgxError.SGX_SUCCESS)
    evicted = {}
    for k, (la, idx) in enumerate(enclave.pages.items()):
        ev = plat.ewb(idx, plat.va_slot(va, k))
        assert_status(ev.result, SgxError.SGX_SUCCESS)
        evicted[la] = ev
    eid = plat.cpu.enclaves[enclave.secs].eid
    ev_secs = plat.ewb(enclave.secs, plat.va_slot(va, 100))
    assert_status(ev_secs.result, SgxError.SGX_SUCCESS)
    assert PCMD.from_bytes(ev_secs.pcmd).secinfo.flags == int(PageType.PT_SECS) << 8
    assert PCMD.from_bytes(ev_secs.pcmd).enclaveid == eid
    assert not plat.cpu.epcm.valid(enclave.secs)

    new_secs = plat.alloc()
    assert_status(plat.eld(ev_secs, new_secs, blocked=blocked), SgxError.SGX_SUCCESS)
    entry = plat.cpu.epcm.entry(new_secs)
    assert entry.valid and entry.page_type == PageType.PT_SECS and not entry.blocked
    assert plat.cpu.enclaves[new_secs].eid == eid

    la = enclave.rw_la(2)
    child = plat.alloc()
    assert_status(plat.eld(evicted[la], child, secs_idx=new_secs), SgxError.SGX_SUCCESS)
    assert plat.epc_bytes(child) == contents[la]
    assert plat.cpu.epcm.entry(child).enclavesecs == new_secs
    status, seal_after = getkey(plat.cpu, type(enclave.ctx)(secs=new_secs), request)
    assert status.ok and seal_after == seal_before


def test_eld_secs_into_valid_page_pf(plat: Any, assert_fault: Any, assert_status: Any) -> None:
    secs = plat.ecreate()
    va = plat.epa()
    ev = plat.ewb(secs, plat.va_slot(va))
    assert_status(ev.result, SgxError.SGX_SUCCESS)
    busy = plat.ecreate()
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(busy)):
        plat.eld(ev, busy)


def test_ewb_secs_mac_header_eid_is_zero(plat: Any, assert_status: Any) -> None:
    secs = plat.ecreate()
    va = plat.epa()
    ev = plat.ewb(secs, plat.va_slot(va, 9))
    assert_status(ev.result, SgxError.SGX_SUCCESS)
    pcmd = PCMD.from_bytes(ev.pcmd)
    version = _slot_value(plat, plat.va_slot(va, 9))
    header = pcmd_mac_header(0, 0, pcmd.secinfo.flags)
    try:
        eldu_open(plat.cpu.boot.paging_key, version, header, ev.ciphertext, pcmd.mac)
    except MacMismatch:
        pytest.fail("the SECS page's MAC header does not carry EID 0")


def test_pageinfo_linaddr_written_back_only(plat: Any, enclave: Any) -> None:
    """EWB writes PAGEINFO.LINADDR and leaves the other PAGEINFO fields as they were."""
    va = plat.epa()
    ev = plat.evict(enclave.secs, enclave.rw(3), plat.va_slot(va))
    pageinfo = PAGEINFO.from_bytes(plat.read(plat.PAGEINFO_PA, 32))
    assert pageinfo == PAGEINFO(ev.linaddr, plat.BLOB_PA, plat.PCMD_PA, 0)
