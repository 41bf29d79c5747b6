"""``ewb_pages`` and ``eld_pages`` are exactly the EWB and ELDB/ELDU leaf sequences.

Two identical platforms (same seeds, same setup) run the same random batches: one leaf by leaf
through ``cpu.encls`` with PAGEINFO, PCMD and SRCPGE in guest memory, the other through the
batches with operands by value. Statuses, PCMD images, ciphertexts, written-back LINADDRs and
faults (vector, error code, address, position in the batch) must agree, and so must the whole
EPCM, the EPC contents (VA slots included), the enclaves' states and the version counter. The
batches include faults (the pages before the fault took effect in both), every EWB/ELD status,
pages and slots named twice, VA pages and SECSs evicted and reloaded within one batch, and two
EPC sections.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from vsgx.arch import (
    ATTRIBUTES,
    PAGE_SIZE,
    PAGEINFO,
    PCMD,
    SECINFO,
    SECS,
    TCS,
    EnclsLeaf,
    PageType,
    SgxError,
    secinfo_flags,
)
from vsgx.cpu import (
    BatchFault,
    Epc,
    EpcSection,
    EvictedPage,
    LeafStatus,
    LoadRequest,
    SgxFault,
    SgxProcessor,
    SparseMemory,
    add_pages,
    eld_pages,
    ewb_pages,
)
from vsgx.crypto import BootSecrets, PlatformSecrets

BASES = (0x1_0000_0000, 0x2_0000_0000)
SECTION_PAGES = 20
NOT_EPC = 0x3_0000_0000
A_BASE, A_SIZE, A_REG = 0x40_0000, 0x10_0000, 6
B_BASE, B_SIZE, B_REG = 0x80_0000, 0x2000, 2
REG_RW = secinfo_flags(PageType.PT_REG, 3)

# guest memory: leaf operands and setup images
PAGEINFO_PA = 0x0000
PCMD_PA = 0x1000
SRC_PA = 0x2000
IMAGE_PA = 0x4000
SECINFO_PA = 0x5000


def pa(section: int, page: int) -> int:
    return BASES[section] + page * PAGE_SIZE


SECS_A, SECS_B = pa(0, 0), pa(1, 0)
A_PAGES = [pa(0, 1 + i) for i in range(A_REG)]
TCS_A = pa(0, 1 + A_REG)
B_PAGES = [pa(1, 1 + i) for i in range(B_REG)]
VA_PAGES = [pa(0, 8), pa(0, 9), pa(1, 3)]
CHILDREN = [*A_PAGES, TCS_A, *B_PAGES]
ALL_PAGES = [pa(s, i) for s in range(2) for i in range(SECTION_PAGES)]


class Platform:
    """A processor with two EPC sections, enclaves A (6 REG pages and a TCS) and B (2 REG
    pages), three VA pages; the same every time it is built."""

    def __init__(self) -> None:
        self.memory = SparseMemory()
        self.memory.map(0, 0x10000)
        epc = Epc([EpcSection(b, SECTION_PAGES * PAGE_SIZE, node=n) for n, b in enumerate(BASES)])
        self.cpu = SgxProcessor(epc, self.memory, platform=PlatformSecrets.from_seed(b"batch"),
                                boot=BootSecrets.from_seed(b"batch", 0), lps=2)
        self.cpu.lps[0].msrs.wrmsr(0x3A, 1 | 1 << 18)
        for secs_pa, base, size, pages in ((SECS_A, A_BASE, A_SIZE, A_PAGES),
                                           (SECS_B, B_BASE, B_SIZE, B_PAGES)):
            secs = SECS(size=size, baseaddr=base, ssaframesize=1, attributes=ATTRIBUTES(4, 3))
            self.write_pageinfo(0, IMAGE_PA, SECINFO_PA, 0, image=secs.to_bytes(),
                                secinfo=secinfo_flags(PageType.PT_SECS))
            self.leaf(EnclsLeaf.ECREATE, PAGEINFO_PA, secs_pa)
            data = b"".join(bytes([(p >> 12) & 0xFF, k]) * (PAGE_SIZE // 2)
                            for k, p in enumerate(pages))
            add_pages(self.cpu, secs_pa, pages, [base + k * PAGE_SIZE for k in range(len(pages))],
                      REG_RW, data, False)
        self.write_pageinfo(A_BASE + A_REG * PAGE_SIZE, IMAGE_PA, SECINFO_PA, SECS_A,
                            image=TCS(ossa=PAGE_SIZE, nssa=1).to_bytes(),
                            secinfo=secinfo_flags(PageType.PT_TCS))
        self.leaf(EnclsLeaf.EADD, PAGEINFO_PA, TCS_A)
        for va in VA_PAGES:
            self.leaf(EnclsLeaf.EPA, int(PageType.PT_VA), va)
        # Free pages with the EPCM epochs an earlier occupant leaves behind (EWB and EREMOVE
        # keep them): ELDB/ELDU must set them for the page it loads.
        free = (self.cpu.epcm.flags & 0x100) == 0
        self.cpu.epcm.bepoch[free] = 7
        self.cpu.epcm.mepoch[free] = 9

    def write_pageinfo(self, linaddr: int, srcpge: int, pcmd: int, secs: int, *,
                       image: bytes | None = None, secinfo: int | None = None) -> None:
        self.memory.write(PAGEINFO_PA, PAGEINFO(linaddr, srcpge, pcmd, secs).to_bytes())
        if image is not None:
            self.memory.write(IMAGE_PA, image)
        if secinfo is not None:
            self.memory.write(SECINFO_PA, SECINFO(secinfo).to_bytes())

    def leaf(self, leaf: EnclsLeaf, rbx: int, rcx: int, rdx: int = 0) -> LeafStatus:
        return self.cpu.encls(leaf, rbx, rcx, rdx).status

    def prelude(self, states: list[str], track_b: bool, inside: bool) -> None:
        """EBLOCK the children marked "early", ETRACK (A with a thread inside if ``inside``; B
        if ``track_b``), then EBLOCK those marked "late" (not tracked)."""
        for page, state in zip(CHILDREN, states, strict=True):
            if state == "early":
                assert self.leaf(EnclsLeaf.EBLOCK, 0, page).ok
        if inside:
            self.cpu.thread_entered(0, 1)
        assert self.leaf(EnclsLeaf.ETRACK, 0, SECS_A).ok
        if track_b:
            assert self.leaf(EnclsLeaf.ETRACK, 0, SECS_B).ok
        for page, state in zip(CHILDREN, states, strict=True):
            if state == "late":
                assert self.leaf(EnclsLeaf.EBLOCK, 0, page).ok

    # -- the leaf sequences ------------------------------------------------------------------

    def leaf_ewb(self, epc_pa: int, slot_pa: int) -> EvictedPage:
        self.memory.write(SRC_PA, bytes(PAGE_SIZE))
        self.memory.write(PCMD_PA, bytes(PCMD.SIZE))
        self.write_pageinfo(0, SRC_PA, PCMD_PA, 0)
        status = self.leaf(EnclsLeaf.EWB, PAGEINFO_PA, epc_pa, slot_pa)
        ciphertext = self.memory.read(SRC_PA, PAGE_SIZE)
        pcmd = self.memory.read(PCMD_PA, PCMD.SIZE)
        linaddr = PAGEINFO.from_bytes(self.memory.read(PAGEINFO_PA, PAGEINFO.SIZE)).linaddr
        if status.zf:  # an error status: EWB wrote nothing
            assert (ciphertext, pcmd, linaddr) == (bytes(PAGE_SIZE), bytes(PCMD.SIZE), 0)
            return EvictedPage(status, b"", b"", 0)
        return EvictedPage(status, ciphertext, pcmd, linaddr)

    def leaf_eld(self, request: LoadRequest, blocked: bool) -> LeafStatus:
        self.memory.write(SRC_PA, request.ciphertext)
        self.memory.write(PCMD_PA, request.pcmd)
        self.write_pageinfo(request.linaddr, SRC_PA, PCMD_PA, request.secs_pa)
        return self.leaf(EnclsLeaf.ELDB if blocked else EnclsLeaf.ELDU, PAGEINFO_PA,
                         request.epc_pa, request.va_slot_pa)

    def state(self) -> tuple[Any, ...]:
        """Everything the paging leaves can change (the version counter advances by one)."""
        cpu, e = self.cpu, self.cpu.epcm
        return (
            [a.tobytes() for a in (e.flags, e.pt, e.owner, e.linaddr, e.bepoch, e.mepoch)],
            e.by_address, e.valid_count,
            b"".join(bytes(s.memory) for s in cpu.epc.sections),
            {i: (s.eid, s.children, s.epoch, s.tracking) for i, s in cpu.enclaves.items()},
            {eid: s.children for eid, s in cpu.evicted_secs.items()},
            cpu.new_version(),
        )


Fault = tuple[int, int, int | None, str, int] | None
"""Vector, error code, address, reason, and the position in the batch of the faulting page."""


def _fault(exc: SgxFault, index: int) -> Fault:
    return int(exc.vector), exc.error_code, exc.address, exc.reason, index


def _leaf_ewbs(plat: Platform, ops: list[tuple[int, int]]) -> tuple[list[EvictedPage], Fault]:
    done: list[EvictedPage] = []
    for k, (epc_pa, slot_pa) in enumerate(ops):
        try:
            done.append(plat.leaf_ewb(epc_pa, slot_pa))
        except SgxFault as exc:
            return done, _fault(exc, k)
    return done, None


def _batch_ewbs(plat: Platform, ops: list[tuple[int, int]]) -> tuple[list[EvictedPage], Fault]:
    try:
        return ewb_pages(plat.cpu, [o[0] for o in ops], [o[1] for o in ops]), None
    except BatchFault as exc:
        return exc.done, _fault(exc, exc.index)


def _leaf_elds(plat: Platform, requests: list[LoadRequest],
               blocked: bool) -> tuple[list[LeafStatus], Fault]:
    done: list[LeafStatus] = []
    for k, request in enumerate(requests):
        try:
            done.append(plat.leaf_eld(request, blocked))
        except SgxFault as exc:
            return done, _fault(exc, k)
    return done, None


def _batch_elds(plat: Platform, requests: list[LoadRequest],
                blocked: bool) -> tuple[list[LeafStatus], Fault]:
    try:
        return eld_pages(plat.cpu, requests, blocked=blocked), None
    except BatchFault as exc:
        return exc.done, _fault(exc, exc.index)


# -- strategies -------------------------------------------------------------------------------

def _slot(va: int, k: int) -> int:
    return va + 8 * k


_SLOTS = st.builds(_slot, st.sampled_from(VA_PAGES), st.integers(0, 3))
_CHILD_OPS = st.tuples(st.sampled_from(CHILDREN), _SLOTS)


@st.composite
def _odd_op(draw: st.DrawFn) -> list[tuple[int, int]]:
    """A page that is not a blocked child, or an operand that faults."""
    kind = draw(st.sampled_from(["page", "va", "va-self", "secs-b-last", "same-slot", "twice",
                                 "bad-slot", "bad-page"]))
    slot = draw(_SLOTS)
    if kind == "page":  # SECS, VA page, free page
        return [(draw(st.sampled_from(ALL_PAGES)), slot)]
    if kind == "va":  # a VA page (the slots in it used later fault)
        return [(draw(st.sampled_from(VA_PAGES)), slot)]
    if kind == "va-self":  # a VA page into one of its own slots: #GP
        va = draw(st.sampled_from(VA_PAGES))
        return [(va, va + 8 * draw(st.integers(0, 3)))]
    if kind == "twice":  # the second EWB of a page finds it invalid (unless the first failed)
        page = draw(st.sampled_from(CHILDREN))
        return [(page, slot), (page, draw(_SLOTS))]
    if kind == "same-slot":  # the second EWB finds the slot occupied
        return [(draw(st.sampled_from(CHILDREN)), slot), (draw(st.sampled_from(CHILDREN)), slot)]
    if kind == "secs-b-last":  # B's children, then its SECS: EWB of a SECS that succeeds
        return [(page, _slot(VA_PAGES[2], 4 + k)) for k, page in enumerate(B_PAGES)] + \
            [(SECS_B, _slot(VA_PAGES[2], 7))]
    page = draw(st.sampled_from(CHILDREN))
    if kind == "bad-slot":
        bad = draw(st.sampled_from([A_PAGES[0] + 16, pa(1, 12) + 8, slot + 4, page + 8,
                                    NOT_EPC]))
        return [(page, bad)]
    return [(draw(st.sampled_from([page + 0x800, NOT_EPC])), slot)]


@st.composite
def _ewb_batches(draw: st.DrawFn) -> list[tuple[int, int]]:
    """EWBs of distinct children, with up to two odd operations inserted (none in half)."""
    ops = draw(st.lists(_CHILD_OPS, min_size=1, max_size=9, unique_by=lambda op: op[0]))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        at = draw(st.integers(0, len(ops)))
        ops[at:at] = draw(_odd_op())
    return ops


_PRELUDE = st.tuples(
    st.lists(st.sampled_from(["early"] * 8 + ["late", "none"]), min_size=len(CHILDREN),
             max_size=len(CHILDREN)),
    st.integers(0, 4).map(lambda n: n < 4), st.integers(0, 9).map(lambda n: n == 9))


def _with_type(pcmd: bytes, page_type: int) -> bytes:
    return pcmd[:1] + bytes([page_type]) + pcmd[2:]


def _flip(data: bytes, offset: int, mask: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


_TWISTS = st.sampled_from([
    "none", "slot", "slot-bad", "linaddr", "mac", "reserved", "flags", "type", "dest-valid",
    "dest-odd", "dest-again", "secs-odd", "secs-reg"])


def _requests(data: st.DataObject, plat: Platform,
              evicted: list[tuple[int, int, EvictedPage]]) -> list[LoadRequest]:
    """ELD requests for (some of) the pages evicted, a page now and then twice: mostly
    well-formed, into distinct free EPC pages; now and then tampered, misdirected or
    faulting."""
    free = [p for p in ALL_PAGES if not plat.cpu.epcm.valid(plat.cpu.epc.index_of(p) or 0)]
    secs_at = {SECS_A: SECS_A, SECS_B: SECS_B}
    owner_of = {**{p: SECS_A for p in [*A_PAGES, TCS_A]}, **{p: SECS_B for p in B_PAGES}}
    picks = data.draw(st.lists(st.integers(0, len(evicted) - 1), min_size=1, max_size=8))
    dests = data.draw(st.permutations(free))
    # One request (at ``focus``) gets the example's twist; the others one now and then.
    focus, focus_twist = data.draw(st.integers(0, len(picks) - 1)), data.draw(_TWISTS)
    requests: list[LoadRequest] = []
    for n, (k, dest) in enumerate(zip(picks, dests, strict=False)):
        page, slot, ev = evicted[k]
        linaddr, pcmd, secs = ev.linaddr, ev.pcmd, secs_at.get(owner_of.get(page, 0), 0)
        if n == focus:
            twist = focus_twist
        else:
            twist = data.draw(_TWISTS) if data.draw(st.integers(0, 7)) == 7 else "none"
        if twist == "slot":
            slot = data.draw(_SLOTS)
        elif twist == "slot-bad":  # in a REG page, a free page, outside the EPC, misaligned
            slot = data.draw(st.sampled_from([B_PAGES[0] + 8, pa(1, 12), NOT_EPC, slot + 2]))
        elif twist == "linaddr":
            linaddr ^= PAGE_SIZE
        elif twist == "mac":
            pcmd = _flip(pcmd, 112, 1)
        elif twist == "reserved":
            pcmd = _flip(pcmd, 80, 1)
        elif twist == "flags":
            pcmd = _flip(pcmd, 0, 0x40)  # a reserved SECINFO.FLAGS bit
        elif twist == "type":  # another page type, 7 and up reserved
            pcmd = _with_type(pcmd, data.draw(st.sampled_from([7, 0xFF, 0, 3, 4, 5])))
        elif twist == "dest-valid":
            dest = data.draw(st.sampled_from([SECS_A, *VA_PAGES]))
        elif twist == "dest-again":
            dest = requests[-1].epc_pa if requests else dest
        elif twist == "dest-odd":
            dest = data.draw(st.sampled_from([dest + 0x40, NOT_EPC, slot & ~(PAGE_SIZE - 1)]))
        elif twist == "secs-odd":
            secs += 8
        elif twist == "secs-reg":
            secs = A_PAGES[0]
        if page in secs_at and twist == "none":
            secs_at[page] = dest  # the children after it name the SECS where it now is
        requests.append(LoadRequest(dest, slot, secs, linaddr, pcmd, ev.ciphertext))
    return requests


def _events(what: str, statuses: list[LeafStatus], fault: Fault) -> None:
    for status in statuses:
        event(f"{what} status", SgxError(status.code).name)
    event(f"{what} fault", "none" if fault is None else f"#{fault[0]} at page {fault[4]}")


# -- the property -----------------------------------------------------------------------------

@settings(max_examples=250, deadline=None)
@given(prelude=_PRELUDE, ewb_ops=_ewb_batches(), blocked=st.booleans(), data=st.data())
def test_batches_equal_the_leaf_sequences(prelude: tuple[list[str], bool, bool],
                                          ewb_ops: list[tuple[int, int]], blocked: bool,
                                          data: st.DataObject) -> None:
    by_leaf, batched = Platform(), Platform()
    for plat in (by_leaf, batched):
        plat.prelude(*prelude)

    leaf_ewb = _leaf_ewbs(by_leaf, ewb_ops)
    batch_ewb = _batch_ewbs(batched, ewb_ops)
    assert batch_ewb == leaf_ewb
    _events("EWB", [ev.status for ev in leaf_ewb[0]], leaf_ewb[1])
    assert batched.state() == by_leaf.state()
    for ev in batch_ewb[0]:
        if ev.pcmd:
            assert PCMD.from_bytes(ev.pcmd).to_bytes() == ev.pcmd  # reserved bytes are zero

    evicted = [(page, slot, ev) for (page, slot), ev in zip(ewb_ops, batch_ewb[0], strict=False)
               if not ev.status.zf]
    if not evicted:
        return
    requests = _requests(data, batched, evicted)
    leaf_eld = _leaf_elds(by_leaf, requests, blocked)
    batch_eld = _batch_elds(batched, requests, blocked)
    assert batch_eld == leaf_eld
    _events("ELD", leaf_eld[0], leaf_eld[1])
    assert batched.state() == by_leaf.state()


# -- examples ---------------------------------------------------------------------------------

def _evict_all(plat: Platform) -> list[tuple[int, int, EvictedPage]]:
    """EBLOCK + ETRACK + EWB of every page of both enclaves, then both SECSs and a VA page
    (whose slots hold the versions of the first pages)."""
    plat.prelude(["early"] * len(CHILDREN), True, False)
    ops = [(page, _slot(VA_PAGES[k % 2], k)) for k, page in enumerate(CHILDREN)]
    ops += [(SECS_A, _slot(VA_PAGES[2], 0)), (SECS_B, _slot(VA_PAGES[2], 1)),
            (VA_PAGES[0], _slot(VA_PAGES[2], 2))]
    evicted = ewb_pages(plat.cpu, [o[0] for o in ops], [o[1] for o in ops])
    assert all(ev.status.ok for ev in evicted)
    return [(page, slot, ev) for (page, slot), ev in zip(ops, evicted, strict=True)]


def test_reload_secs_va_page_then_children_in_one_batch() -> None:
    """The VA page and the SECSs come back first, in the same batch as the pages that need
    them: the batch ends its vectorised runs there and still matches the leaves."""
    by_leaf, batched = Platform(), Platform()
    evicted = _evict_all(by_leaf)
    assert [ev for *_, ev in _evict_all(batched)] == [ev for *_, ev in evicted]
    free = iter(pa(1, i) for i in range(4, SECTION_PAGES))
    where = {SECS_A: next(free), SECS_B: next(free), VA_PAGES[0]: next(free)}
    secs_of = {**{p: where[SECS_A] for p in [*A_PAGES, TCS_A]},
               **{p: where[SECS_B] for p in B_PAGES}}
    requests = [LoadRequest(where[page], slot, 0, ev.linaddr, ev.pcmd, ev.ciphertext)
                for page, slot, ev in evicted[::-1] if page in where]
    for page, slot, ev in evicted:
        if page in secs_of:
            if slot // PAGE_SIZE == VA_PAGES[0] // PAGE_SIZE:  # the VA page moved
                slot = where[VA_PAGES[0]] + slot % PAGE_SIZE
            requests.append(LoadRequest(next(free) if page in B_PAGES else page, slot,
                                        secs_of[page], ev.linaddr, ev.pcmd, ev.ciphertext))
    leaf = _leaf_elds(by_leaf, requests, True)
    assert leaf == ([LeafStatus()] * len(requests), None)
    assert _batch_elds(batched, requests, True) == leaf
    assert batched.state() == by_leaf.state()


def test_fault_keeps_the_pages_before_it() -> None:
    plat = Platform()
    plat.prelude(["early"] * len(CHILDREN), False, False)
    ops = [(A_PAGES[0], _slot(VA_PAGES[0], 0)), (A_PAGES[1], _slot(VA_PAGES[0], 1)),
           (NOT_EPC, _slot(VA_PAGES[0], 2)), (A_PAGES[2], _slot(VA_PAGES[0], 3))]
    with pytest.raises(BatchFault) as info:
        ewb_pages(plat.cpu, [o[0] for o in ops], [o[1] for o in ops])
    assert info.value.index == 2 and info.value.address == NOT_EPC
    assert [ev.status for ev in info.value.done] == [LeafStatus()] * 2
    assert not plat.cpu.epcm.valid(1) and not plat.cpu.epcm.valid(2)
    assert plat.cpu.epcm.valid(3)


def test_statuses_without_effect() -> None:
    plat = Platform()
    plat.prelude(["none", "late", *["early"] * (len(CHILDREN) - 2)], True, False)
    ops = [(A_PAGES[0], _slot(VA_PAGES[0], 0)), (A_PAGES[1], _slot(VA_PAGES[0], 1)),
           (SECS_A, _slot(VA_PAGES[0], 2)), (A_PAGES[2], _slot(VA_PAGES[0], 3)),
           (A_PAGES[3], _slot(VA_PAGES[0], 3))]
    evicted = ewb_pages(plat.cpu, [o[0] for o in ops], [o[1] for o in ops])
    assert [ev.status.code for ev in evicted] == [
        SgxError.SGX_PAGE_NOT_BLOCKED, SgxError.SGX_NOT_TRACKED, SgxError.SGX_CHILD_PRESENT,
        SgxError.SGX_SUCCESS, SgxError.SGX_VA_SLOT_OCCUPIED]
    assert evicted[4].status.cf and not evicted[4].status.zf
    assert [ev.ciphertext for ev in evicted[:3]] == [b""] * 3


def test_malformed_batches_are_value_errors() -> None:
    plat = Platform()
    with pytest.raises(ValueError):
        ewb_pages(plat.cpu, [A_PAGES[0]], [])
    with pytest.raises(ValueError):
        ewb_pages(plat.cpu, [-PAGE_SIZE], [_slot(VA_PAGES[0], 0)])
    with pytest.raises(ValueError):
        ewb_pages(plat.cpu, [A_PAGES[0]], [1 << 64])
    with pytest.raises(ValueError):
        LoadRequest(A_PAGES[0], _slot(VA_PAGES[0], 0), SECS_A, A_BASE, bytes(64),
                    bytes(PAGE_SIZE))
    with pytest.raises(ValueError):
        LoadRequest(A_PAGES[0], _slot(VA_PAGES[0], 0), SECS_A, 1 << 64, bytes(PCMD.SIZE),
                    bytes(PAGE_SIZE))
    assert ewb_pages(plat.cpu, [], []) == []
    assert eld_pages(plat.cpu, [], blocked=False) == []


@pytest.mark.parametrize("case", ["dest-twice", "type-7", "type-ff", "slot-not-va"])
def test_requests_a_run_must_not_clear(case: str) -> None:
    """Requests the vectorised checks must stop at, each after a good one."""
    by_leaf, batched = Platform(), Platform()
    slot0, slot1 = _slot(VA_PAGES[1], 0), _slot(VA_PAGES[1], 1)
    for plat in (by_leaf, batched):
        plat.prelude(["early"] * len(CHILDREN), True, False)
        ev0, ev1 = ewb_pages(plat.cpu, A_PAGES[:2], [slot0, slot1])
    dest0, dest1 = pa(1, 10), pa(1, 11)
    pcmd1 = ev1.pcmd
    if case == "dest-twice":
        dest1 = dest0
    elif case == "type-7":
        pcmd1 = _with_type(pcmd1, 7)
    elif case == "type-ff":
        pcmd1 = _with_type(pcmd1, 0xFF)
    else:
        slot1 = A_PAGES[0] + 8  # an evicted (invalid) page: #PF
    requests = [LoadRequest(dest0, slot0, SECS_A, ev0.linaddr, ev0.pcmd, ev0.ciphertext),
                LoadRequest(dest1, slot1, SECS_A, ev1.linaddr, pcmd1, ev1.ciphertext)]
    leaf = _leaf_elds(by_leaf, requests, False)
    assert leaf[0] == [LeafStatus()] and leaf[1] is not None and leaf[1][4] == 1
    assert _batch_elds(batched, requests, False) == leaf
    assert batched.state() == by_leaf.state()
