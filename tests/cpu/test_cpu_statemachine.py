"""Stateful property test of the processor model: random ENCLS/ENCLU sequences against an
independent model.

A hypothesis ``RuleBasedStateMachine`` drives ECREATE, EADD (REG and TCS), EEXTEND, the batched
``add_pages``, EINIT, EREMOVE, EPA, EBLOCK, ETRACK, EWB, ELDU/ELDB (including replays of old
versions, wrong version slots and loads into another enclave), EAUG, EMODPR, EMODT and the
value-level EACCEPT/EGETKEY/EREPORT on a 64-page EPC, with up to three enclaves created and torn
down over time and logical processors entering and leaving them (as the execution engine does:
``EnclaveState.inside`` and ``.tracking``).

The model below is written from the SDM-level rules in the reference sheet (§5-6), not from the
processor code: it predicts each leaf's outcome (success, a status code, or a fault) and the
resulting EPCM entries. MRENCLAVE is recomputed with ``hashlib`` and ``struct`` from the recorded
ECREATE/EADD/EEXTEND operations. After every step the EPCM arrays are scanned in full and compared
with the model. The only exception a leaf may raise is :class:`vsgx.cpu.SgxFault`, and a leaf that
faults or reports an error must leave the EPCM (and the EPC contents) unchanged.

Two processor bugs the model ran into (a stale EACCEPT epoch on a reloaded page; the reverse
address map losing a page when two share an address) have regression tests at the end of the
file. The state machine itself never puts two pages at one linear address.
"""

from __future__ import annotations

import functools
import hashlib
import random
import struct
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vsgx.arch import (
    ATTRIBUTES,
    KEYREQUEST,
    PAGE_SIZE,
    PAGEINFO,
    PCMD,
    SECINFO,
    SECS,
    SIGSTRUCT,
    TARGETINFO,
    TCS,
    EnclsLeaf,
    PageType,
    SgxError,
)
from vsgx.cpu import (
    EnclaveContext,
    EnclaveState,
    Epc,
    EpcSection,
    LeafStatus,
    SgxFault,
    SgxProcessor,
    SparseMemory,
    add_pages,
)
from vsgx.cpu import epcm as epcm_bits
from vsgx.cpu.enclu import accept, getkey, report
from vsgx.crypto import (
    BootSecrets,
    PlatformSecrets,
    generate_signing_key,
    mrsigner,
    sign_sigstruct,
)

# -- platform layout -------------------------------------------------------------------------

EPC_BASE = 0x8000_0000
EPC_PAGES = 64
LPS = 3

PAGEINFO_PA = 0x0000
SRC_PA = 0x1000
SECINFO_PA = 0x2000
SIGSTRUCT_PA = 0x3000
TOKEN_PA = 0x5000  # zeroed EINITTOKEN: VALID = 0, the FLC path
STORE_PA = 0x10_0000  # evicted pages: 4 KiB ciphertext + a PCMD page each

MODE64BIT, DEBUG = 0x4, 0x2
SSAFRAMESIZE = 1

R, W, X, PENDING, MODIFIED, PR = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
RWX = R | W | X
STATE_BITS = RWX | PENDING | MODIFIED | PR

SECS_T, TCS_T, REG_T, VA_T, TRIM_T = (PageType.PT_SECS, PageType.PT_TCS, PageType.PT_REG,
                                      PageType.PT_VA, PageType.PT_TRIM)
CHILD_TYPES = (REG_T, TCS_T, TRIM_T)

FAULT = "fault"
"""Outcome of a leaf that raised SgxFault."""

Outcome = Any  # SgxError or FAULT

CF_CODES = {SgxError.SGX_PG_IS_SECS, SgxError.SGX_NOTBLOCKABLE, SgxError.SGX_BLKSTATE,
            SgxError.SGX_VA_SLOT_OCCUPIED}
OK = SgxError.SGX_SUCCESS
MAC_FAIL = SgxError.SGX_MAC_COMPARE_FAIL


def epc(i: int) -> int:
    return EPC_BASE + i * PAGE_SIZE


@functools.cache
def signing_key() -> Any:
    """One RSA-3072 e=3 key for the module (generation takes about a second)."""
    return generate_signing_key()


@functools.cache
def signer_hash() -> bytes:
    return mrsigner(signed_sigstruct(bytes(32)).modulus)


@functools.lru_cache(maxsize=512)
def signed_sigstruct(enclavehash: bytes) -> SIGSTRUCT:
    # ATTRIBUTEMASK and MISCMASK 0: EINIT's attribute checks pass for any SECS.
    return sign_sigstruct(SIGSTRUCT(enclavehash=enclavehash), signing_key())


# -- the independent measurement -------------------------------------------------------------

def ecreate_record(ssaframesize: int, size: int) -> bytes:
    return struct.pack("<8sIQ44s", b"ECREATE", ssaframesize, size, b"")


def eadd_record(offset: int, secinfo_flags: int) -> bytes:
    if (secinfo_flags >> 8) & 0xFF == TCS_T:
        secinfo_flags &= ~RWX  # SDM EADD: a TCS is measured with R/W/X forced to 0
    return struct.pack("<8sQQ40s", b"EADD", offset, secinfo_flags, b"")


def eextend_record(offset: int, chunk: bytes) -> bytes:
    assert len(chunk) == 256
    return struct.pack("<8sQ48s", b"EEXTEND", offset, b"") + chunk


def test_model_measurement_matches_reference_worked_example() -> None:
    """The model's records reproduce the reference sheet's §2 MRENCLAVE."""
    page = bytes(range(256)) * 16
    records = [ecreate_record(1, 0x4000), eadd_record(0, 0x107), eadd_record(0x1000, 0x205)]
    records += [eextend_record(0x1000 + k * 256, page[k * 256 : (k + 1) * 256])
                for k in range(16)]
    assert hashlib.sha256(b"".join(records)).hexdigest() == (
        "0adaa61d33155ae41db2764fc8ec8dbac8e1a98292df84729cf03f663859ce83")


# -- model -----------------------------------------------------------------------------------

@dataclass(eq=False)
class MEnclave:
    name: int
    base: int
    size: int
    secs: MPage
    state: EnclaveState  # the processor's object, for entering/leaving as the engine does
    records: list[bytes] = field(default_factory=list)
    initialized: bool = False
    epoch: int = 0
    tracking: set[int] = field(default_factory=set)
    inside: set[int] = field(default_factory=set)
    las: set[int] = field(default_factory=set)  # linear addresses in use (resident or evicted)

    def __repr__(self) -> str:
        return f"<enclave {self.name} base={self.base:#x} secs@{self.secs.idx}>"

    def mrenclave(self) -> bytes:
        return hashlib.sha256(b"".join(self.records)).digest()

    def tracked(self, stamp: int) -> bool:
        """An ETRACK after ``stamp`` has completed (reference §6 tracking model)."""
        return stamp < self.epoch and not self.tracking

    @property
    def resident(self) -> bool:
        return self.secs.idx is not None

    @property
    def secs_pa(self) -> int:
        assert self.secs.idx is not None
        return epc(self.secs.idx)

    def free_las(self) -> list[int]:
        return [la for la in range(self.base, self.base + self.size, PAGE_SIZE)
                if la not in self.las]


@dataclass(eq=False)
class MPage:
    kind: PageType
    enclave: MEnclave | None = None  # owner of a child page; the enclave of a SECS
    la: int = 0
    bits: int = 0  # R W X PENDING MODIFIED PR
    blocked: bool = False
    bepoch: int = 0
    mepoch: int = 0
    content: bytes = bytes(PAGE_SIZE)
    idx: int | None = None
    evicted: Eviction | None = None
    slots: dict[int, Eviction] = field(default_factory=dict)  # VA pages: offset -> eviction

    def __repr__(self) -> str:
        owner = f" of enclave {self.enclave.name} la={self.la:#x}" if self.enclave else ""
        where = f"@{self.idx}" if self.idx is not None else "(evicted)"
        return f"<{self.kind.name}{where}{owner} bits={self.bits:#x}>"


@dataclass(eq=False)
class Eviction:
    page: MPage
    srcpge: int
    pcmd: int
    va: MPage
    off: int
    slot_pa: int  # where the version went (the VA page may move later)
    la: int
    secs_pa: int  # the owner's SECS address at eviction time (0 for SECS/VA)
    content: bytes
    live: bool = True  # False once loaded, overwritten or its VA page was removed

    def __repr__(self) -> str:
        return f"<eviction of {self.page!r} slot {self.off:#x} live={self.live}>"


# -- the state machine -----------------------------------------------------------------------

class SgxStateMachine(RuleBasedStateMachine):
    """Single-leaf rules draw mostly valid, sometimes invalid operands; the macro rules
    (``build_enclave``, ``evict_page``, ``evict_va``, ``evict_enclave``, ``reload``,
    ``sgx2_cycle``) chain valid leaves to reach deep states (initialised enclaves, evicted VA
    pages and SECS, accepted SGX2 changes) within a few dozen steps. Every leaf goes through a
    ``do_*`` method that predicts the outcome from the model, checks it and updates the model."""

    def __init__(self) -> None:
        super().__init__()
        self.mem = SparseMemory()
        self.mem.map(0, 0x10000)
        self.cpu = SgxProcessor(Epc([EpcSection(EPC_BASE, EPC_PAGES * PAGE_SIZE)]), self.mem,
                                platform=PlatformSecrets.from_seed(b"statemachine"),
                                boot=BootSecrets.from_seed(b"statemachine", 0), lps=LPS)
        signer = signer_hash()
        for lp in self.cpu.lps:
            lp.msrs.wrmsr(0x3A, 1 | 1 << 17 | 1 << 18)  # LOCKED | SGX_LC | SGX
            for i in range(4):
                lp.msrs.wrmsr(0x8C + i, int.from_bytes(signer[8 * i : 8 * i + 8], "little"))
        self.resident: dict[int, MPage] = {}
        self.enclaves: list[MEnclave] = []  # alive: SECS resident, or evicted and loadable
        self.evictions: list[Eviction] = []  # every eviction made, live or not
        self.lp_in: dict[int, MEnclave] = {}
        self.created = 0
        self.stores = 0

    # -- model queries -------------------------------------------------------------------

    def free_idx(self) -> list[int]:
        return [i for i in range(EPC_PAGES) if i not in self.resident]

    def pages_of(self, enc: MEnclave) -> list[MPage]:
        pages = [p for p in self.resident.values() if p.enclave is enc and p.kind in CHILD_TYPES]
        return sorted(pages, key=lambda p: p.idx or 0)

    def resident_enclaves(self) -> list[MEnclave]:
        return [e for e in self.enclaves if e.resident]

    def initialized(self) -> list[MEnclave]:
        return [e for e in self.enclaves if e.resident and e.initialized]

    def building(self) -> list[MEnclave]:
        return [e for e in self.enclaves if e.resident and not e.initialized]

    def va_pages(self) -> list[MPage]:
        return sorted((p for p in self.resident.values() if p.kind == VA_T),
                      key=lambda p: p.idx or 0)

    def loadable(self) -> list[Eviction]:
        """Live evictions whose VA page is resident and (for a child page) whose SECS is."""
        out = []
        for ev in self.evictions:
            owner = ev.page.enclave
            if not ev.live or ev.va.idx is None or (
                    ev.page.kind in CHILD_TYPES and (owner not in self.enclaves
                                                     or not owner.resident)):
                continue
            out.append(ev)
        return out

    # -- operands ------------------------------------------------------------------------

    @staticmethod
    def rare(data: st.DataObject, label: str, one_in: int = 8) -> bool:
        return data.draw(st.integers(0, one_in - 1), label=label) == one_in - 1

    @staticmethod
    def operand(data: st.DataObject, good: int | None) -> tuple[int, int | None]:
        """An EPC operand: mostly page ``good``, sometimes a random page, an address outside
        the EPC or a misaligned one. Returns (address, EPC index or None)."""
        roll = data.draw(st.integers(0, 19), label="operand roll")
        if good is not None and roll < 17:
            return epc(good), good
        if roll < 19:
            i = data.draw(st.integers(0, EPC_PAGES - 1), label="random EPC index")
            return epc(i), i
        bad = data.draw(st.sampled_from([epc(EPC_PAGES), epc(3) + 0x40, 0x1000]), label="bad")
        return bad, None

    def store(self) -> tuple[int, int]:
        """Fresh ordinary-memory pages for one eviction's ciphertext and PCMD."""
        pa = STORE_PA + self.stores * 2 * PAGE_SIZE
        self.stores += 1
        self.mem.map(pa, 2 * PAGE_SIZE)
        return pa, pa + PAGE_SIZE

    def write_pageinfo(self, linaddr: int = 0, srcpge: int = 0, secinfo: int = 0,
                       secs: int = 0) -> None:
        self.mem.write(PAGEINFO_PA, PAGEINFO(linaddr, srcpge, secinfo, secs).to_bytes())

    # -- running leaves ------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        e = self.cpu.epcm
        enclaves = tuple(sorted((k, s.children, s.initialized, s.epoch, tuple(sorted(s.tracking)))
                                for k, s in self.cpu.enclaves.items()))
        return (e.flags.tobytes(), e.pt.tobytes(), e.owner.tobytes(), e.linaddr.tobytes(),
                tuple(sorted(e.by_address.items())), e.valid_count, enclaves,
                tuple(sorted(self.cpu.evicted_secs)), bytes(self.cpu.epc.sections[0].memory))

    def run(self, what: str, fn: Any, *, atomic: bool = True) -> Outcome:
        """Run a leaf: SgxFault becomes FAULT and must leave the EPCM and EPC unchanged, as
        must an error status; any other exception fails the test."""
        before = self.snapshot()
        try:
            result = fn()
        except SgxFault:
            if atomic:
                assert self.snapshot() == before, f"{what} faulted after changing the EPCM/EPC"
            return FAULT
        except Exception as exc:
            raise AssertionError(f"{what} raised {type(exc).__name__}: {exc} "
                                 "(only SgxFault may leave a leaf)") from exc
        if result is None:  # add_pages returns nothing
            return None
        status = result if isinstance(result, LeafStatus) else result.status
        check_flags(what, status)
        if status.code not in (OK, SgxError.SGX_VA_SLOT_OCCUPIED):
            assert self.snapshot() == before, f"{what} returned {status.code!r} but changed state"
        return status.code

    def encls(self, leaf: EnclsLeaf, rbx: int = 0, rcx: int = 0, rdx: int = 0) -> Outcome:
        return self.run(leaf.name, lambda: self.cpu.encls(leaf, rbx, rcx, rdx))

    @staticmethod
    def expect(what: str, got: Outcome, allowed: Outcome | set[Outcome]) -> None:
        allowed = allowed if isinstance(allowed, set) else {allowed}
        assert got in allowed, f"{what}: got {got!r}, expected one of {allowed!r}"

    # -- model bookkeeping ---------------------------------------------------------------

    def drop_enclave(self, enc: MEnclave) -> None:
        self.enclaves.remove(enc)
        for lp in [lp for lp, e in self.lp_in.items() if e is enc]:
            del self.lp_in[lp]
        enc.inside.clear()
        enc.tracking.clear()

    def lose(self, ev: Eviction) -> None:
        """An eviction whose version is gone: it can never be loaded again."""
        ev.live = False
        if ev.page.kind == SECS_T and ev.page.enclave in self.enclaves:
            self.drop_enclave(ev.page.enclave)  # its SECS can never come back
        elif ev.page.kind == VA_T:
            self.lose_slots(ev.page)

    def lose_slots(self, va: MPage) -> None:
        lost = list(va.slots.values())
        va.slots.clear()
        for ev in lost:
            self.lose(ev)

    def leave_lp(self, lp: int) -> None:
        """A logical processor leaves its enclave, as the execution engine records it."""
        enc = self.lp_in.pop(lp)
        enc.state.inside.discard(lp)
        enc.state.tracking.discard(lp)
        enc.inside.discard(lp)
        enc.tracking.discard(lp)

    # -- leaves: predict, run, check, update ---------------------------------------------

    def do_ecreate(self, pa: int, idx: int | None, size: int) -> MEnclave | None:
        self.created += 1
        base = self.created << 28
        secs = SECS(size=size, baseaddr=base, ssaframesize=SSAFRAMESIZE,
                    attributes=ATTRIBUTES(MODE64BIT | DEBUG, 3))
        self.mem.write(SRC_PA, secs.to_bytes())
        self.mem.write(SECINFO_PA, SECINFO.of(SECS_T).to_bytes())
        self.write_pageinfo(0, SRC_PA, SECINFO_PA, 0)
        got = self.encls(EnclsLeaf.ECREATE, PAGEINFO_PA, pa)
        if idx is None or idx in self.resident or size & (size - 1) or size < 0x2000:
            self.expect("ECREATE", got, FAULT)
            return None
        self.expect("ECREATE", got, OK)
        page = MPage(SECS_T, idx=idx)
        enc = MEnclave(self.created, base, size, page, self.cpu.enclaves[idx],
                       records=[ecreate_record(SSAFRAMESIZE, size)])
        page.enclave = enc
        self.resident[idx] = page
        self.enclaves.append(enc)
        return enc

    def do_eadd(self, enc: MEnclave, pa: int, idx: int | None, la: int, flags: int,
                secs_pa: int, content: bytes) -> MPage | None:
        self.mem.write(SRC_PA, content)
        self.mem.write(SECINFO_PA, SECINFO(flags).to_bytes())
        self.write_pageinfo(la, SRC_PA, SECINFO_PA, secs_pa)
        got = self.encls(EnclsLeaf.EADD, PAGEINFO_PA, pa)
        kind, rwx = flags >> 8, flags & RWX
        valid = (idx is not None and idx not in self.resident and not enc.initialized
                 and secs_pa == enc.secs_pa and enc.base <= la < enc.base + enc.size
                 and (kind == TCS_T or rwx & (R | W) != W))
        if not valid:
            self.expect("EADD", got, FAULT)
            return None
        self.expect("EADD", got, OK)
        assert idx is not None
        page = MPage(PageType(kind), enc, la, 0 if kind == TCS_T else rwx, content=content,
                     idx=idx)
        self.resident[idx] = page
        enc.las.add(la)
        enc.records.append(eadd_record(la - enc.base, flags))
        return page

    def do_eextend(self, enc: MEnclave, page: MPage, rbx: int, rcx: int) -> None:
        assert page.idx is not None
        got = self.encls(EnclsLeaf.EEXTEND, rbx, rcx)
        if rcx % 256 or rbx != enc.secs_pa or enc.initialized:
            self.expect("EEXTEND", got, FAULT)
            return
        # The SDM leaves open whether EEXTEND of a blocked page faults.
        self.expect("EEXTEND", got, {OK, FAULT} if page.blocked else OK)
        if got == OK:
            chunk = rcx - epc(page.idx)
            enc.records.append(eextend_record(page.la - enc.base + chunk,
                                              page.content[chunk : chunk + 256]))

    def do_add_pages(self, enc: MEnclave, idxs: list[int], las: list[int], rwx: int,
                     measure: bool, blob: bytes) -> None:
        flags = (REG_T << 8) | rwx
        got = self.run("add_pages", lambda: add_pages(
            self.cpu, enc.secs_pa, [epc(i) for i in idxs], las, flags, blob, measure),
            atomic=False)
        committed = 0
        for i in idxs:  # pages before the first bad one are committed
            if i in self.resident or i in idxs[:committed]:
                break
            committed += 1
        self.expect("add_pages", got, None if committed == len(idxs) else FAULT)
        for k in range(committed):
            content = blob[k * PAGE_SIZE : (k + 1) * PAGE_SIZE]
            self.resident[idxs[k]] = MPage(REG_T, enc, las[k], rwx, content=content,
                                           idx=idxs[k])
            enc.las.add(las[k])
            off = las[k] - enc.base
            enc.records.append(eadd_record(off, flags))
            if measure:
                enc.records += [eextend_record(off + c, content[c : c + 256])
                                for c in range(0, PAGE_SIZE, 256)]

    def do_einit(self, enc: MEnclave, wrong: bool) -> None:
        expected = enc.mrenclave()
        digest = hashlib.sha256(expected).digest() if wrong else expected
        self.mem.write(SIGSTRUCT_PA, signed_sigstruct(digest).to_bytes())
        got = self.encls(EnclsLeaf.EINIT, SIGSTRUCT_PA, enc.secs_pa, TOKEN_PA)
        if enc.initialized:
            self.expect("EINIT of an initialised enclave", got, FAULT)
            return
        if wrong:
            self.expect("EINIT with a wrong ENCLAVEHASH", got, SgxError.SGX_INVALID_MEASUREMENT)
            return
        assert got == OK, (f"EINIT with the independently computed MRENCLAVE {expected.hex()} "
                           f"returned {got!r}")
        enc.initialized = True
        state = self.cpu.enclaves[enc.secs.idx]  # type: ignore[index]
        assert state.secs.mrenclave == expected
        assert state.secs.mrsigner == signer_hash()
        assert state.secs.attributes.flags & 1  # INIT

    def do_eremove(self, pa: int, idx: int | None) -> None:
        got = self.encls(EnclsLeaf.EREMOVE, 0, pa)
        page = None if idx is None else self.resident.get(idx)
        if idx is None:
            self.expect("EREMOVE", got, FAULT)
            return
        if page is None:
            self.expect("EREMOVE of a free page", got, OK)
            return
        if page.kind == SECS_T:
            assert page.enclave is not None
            if self.pages_of(page.enclave):
                self.expect("EREMOVE SECS", got, SgxError.SGX_CHILD_PRESENT)
                return
            self.expect("EREMOVE SECS", got, OK)
            self.drop_enclave(page.enclave)
        elif page.kind == VA_T:
            self.expect("EREMOVE VA", got, OK)
            self.lose_slots(page)
        else:
            assert page.enclave is not None
            accepted_trim = page.kind == TRIM_T and not page.bits & MODIFIED
            if page.enclave.inside and not accepted_trim:
                self.expect("EREMOVE child", got, SgxError.SGX_ENCLAVE_ACT)
                return
            self.expect("EREMOVE child", got, OK)
            page.enclave.las.discard(page.la)
        del self.resident[idx]
        page.idx = None

    def do_epa(self, pa: int, idx: int | None, rbx: int) -> MPage | None:
        got = self.encls(EnclsLeaf.EPA, rbx, pa)
        if idx is None or idx in self.resident or rbx != VA_T:
            self.expect("EPA", got, FAULT)
            return None
        self.expect("EPA", got, OK)
        page = self.resident[idx] = MPage(VA_T, idx=idx)
        return page

    def do_eblock(self, pa: int, idx: int | None) -> None:
        got = self.encls(EnclsLeaf.EBLOCK, 0, pa)
        page = None if idx is None else self.resident.get(idx)
        if idx is None:
            want: Outcome = FAULT
        elif page is None:
            want = SgxError.SGX_PG_INVLD
        elif page.kind == SECS_T:
            want = SgxError.SGX_PG_IS_SECS
        elif page.kind == VA_T:
            want = SgxError.SGX_NOTBLOCKABLE
        elif page.blocked:
            want = SgxError.SGX_BLKSTATE
        else:
            want = OK
        self.expect("EBLOCK", got, want)
        if want == OK:
            assert page is not None and page.enclave is not None
            page.blocked = True
            page.bepoch = page.enclave.epoch

    def do_etrack(self, pa: int, idx: int | None) -> None:
        got = self.encls(EnclsLeaf.ETRACK, 0, pa)
        page = None if idx is None else self.resident.get(idx)
        if page is None or page.kind != SECS_T:
            self.expect("ETRACK", got, FAULT)
            return
        enc = page.enclave
        assert enc is not None
        if enc.tracking:
            self.expect("ETRACK", got, SgxError.SGX_PREV_TRK_INCMPL)
            return
        self.expect("ETRACK", got, OK)
        enc.epoch += 1
        enc.tracking = set(enc.inside)

    def do_ewb(self, page: MPage, slot_pa: int) -> Eviction | None:
        assert page.idx is not None
        srcpge, pcmd = self.store()
        self.write_pageinfo(0, srcpge, pcmd, 0)
        content = bytes(self.cpu.epc.page(page.idx))
        got = self.encls(EnclsLeaf.EWB, PAGEINFO_PA, epc(page.idx), slot_pa)
        va = self.resident.get((slot_pa - EPC_BASE) // PAGE_SIZE)
        if va is None or va.kind != VA_T or va is page:
            self.expect("EWB with a bad VA slot", got, FAULT)
            return None
        assert va.idx is not None
        off = slot_pa - epc(va.idx)
        owner = page.enclave
        if page.kind == SECS_T:
            assert owner is not None
            want: Outcome = SgxError.SGX_CHILD_PRESENT if self.pages_of(owner) else OK
        elif page.kind == VA_T:
            want = OK
        else:
            assert owner is not None
            if not page.blocked:
                want = SgxError.SGX_PAGE_NOT_BLOCKED
            elif not owner.tracked(page.bepoch):
                want = SgxError.SGX_NOT_TRACKED
            else:
                want = OK
        occupied = off in va.slots
        if want == OK and occupied:
            want = SgxError.SGX_VA_SLOT_OCCUPIED  # CF = 1, and EWB still completes
        self.expect("EWB", got, want)
        if got not in (OK, SgxError.SGX_VA_SLOT_OCCUPIED):
            return None
        if occupied:  # the old version is overwritten: that eviction is lost for good
            self.lose(va.slots.pop(off))
        is_child = page.kind in CHILD_TYPES
        ev = Eviction(page, srcpge, pcmd, va, off, slot_pa, page.la if is_child else 0,
                      owner.secs_pa if is_child and owner else 0, content)
        pageinfo = PAGEINFO.from_bytes(self.mem.read(PAGEINFO_PA, PAGEINFO.SIZE))
        assert pageinfo.linaddr == ev.la, "EWB must write ENCLAVEADDRESS back to PAGEINFO"
        pcmd_s = PCMD.from_bytes(self.mem.read(pcmd, PCMD.SIZE), strict=False)
        assert pcmd_s.secinfo.page_type == page.kind
        assert pcmd_s.secinfo.flags & STATE_BITS == page.bits
        va.slots[off] = ev
        self.evictions.append(ev)
        del self.resident[page.idx]
        page.idx = None
        if page.kind == SECS_T:
            assert owner is not None and not owner.resident
        return ev

    def free_slot(self, data: st.DataObject, va: MPage) -> int:
        assert va.idx is not None
        off = data.draw(st.integers(0, 511), label="slot") * 8
        while off in va.slots:
            off = (off + 8) % PAGE_SIZE
        return epc(va.idx) + off

    def do_eld(self, ev: Eviction, dest: int, blocked: bool, *, slot_pa: int | None = None,
               secs_pa: int | None = None, want: Outcome | set[Outcome] = OK,
               what: str = "load of a live eviction") -> None:
        owner = ev.page.enclave
        if secs_pa is None:
            resident_owner = owner in self.enclaves and owner is not None and owner.resident
            secs_pa = (owner.secs_pa if ev.page.kind in CHILD_TYPES and resident_owner  # type: ignore[union-attr]
                       else ev.secs_pa)
        if slot_pa is None:
            slot_pa = ev.slot_pa if ev.va.idx is None else epc(ev.va.idx) + ev.off
        self.write_pageinfo(ev.la, ev.srcpge, ev.pcmd, secs_pa)
        leaf = EnclsLeaf.ELDB if blocked else EnclsLeaf.ELDU
        got = self.encls(leaf, PAGEINFO_PA, epc(dest), slot_pa)
        self.expect(f"{leaf.name}: {what}", got, want)
        if got != OK:
            return
        assert bytes(self.cpu.epc.page(dest)) == ev.content, "page content changed across EWB/ELD"
        page = ev.page
        ev.live = False
        del ev.va.slots[ev.off]
        page.evicted = None
        page.idx = dest
        self.resident[dest] = page
        if page.kind in CHILD_TYPES:
            assert page.enclave is not None
            page.blocked = blocked
            page.bepoch = page.enclave.epoch
            if page.bits & (PR | MODIFIED):
                # EWB needed a completed ETRACK after the EMODPR/EMODT: the change is tracked.
                page.mepoch = -1
        elif page.kind == SECS_T:
            assert page.enclave is not None
            assert self.cpu.enclaves[dest] is page.enclave.state

    def do_eaug(self, enc: MEnclave, pa: int, idx: int | None, la: int) -> MPage | None:
        self.write_pageinfo(la, 0, 0, enc.secs_pa)
        got = self.encls(EnclsLeaf.EAUG, PAGEINFO_PA, pa)
        if idx is None or idx in self.resident or not enc.initialized or \
                not enc.base <= la < enc.base + enc.size:
            self.expect("EAUG", got, FAULT)
            return None
        self.expect("EAUG", got, OK)
        page = self.resident[idx] = MPage(REG_T, enc, la, R | W | PENDING, idx=idx)
        enc.las.add(la)
        return page

    def modifiable(self, page: MPage | None) -> Outcome | None:
        """EMODPR/EMODT checks shared by both leaves, in SDM order; None when they pass."""
        if page is None or page.blocked or page.kind in (SECS_T, VA_T):
            return FAULT
        if page.bits & (PENDING | MODIFIED):
            return SgxError.SGX_PAGE_NOT_MODIFIABLE
        return None

    def do_emodpr(self, pa: int, idx: int | None, rwx: int) -> None:
        self.mem.write(SECINFO_PA, SECINFO((REG_T << 8) | rwx).to_bytes())
        got = self.encls(EnclsLeaf.EMODPR, SECINFO_PA, pa)
        page = None if idx is None else self.resident.get(idx)
        want = FAULT if rwx & (R | W) == W else self.modifiable(page)
        if want is None:
            assert page is not None and page.enclave is not None
            if page.kind != REG_T or not page.enclave.initialized:
                want = FAULT
        self.expect("EMODPR", got, OK if want is None else want)
        if want is None:
            assert page is not None and page.enclave is not None
            page.bits = (page.bits & ~RWX) | (page.bits & rwx) | PR
            page.mepoch = page.enclave.epoch

    def do_emodt(self, pa: int, idx: int | None, new: int) -> None:
        self.mem.write(SECINFO_PA, SECINFO(new << 8).to_bytes())
        got = self.encls(EnclsLeaf.EMODT, SECINFO_PA, pa)
        page = None if idx is None else self.resident.get(idx)
        want = FAULT if new not in (TCS_T, TRIM_T) else self.modifiable(page)
        if want is None:
            assert page is not None and page.enclave is not None
            if not (page.kind == REG_T or (page.kind == TCS_T and new == TRIM_T)) or \
                    not page.enclave.initialized:
                want = FAULT
        self.expect("EMODT", got, OK if want is None else want)
        if want is None:
            assert page is not None and page.enclave is not None
            page.kind = PageType(new)
            page.bits = MODIFIED
            page.mepoch = page.enclave.epoch

    def do_eaccept(self, enc: MEnclave, page: MPage, flags: int) -> Outcome:
        lp = min(enc.inside) if enc.inside else 0
        ctx = EnclaveContext(secs=enc.secs.idx, lp=lp)  # type: ignore[arg-type]
        got = self.run("EACCEPT", lambda: accept(self.cpu, ctx, SECINFO(flags), page.la))
        pt, f = flags >> 8, flags & STATE_BITS
        reg_ok = pt == REG_T and f & (PR | PENDING) and not f & MODIFIED
        mod_ok = pt in (TCS_T, TRIM_T) and f & MODIFIED and not f & (PENDING | PR)
        if page.blocked or not (reg_ok or mod_ok):
            self.expect("EACCEPT", got, FAULT)
            return got
        # SDM EACCEPT: PT, R, W, X, PENDING and MODIFIED must match (PR is not compared),
        # then the change must be tracked, then a new TCS must be a valid inactive one.
        compared = RWX | PENDING | MODIFIED
        if page.kind != pt or page.bits & compared != f & compared:
            allowed: set[Outcome] = {SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH}
        elif page.bits & (PR | MODIFIED) and not enc.tracked(page.mepoch):
            allowed = {SgxError.SGX_NOT_TRACKED}
        elif pt == TCS_T and not valid_new_tcs(page.content):
            allowed = {FAULT}
        else:
            allowed = {OK}
        self.expect("EACCEPT", got, allowed)
        if got == OK:
            page.bits &= ~(PENDING | MODIFIED | PR)
        return got

    # -- single-leaf rules: construction -------------------------------------------------

    @precondition(lambda self: len(self.enclaves) < 3)
    @rule(data=st.data())
    def ecreate(self, data: st.DataObject) -> None:
        free = self.free_idx()
        pa, idx = self.operand(data, free[0] if free else None)
        size = 0x3000 if self.rare(data, "bad size") else data.draw(
            st.sampled_from([0x10000, 0x8000]), label="size")
        self.do_ecreate(pa, idx, size)

    def pick_building(self, data: st.DataObject) -> MEnclave:
        """An uninitialised resident enclave, or now and then any resident one."""
        pool = self.building()
        if not pool or self.rare(data, "initialised enclave"):
            pool = self.resident_enclaves()
        return data.draw(st.sampled_from(pool), label="enclave")

    @precondition(lambda self: bool(self.building()))
    @rule(data=st.data())
    def eadd(self, data: st.DataObject) -> None:
        enc = self.pick_building(data)
        free = self.free_idx()
        pa, idx = self.operand(data, free[0] if free else None)
        las = enc.free_las()
        la = las[0] if las and not self.rare(data, "la outside") else enc.base + enc.size
        tcs = data.draw(st.integers(0, 4), label="tcs roll") == 4
        rwx = W if self.rare(data, "write-only") else data.draw(
            st.sampled_from([R | W, R, R | X, R | W | X, 0]), label="rwx")
        secs_pa = enc.secs_pa
        if self.rare(data, "PAGEINFO.SECS not a SECS", 16):
            non_secs = [i for i in range(EPC_PAGES)
                        if i not in self.resident or self.resident[i].kind != SECS_T]
            secs_pa = epc(data.draw(st.sampled_from(non_secs)))
        if tcs or self.rare(data, "REG page holding a TCS image", 4):
            content = TCS(ossa=0x1000, nssa=1, oentry=0x100).to_bytes()
        else:
            content = random.Random(data.draw(st.integers(0, 2**32))).randbytes(PAGE_SIZE)
        flags = ((TCS_T if tcs else REG_T) << 8) | rwx
        self.do_eadd(enc, pa, idx, la, flags, secs_pa, content)

    @precondition(lambda self: any(self.pages_of(e) for e in self.building()))
    @rule(data=st.data())
    def eextend(self, data: st.DataObject) -> None:
        enc = data.draw(st.sampled_from([e for e in self.building() if self.pages_of(e)]))
        page = data.draw(st.sampled_from(self.pages_of(enc)), label="page")
        assert page.idx is not None
        rcx = epc(page.idx) + data.draw(st.integers(0, 15), label="chunk") * 256
        if self.rare(data, "misaligned", 16):
            rcx += 0x40
        rbx = enc.secs_pa
        others = [e for e in self.resident_enclaves() if e is not enc]
        if others and self.rare(data, "other SECS", 16):
            rbx = others[0].secs_pa
        self.do_eextend(enc, page, rbx, rcx)

    @precondition(lambda self: bool(self.building()))
    @rule(data=st.data())
    def add_pages_batch(self, data: st.DataObject) -> None:
        """vsgx.cpu.add_pages: EADD + 16 EEXTENDs per page, committed up to a bad page."""
        enc = data.draw(st.sampled_from(self.building()), label="enclave")
        free, las = self.free_idx(), enc.free_las()
        n = min(data.draw(st.integers(1, 4), label="pages"), len(free), len(las))
        if n == 0:
            return
        idxs, las = free[:n], las[:n]
        if self.rare(data, "bad page in batch", 5):
            bad = data.draw(st.integers(0, n - 1), label="bad position")
            # a page already in use, or a repeat of an earlier page of the batch
            idxs[bad] = data.draw(st.sampled_from(sorted(self.resident) + idxs[:bad]))
        rwx = data.draw(st.sampled_from([R, R | W, R | X]), label="rwx")
        measure = data.draw(st.booleans(), label="measure")
        blob = random.Random(data.draw(st.integers(0, 2**32))).randbytes(n * PAGE_SIZE)
        self.do_add_pages(enc, idxs, las, rwx, measure, blob)

    @precondition(lambda self: bool(self.resident_enclaves()))
    @rule(data=st.data())
    def einit(self, data: st.DataObject) -> None:
        self.do_einit(self.pick_building(data), self.rare(data, "wrong ENCLAVEHASH"))

    @precondition(lambda self: bool(self.resident))
    @rule(data=st.data())
    def eremove(self, data: st.DataObject) -> None:
        self.do_eremove(*self.operand(data, data.draw(st.sampled_from(sorted(self.resident)))))

    @precondition(lambda self: len(self.enclaves) >= 2 and bool(self.resident_enclaves()))
    @rule(data=st.data())
    def destroy_enclave(self, data: st.DataObject) -> None:
        """Leave, EREMOVE every resident page of an enclave, then its SECS."""
        enc = data.draw(st.sampled_from(self.resident_enclaves()), label="enclave")
        for lp in sorted(enc.inside):
            self.leave_lp(lp)
        for page in self.pages_of(enc):
            assert page.idx is not None
            self.do_eremove(epc(page.idx), page.idx)
        assert enc.secs.idx is not None
        self.do_eremove(epc(enc.secs.idx), enc.secs.idx)
        assert enc not in self.enclaves

    # -- single-leaf rules: paging -------------------------------------------------------

    @precondition(lambda self: len(self.va_pages()) < 3)
    @rule(data=st.data())
    def epa(self, data: st.DataObject) -> None:
        free = self.free_idx()
        pa, idx = self.operand(data, free[-1] if free else None)
        self.do_epa(pa, idx, REG_T if self.rare(data, "RBX not PT_VA", 16) else VA_T)

    @precondition(lambda self: bool(self.resident))
    @rule(data=st.data())
    def eblock(self, data: st.DataObject) -> None:
        children = [i for i, p in self.resident.items() if p.kind in CHILD_TYPES]
        pool = children if children and not self.rare(data, "any page") else self.resident
        self.do_eblock(*self.operand(data, data.draw(st.sampled_from(sorted(pool)))))

    @precondition(lambda self: bool(self.resident_enclaves()))
    @rule(data=st.data())
    def etrack(self, data: st.DataObject) -> None:
        enc = data.draw(st.sampled_from(self.resident_enclaves()), label="enclave")
        self.do_etrack(*self.operand(data, enc.secs.idx))

    @precondition(lambda self: bool(self.va_pages()))
    @rule(data=st.data())
    def ewb(self, data: st.DataObject) -> None:
        ready = [p for p in self.resident.values()
                 if p.kind in CHILD_TYPES and p.blocked and p.enclave is not None
                 and p.enclave.tracked(p.bepoch)]
        pool = ready if ready and data.draw(st.booleans()) else list(self.resident.values())
        page = data.draw(st.sampled_from(sorted(pool, key=lambda p: p.idx or 0)), label="page")
        va = data.draw(st.sampled_from(self.va_pages()), label="va")
        assert va.idx is not None
        if va.slots and self.rare(data, "occupied slot"):
            slot_pa = epc(va.idx) + data.draw(st.sampled_from(sorted(va.slots)))
        elif self.rare(data, "slot outside a VA page", 16):
            slot_pa = epc(data.draw(st.integers(0, EPC_PAGES - 1))) + 8
        else:
            slot_pa = self.free_slot(data, va)
        self.do_ewb(page, slot_pa)

    @precondition(lambda self: bool(self.loadable()) and len(self.resident) < EPC_PAGES)
    @rule(data=st.data(), blocked=st.booleans())
    def eld(self, data: st.DataObject, blocked: bool) -> None:
        ev = data.draw(st.sampled_from(self.loadable()), label="eviction")
        self.do_eld(ev, data.draw(st.sampled_from(self.free_idx()), label="dest"), blocked)

    @precondition(lambda self: bool(self.evictions) and len(self.resident) < EPC_PAGES)
    @rule(data=st.data(), blocked=st.booleans())
    def eld_replay(self, data: st.DataObject, blocked: bool) -> None:
        """Load an eviction already loaded, overwritten, or orphaned: never succeeds."""
        stale = [ev for ev in self.evictions if not ev.live or (
            ev.page.kind in CHILD_TYPES and ev.page.enclave not in self.enclaves)]
        if not stale:
            return
        ev = data.draw(st.sampled_from(stale), label="stale eviction")
        owner = ev.page.enclave
        exact = ev.va.idx is not None and (ev.page.kind not in CHILD_TYPES
                                           or (owner in self.enclaves and owner.resident))
        self.do_eld(ev, data.draw(st.sampled_from(self.free_idx()), label="dest"), blocked,
                    want=MAC_FAIL if exact else {MAC_FAIL, FAULT}, what="replay")

    @precondition(lambda self: bool(self.loadable()) and len(self.resident) < EPC_PAGES)
    @rule(data=st.data(), blocked=st.booleans())
    def eld_wrong_slot(self, data: st.DataObject, blocked: bool) -> None:
        """Load a live eviction with the version slot of another eviction, or an empty one."""
        ev = data.draw(st.sampled_from(self.loadable()), label="eviction")
        others = [epc(va.idx) + off for va in self.va_pages()  # type: ignore[operator]
                  for off, other in va.slots.items() if other is not ev]
        if others and data.draw(st.booleans(), label="another eviction's slot"):
            slot_pa = data.draw(st.sampled_from(others), label="slot")
        else:
            slot_pa = self.free_slot(data, data.draw(st.sampled_from(self.va_pages())))
        self.do_eld(ev, data.draw(st.sampled_from(self.free_idx()), label="dest"), blocked,
                    slot_pa=slot_pa, want=MAC_FAIL, what="another version slot")

    @precondition(lambda self: len(self.resident_enclaves()) >= 2 and bool(self.loadable())
                  and len(self.resident) < EPC_PAGES)
    @rule(data=st.data(), blocked=st.booleans())
    def eld_other_enclave(self, data: st.DataObject, blocked: bool) -> None:
        """Load a live eviction of a child page into a different enclave."""
        evs = [ev for ev in self.loadable() if ev.page.kind in CHILD_TYPES]
        if not evs:
            return
        ev = data.draw(st.sampled_from(evs), label="eviction")
        other = data.draw(st.sampled_from([e for e in self.resident_enclaves()
                                           if e is not ev.page.enclave]), label="other")
        self.do_eld(ev, data.draw(st.sampled_from(self.free_idx()), label="dest"), blocked,
                    secs_pa=other.secs_pa, want=MAC_FAIL, what="into another enclave")

    @precondition(lambda self: bool(self.loadable()))
    @rule(data=st.data())
    def eld_busy_destination(self, data: st.DataObject) -> None:
        ev = data.draw(st.sampled_from(self.loadable()), label="eviction")
        dest = data.draw(st.sampled_from(sorted(self.resident)), label="busy dest")
        self.do_eld(ev, dest, False, want=FAULT, what="onto a valid EPC page")

    # -- single-leaf rules: SGX2 ---------------------------------------------------------

    @precondition(lambda self: bool(self.resident_enclaves()))
    @rule(data=st.data())
    def eaug(self, data: st.DataObject) -> None:
        pool = self.initialized()
        if not pool or self.rare(data, "uninitialised enclave"):
            pool = self.resident_enclaves()
        enc = data.draw(st.sampled_from(pool), label="enclave")
        free = self.free_idx()
        pa, idx = self.operand(data, free[0] if free else None)
        las = enc.free_las()
        la = las[-1] if las and not self.rare(data, "la outside") else enc.base - PAGE_SIZE
        self.do_eaug(enc, pa, idx, la)

    def pick_modifiable(self, data: st.DataObject) -> tuple[int, int | None]:
        """Mostly a REG page of an initialised enclave; sometimes any page."""
        good = sorted(p.idx for p in self.resident.values()  # type: ignore[type-var]
                      if p.kind in CHILD_TYPES and p.enclave is not None
                      and p.enclave.initialized)
        pool = good if good and not self.rare(data, "any page") else sorted(self.resident)
        return self.operand(data, data.draw(st.sampled_from(pool)) if pool else None)

    @precondition(lambda self: bool(self.resident))
    @rule(data=st.data())
    def emodpr(self, data: st.DataObject) -> None:
        pa, idx = self.pick_modifiable(data)
        rwx = W if self.rare(data, "write-only", 16) else data.draw(
            st.sampled_from([R, 0, R | X, R | W]), label="rwx")
        self.do_emodpr(pa, idx, rwx)

    @precondition(lambda self: bool(self.resident))
    @rule(data=st.data())
    def emodt(self, data: st.DataObject) -> None:
        pa, idx = self.pick_modifiable(data)
        new = REG_T if self.rare(data, "to PT_REG", 16) else data.draw(
            st.sampled_from([TRIM_T, TCS_T]), label="new type")
        self.do_emodt(pa, idx, new)

    @precondition(lambda self: any(self.pages_of(e) for e in self.initialized()))
    @rule(data=st.data())
    def eaccept(self, data: st.DataObject) -> None:
        enc = data.draw(st.sampled_from([e for e in self.initialized() if self.pages_of(e)]))
        pages = self.pages_of(enc)
        changing = [p for p in pages if p.bits & (PENDING | MODIFIED | PR)]
        page = data.draw(st.sampled_from(changing or pages), label="page")
        if self.rare(data, "other SECINFO", 5):
            flags = data.draw(st.sampled_from([REG_T, TCS_T, TRIM_T])) << 8 | data.draw(
                st.sampled_from([R | W | PENDING, R | PR, R | X | PR, MODIFIED, PENDING, 0]))
        else:
            flags = (page.kind << 8) | page.bits
            if page.kind == REG_T and self.rare(data, "toggle PR (not compared)", 3):
                flags ^= PR
        self.do_eaccept(enc, page, flags)

    @precondition(lambda self: bool(self.initialized()))
    @rule(data=st.data())
    def getkey_and_report(self, data: st.DataObject) -> None:
        enc = data.draw(st.sampled_from(self.initialized()), label="enclave")
        ctx = EnclaveContext(secs=enc.secs.idx)  # type: ignore[arg-type]
        name = 9 if self.rare(data, "bad keyname") else data.draw(st.sampled_from([4, 3]))
        request = KEYREQUEST(keyname=name, keypolicy=1)
        got = self.run("EGETKEY", lambda: getkey(self.cpu, ctx, request)[0])
        self.expect("EGETKEY", got, SgxError.SGX_INVALID_KEYNAME if name > 4 else OK)
        if got == OK:
            assert getkey(self.cpu, ctx, request) == getkey(self.cpu, ctx, request)
        target = TARGETINFO(measurement=enc.mrenclave(), attributes=enc.state.secs.attributes)
        try:
            rep = report(self.cpu, ctx, target, bytes(range(64)))
        except Exception as exc:
            raise AssertionError(f"EREPORT raised {exc!r}") from exc
        assert rep.body.mrenclave == enc.mrenclave()
        assert rep.body.mrsigner == signer_hash()

    # -- threads -------------------------------------------------------------------------

    def enter_lp(self, data: st.DataObject, enc: MEnclave) -> None:
        """A free logical processor enters ``enc``, as the execution engine records it."""
        lp = data.draw(st.sampled_from([i for i in range(LPS) if i not in self.lp_in]))
        enc.state.inside.add(lp)
        enc.inside.add(lp)
        self.lp_in[lp] = enc

    @precondition(lambda self: len(self.lp_in) < LPS and bool(self.initialized()))
    @rule(data=st.data())
    def enter(self, data: st.DataObject) -> None:
        self.enter_lp(data, data.draw(st.sampled_from(self.initialized()), label="enclave"))

    @precondition(lambda self: bool(self.lp_in))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        self.leave_lp(data.draw(st.sampled_from(sorted(self.lp_in)), label="lp"))

    # -- macro rules: valid sequences ----------------------------------------------------

    @precondition(lambda self: len(self.enclaves) < 3 and EPC_PAGES - len(self.resident) >= 8)
    @rule(data=st.data())
    def build_enclave(self, data: st.DataObject) -> None:
        """ECREATE, EADD a TCS, add_pages, EADD + some EEXTENDs, and usually EINIT."""
        idx = self.free_idx()[0]
        enc = self.do_ecreate(epc(idx), idx, data.draw(st.sampled_from([0x10000, 0x8000])))
        assert enc is not None
        idx, la = self.free_idx()[0], enc.free_las()[0]
        tcs = TCS(ossa=0x1000, nssa=1, oentry=0x100).to_bytes()
        self.do_eadd(enc, epc(idx), idx, la, (TCS_T << 8) | R | W, enc.secs_pa, tcs)
        n = data.draw(st.integers(1, 3), label="pages")
        rnd = random.Random(data.draw(st.integers(0, 2**32)))
        self.do_add_pages(enc, self.free_idx()[:n], enc.free_las()[:n],
                          data.draw(st.sampled_from([R | X, R | W])), data.draw(st.booleans()),
                          rnd.randbytes(n * PAGE_SIZE))
        idx, la = self.free_idx()[0], enc.free_las()[0]
        page = self.do_eadd(enc, epc(idx), idx, la, (REG_T << 8) | R | W, enc.secs_pa,
                            rnd.randbytes(PAGE_SIZE))
        assert page is not None
        for chunk in data.draw(st.lists(st.integers(0, 15), max_size=4), label="chunks"):
            self.do_eextend(enc, page, enc.secs_pa, epc(idx) + chunk * 256)
        if not self.rare(data, "leave uninitialised", 4):
            self.do_einit(enc, False)

    def ensure_slot(self, data: st.DataObject, avoid: MPage) -> int | None:
        vas = [va for va in self.va_pages() if va is not avoid]
        if not vas:
            free = self.free_idx()
            if not free:
                return None
            va = self.do_epa(epc(free[0]), free[0], VA_T)
            assert va is not None
            vas = [va]
        return self.free_slot(data, data.draw(st.sampled_from(vas), label="va"))

    def track(self, data: st.DataObject, enc: MEnclave) -> None:
        """ETRACK, with threads entering before it and leaving before or after as drawn."""
        if enc.initialized and len(self.lp_in) < LPS and self.rare(data, "enter", 3):
            self.enter_lp(data, enc)
        if enc.inside and data.draw(st.booleans(), label="leave before ETRACK"):
            for lp in sorted(enc.inside):
                self.leave_lp(lp)
        assert enc.secs.idx is not None
        self.do_etrack(epc(enc.secs.idx), enc.secs.idx)
        if enc.inside and data.draw(st.booleans(), label="leave after ETRACK"):
            for lp in sorted(enc.inside):
                self.leave_lp(lp)

    @precondition(lambda self: any(p.kind in CHILD_TYPES for p in self.resident.values()))
    @rule(data=st.data())
    def evict_page(self, data: st.DataObject) -> None:
        """EBLOCK, ETRACK, EWB of one enclave page (EPA first if there is no VA page)."""
        page = data.draw(st.sampled_from(sorted(
            (p for p in self.resident.values() if p.kind in CHILD_TYPES),
            key=lambda p: p.idx or 0)), label="page")
        enc = page.enclave
        assert page.idx is not None and enc is not None
        if not page.blocked:
            self.do_eblock(epc(page.idx), page.idx)
        self.track(data, enc)
        slot_pa = self.ensure_slot(data, page)
        if slot_pa is not None:
            self.do_ewb(page, slot_pa)

    @precondition(lambda self: bool(self.va_pages()) and len(self.resident) < EPC_PAGES)
    @rule(data=st.data())
    def evict_va(self, data: st.DataObject) -> None:
        """EWB a VA page (holding versions or not) into a slot of another VA page."""
        va = data.draw(st.sampled_from(self.va_pages()), label="evicted VA page")
        slot_pa = self.ensure_slot(data, va)
        if slot_pa is not None:
            assert self.do_ewb(va, slot_pa) is not None

    @precondition(lambda self: bool(self.resident_enclaves())
                  and len(self.resident) < EPC_PAGES)
    @rule(data=st.data())
    def evict_enclave(self, data: st.DataObject) -> None:
        """Evict every page of an enclave, then its SECS."""
        enc = data.draw(st.sampled_from(self.resident_enclaves()), label="enclave")
        for lp in sorted(enc.inside):
            self.leave_lp(lp)
        pages = self.pages_of(enc)
        for page in pages:
            if not page.blocked:
                assert page.idx is not None
                self.do_eblock(epc(page.idx), page.idx)
        self.track(data, enc)
        for lp in sorted(enc.inside):  # the OS's IPIs: everyone tracked has left
            self.leave_lp(lp)
        for page in pages:
            slot_pa = self.ensure_slot(data, page)
            if slot_pa is None:
                return
            assert self.do_ewb(page, slot_pa) is not None
        slot_pa = self.ensure_slot(data, enc.secs)
        if slot_pa is not None:
            assert self.do_ewb(enc.secs, slot_pa) is not None

    def bring_back(self, ev: Eviction, depth: int = 0) -> bool:
        """Load what ``ev`` depends on: its VA page and (for a child page) its SECS, each
        possibly evicted in turn. True when ``ev`` is then loadable."""
        if not ev.live or depth > 6:
            return False
        for dep in (ev.va, ev.page.enclave.secs if ev.page.kind in CHILD_TYPES
                    and ev.page.enclave else None):
            if dep is None or dep.idx is not None:
                continue
            if dep.evicted is None or not self.bring_back(dep.evicted, depth + 1):
                return False
            free = self.free_idx()
            if not free:
                return False
            self.do_eld(dep.evicted, free[0], False, what="dependency")
        return ev in self.loadable()

    @precondition(lambda self: any(ev.live for ev in self.evictions)
                  and len(self.resident) < EPC_PAGES - 3)
    @rule(data=st.data(), blocked=st.booleans())
    def reload(self, data: st.DataObject, blocked: bool) -> None:
        """ELDU/ELDB a live eviction after reloading its VA page and SECS if they are out."""
        live = [ev for ev in self.evictions if ev.live]
        ev = data.draw(st.sampled_from(live), label="eviction")
        if self.bring_back(ev) and self.free_idx():
            self.do_eld(ev, data.draw(st.sampled_from(self.free_idx()), label="dest"), blocked)

    @precondition(lambda self: bool(self.initialized()))
    @rule(data=st.data())
    def sgx2_cycle(self, data: st.DataObject) -> None:
        """EAUG + EACCEPT, then EMODPR or EMODT, ETRACK, EACCEPT (and EREMOVE a trimmed page)."""
        enc = data.draw(st.sampled_from(self.initialized()), label="enclave")
        targets = [p for p in self.pages_of(enc)
                   if p.kind == REG_T and not p.blocked and not p.bits & (PENDING | MODIFIED)]
        free, las = self.free_idx(), enc.free_las()
        if (not targets or data.draw(st.booleans(), label="EAUG")) and free and las:
            page = self.do_eaug(enc, epc(free[0]), free[0], las[0])
            assert page is not None
            self.do_eaccept(enc, page, (REG_T << 8) | R | W | PENDING)
            targets.append(page)
        if not targets:
            return
        page = data.draw(st.sampled_from(targets), label="page")
        assert page.idx is not None
        if data.draw(st.booleans(), label="EMODPR"):
            rwx = data.draw(st.sampled_from([R, 0, R | X]), label="rwx")
            self.do_emodpr(epc(page.idx), page.idx, rwx)
        else:
            new = data.draw(st.sampled_from([TRIM_T, TCS_T]), label="new type")
            self.do_emodt(epc(page.idx), page.idx, new)
        if data.draw(st.booleans(), label="accept before ETRACK"):
            self.do_eaccept(enc, page, (page.kind << 8) | page.bits)
        self.track(data, enc)
        got = self.do_eaccept(enc, page, (page.kind << 8) | page.bits)
        if got == OK and page.kind == TRIM_T and data.draw(st.booleans(), label="remove"):
            # An accepted TRIM page may be removed while threads are inside (SDM EREMOVE).
            if len(self.lp_in) < LPS and data.draw(st.booleans(), label="enter first"):
                self.enter_lp(data, enc)
            assert page.idx is not None
            self.do_eremove(epc(page.idx), page.idx)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def epcm_matches_model(self) -> None:
        e = self.cpu.epcm
        valid = [bool(e.flags[i] & epcm_bits.VALID) for i in range(EPC_PAGES)]
        assert e.valid_count == sum(valid), "valid_count disagrees with the EPCM arrays"
        secs_pages = {i for i in range(EPC_PAGES) if valid[i] and e.pt[i] == SECS_T}
        assert set(self.cpu.enclaves) == secs_pages, "cpu.enclaves disagrees with PT_SECS pages"
        children: dict[int, int] = dict.fromkeys(secs_pages, 0)
        for i in range(EPC_PAGES):
            page = self.resident.get(i)
            assert valid[i] == (page is not None), f"EPC page {i}: VALID {valid[i]}, model {page}"
            if page is None:
                continue
            assert e.pt[i] == page.kind, f"EPC page {i}: type {e.pt[i]} != model {page.kind!r}"
            bits = int(e.flags[i])
            assert bits & STATE_BITS == page.bits, f"EPC page {i}: bits {bits:#x} != {page.bits:#x}"
            assert bool(bits & epcm_bits.BLOCKED) == page.blocked, f"EPC page {i}: BLOCKED"
            if page.kind in CHILD_TYPES:
                owner = int(e.owner[i])
                assert owner in secs_pages, f"EPC page {i} is owned by {owner}, not a live SECS"
                assert page.enclave is not None and owner == page.enclave.secs.idx
                assert int(e.linaddr[i]) == page.la
                assert e.by_address.get((owner, page.la)) == i, f"by_address misses page {i}"
                children[owner] += 1
        for (owner, la), i in e.by_address.items():
            assert valid[i] and e.pt[i] in CHILD_TYPES, f"by_address entry for invalid page {i}"
            assert (int(e.owner[i]), int(e.linaddr[i])) == (owner, la), "stale by_address entry"
        for idx, count in children.items():
            assert self.cpu.enclaves[idx].children == count, f"SECS {idx}: children count"
        owners: dict[int, MEnclave] = {}
        for enc in self.enclaves:
            if not enc.resident:
                assert any(s is enc.state for s in self.cpu.evicted_secs.values())
                continue
            state = self.cpu.enclaves[enc.secs.idx]  # type: ignore[index]
            assert state is enc.state
            assert state.initialized == enc.initialized
            assert state.inside == enc.inside and state.tracking == enc.tracking
            assert children[enc.secs.idx] == len(self.pages_of(enc))  # type: ignore[index]
            for page in self.pages_of(enc):
                assert page.idx not in owners, "an EPC page belongs to two enclaves"
                owners[page.idx] = enc  # type: ignore[index]

    @invariant()
    def version_slots_match_model(self) -> None:
        """Occupied slots hold a non-zero version; loaded or never-used slots read 0."""
        for va in self.va_pages():
            assert va.idx is not None
            raw = bytes(self.cpu.epc.page(va.idx))
            used = {off for off in range(0, PAGE_SIZE, 8) if any(raw[off : off + 8])}
            assert used == set(va.slots), f"VA page {va.idx}: slots {sorted(used)} != model"


def valid_new_tcs(raw: bytes) -> bool:
    """What EACCEPT requires of a page becoming a TCS (SDM EACCEPT #GP conditions): reserved
    bytes zero, FLAGS only AEXNOTIFY, STATE and AEP zero, CSSA < NSSA."""
    state, flags, _ossa, cssa, nssa = struct.unpack_from("<QQQII", raw)
    aep = struct.unpack_from("<Q", raw, 40)[0]
    return (not any(raw[72:]) and not flags & ~0x2 and state == 0 and aep == 0
            and cssa < nssa)


def check_flags(what: str, status: LeafStatus) -> None:
    """ZF iff an error, except the CF-style codes: CF = 1, ZF = 0."""
    if status.code in CF_CODES:
        assert status.cf and not status.zf, f"{what}: {status.code!r} needs CF=1, ZF=0"
    else:
        assert status.zf == (status.code != OK) and not status.cf, f"{what}: flags of {status}"
    rflags = status.apply_rflags(0xFFFF_FFFF)
    assert bool(rflags & 0x40) == status.zf and bool(rflags & 0x1) == status.cf
    assert not rflags & (0x4 | 0x10 | 0x80 | 0x800), "PF/AF/SF/OF must be cleared"


SgxStateMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSgxStateMachine = SgxStateMachine.TestCase


# -- bugs the model found, demonstrated in isolation -----------------------------------------

class _Bench:
    """A bare platform with one initialised enclave (SECS at EPC page 0, ELRANGE 64 KiB)."""

    def __init__(self) -> None:
        self.mem = SparseMemory()
        self.mem.map(0, 0x40000)
        self.cpu = SgxProcessor(Epc([EpcSection(EPC_BASE, EPC_PAGES * PAGE_SIZE)]), self.mem,
                                platform=PlatformSecrets.from_seed(b"bugs"),
                                boot=BootSecrets.from_seed(b"bugs", 0))
        msrs = self.cpu.lps[0].msrs
        msrs.wrmsr(0x3A, 1 | 1 << 17 | 1 << 18)
        for i in range(4):
            msrs.wrmsr(0x8C + i, int.from_bytes(signer_hash()[8 * i : 8 * i + 8], "little"))
        self.base = 0x100000
        self.mem.write(SRC_PA, SECS(size=0x10000, baseaddr=self.base, ssaframesize=1,
                                    attributes=ATTRIBUTES(MODE64BIT | DEBUG, 3)).to_bytes())
        self.mem.write(SECINFO_PA, SECINFO.of(SECS_T).to_bytes())
        self.leaf(EnclsLeaf.ECREATE, PAGEINFO_PA, epc(0), pageinfo=PAGEINFO(0, SRC_PA,
                                                                             SECINFO_PA, 0))
        digest = hashlib.sha256(ecreate_record(1, 0x10000)).digest()
        self.mem.write(SIGSTRUCT_PA, signed_sigstruct(digest).to_bytes())
        self.leaf(EnclsLeaf.EINIT, SIGSTRUCT_PA, epc(0), TOKEN_PA)
        self.ctx = EnclaveContext(secs=0)

    def leaf(self, leaf: EnclsLeaf, rbx: int = 0, rcx: int = 0, rdx: int = 0, *,
             pageinfo: PAGEINFO | None = None, secinfo: int | None = None) -> None:
        if pageinfo is not None:
            self.mem.write(PAGEINFO_PA, pageinfo.to_bytes())
        if secinfo is not None:
            self.mem.write(SECINFO_PA, SECINFO(secinfo).to_bytes())
        status = self.cpu.encls(leaf, rbx, rcx, rdx).status
        assert status.ok, f"{leaf.name}: {status}"

    def eaug(self, idx: int, la: int) -> None:
        self.leaf(EnclsLeaf.EAUG, PAGEINFO_PA, epc(idx), pageinfo=PAGEINFO(la, 0, 0, epc(0)))

    def accept(self, la: int, flags: int) -> LeafStatus:
        return accept(self.cpu, self.ctx, SECINFO(flags), la)


def test_eaccept_after_reload_ignores_stale_epoch() -> None:
    b = _Bench()
    la_a, la_b = b.base, b.base + PAGE_SIZE
    b.leaf(EnclsLeaf.EPA, VA_T, epc(1))
    # Page A: EAUG, accept, restrict to R, then evict it properly (EBLOCK, ETRACK, EWB).
    b.eaug(2, la_a)
    assert b.accept(la_a, (REG_T << 8) | R | W | PENDING).ok
    b.leaf(EnclsLeaf.EMODPR, SECINFO_PA, epc(2), secinfo=(REG_T << 8) | R)
    b.leaf(EnclsLeaf.EBLOCK, 0, epc(2))
    b.leaf(EnclsLeaf.ETRACK, 0, epc(0))  # the restriction of A is now tracked
    b.leaf(EnclsLeaf.EWB, PAGEINFO_PA, epc(2), epc(1), pageinfo=PAGEINFO(0, 0x20000, 0x21000))
    # Page B uses EPC page 3 for an EMODPR in the current epoch, then is removed.
    b.eaug(3, la_b)
    assert b.accept(la_b, (REG_T << 8) | R | W | PENDING).ok
    b.leaf(EnclsLeaf.EMODPR, SECINFO_PA, epc(3), secinfo=(REG_T << 8) | R)
    b.leaf(EnclsLeaf.EREMOVE, 0, epc(3))
    # A comes back in EPC page 3. Its restriction was tracked before EWB; no ETRACK is pending.
    b.leaf(EnclsLeaf.ELDU, PAGEINFO_PA, epc(3), epc(1),
           pageinfo=PAGEINFO(la_a, 0x20000, 0x21000, epc(0)))
    assert b.cpu.epcm.entry(3).pr
    # Tracked, and no ETRACK pending: EACCEPT must succeed (as it does when A is loaded into
    # an EPC page that never held an EMODPR'd page).
    assert b.accept(la_a, (REG_T << 8) | R | PR) == LeafStatus()


def test_by_address_survives_duplicate_linear_address() -> None:
    b = _Bench()
    b.eaug(1, b.base)
    b.eaug(2, b.base)  # the SDM does not forbid a second page at the same ENCLAVEADDRESS
    b.leaf(EnclsLeaf.EREMOVE, 0, epc(2))
    assert b.cpu.epcm.valid(1)
    assert b.cpu.epcm.by_address.get((0, b.base)) == 1
    assert b.accept(b.base, (REG_T << 8) | R | W | PENDING).ok
