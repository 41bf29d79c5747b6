"""The SGX-capable processor package: EPC, EPCM, platform secrets, logical processors, and the
ENCLS/ENCLU dispatch (SDM Vol. 3D ch. 36-41).

State that silicon keeps in the reserved part of a SECS page (EID, the running measurement, the
tracking epoch, the number of threads inside) lives in :class:`EnclaveState`, keyed by the SECS
page's EPC index. All leaves run under one lock: leaves on silicon are atomic with respect to the
pages they touch, and serialising them means the concurrency-conflict outcomes
(SGX_EPC_PAGE_CONFLICT, SGX_ENTRYEPOCH_LOCKED) can never arise here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from vsgx.arch import (
    PAGE_SIZE,
    SECS,
    FeatureControl,
    PageType,
    Struct,
    StructError,
)
from vsgx.cpu import epcm as m
from vsgx.cpu.epc import Epc
from vsgx.cpu.epcm import Epcm
from vsgx.cpu.fault import SgxFault, gp, pf, ud
from vsgx.cpu.features import SgxFeatures
from vsgx.cpu.memory import Memory
from vsgx.cpu.msr import SgxMsrs
from vsgx.cpu.status import LeafStatus
from vsgx.crypto import BootSecrets, EnclaveIdentity, MeasurementBuilder, PlatformSecrets


@dataclass(eq=False)
class EnclaveState:
    """Micro-architectural state of one enclave (what the SDM keeps in the SECS's reserved area).

    ``secs`` caches the architectural SECS fields; ``inside`` holds the logical processors
    executing in the enclave, ``tracking`` those that were inside at the last ETRACK and have
    not left since; ``epoch`` counts ETRACKs.
    """

    eid: int
    secs: SECS
    builder: MeasurementBuilder
    initialized: bool = False
    children: int = 0
    padding: bytes = bytes(352)
    isvfamilyid: bytes = bytes(16)
    isvextprodid: bytes = bytes(16)
    inside: set[int] = field(default_factory=set)
    tracking: set[int] = field(default_factory=set)
    epoch: int = 1

    @property
    def base(self) -> int:
        return self.secs.baseaddr

    @property
    def size(self) -> int:
        return self.secs.size

    def in_elrange(self, la: int, length: int = 1) -> bool:
        return self.base <= la and la + length <= self.base + self.size

    def identity(self) -> EnclaveIdentity:
        s = self.secs
        return EnclaveIdentity(
            attributes=s.attributes, miscselect=s.miscselect, mrenclave=s.mrenclave,
            mrsigner=s.mrsigner, isvprodid=s.isvprodid, isvsvn=s.isvsvn, configid=s.configid,
            configsvn=s.configsvn, isvfamilyid=self.isvfamilyid, isvextprodid=self.isvextprodid,
            padding=self.padding,
        )


@dataclass
class LogicalProcessor:
    """One logical processor: its MSRs and, in enclave mode, the enclave and TCS it runs on."""

    index: int
    msrs: SgxMsrs
    enclave: int | None = None
    tcs: int | None = None


_S = TypeVar("_S", bound=Struct)
_PT_SECS = int(PageType.PT_SECS)

SECS_EID_OFFSET = 0xF00
"""Where vsgx keeps the enclave's EID inside its SECS page. The SDM leaves the SECS's reserved
area micro-architectural; the EID travels inside the (encrypted) page when EWB evicts a SECS,
which is how ELDU finds the enclave again."""

Translate = Callable[[int], int | None]
"""Enclave-mode address translation: linear address -> physical address (None: not mapped)."""


@dataclass
class EnclaveContext:
    """Who executes an ENCLU leaf: a logical processor in enclave mode on a TCS of an enclave.

    ``translate`` models the page tables. When None, the processor uses the "honest OS"
    mapping the EPCM implies (each enclave page at its ENCLAVEADDRESS), as the ``vsgx isa``
    runner does.
    """

    secs: int
    tcs: int | None = None
    lp: int = 0
    translate: Translate | None = None


@dataclass(frozen=True, slots=True)
class LeafResult:
    """A leaf's outcome: status (RAX, RFLAGS) and, for EDBGRD, the value left in RBX."""

    status: LeafStatus
    rbx: int | None = None


class SgxProcessor:
    """The SGX processor package shared by all logical processors of one (virtual) machine."""

    def __init__(self, epc: Epc, memory: Memory, *, features: SgxFeatures | None = None,
                 platform: PlatformSecrets, boot: BootSecrets, lps: int = 1,
                 msrs: Sequence[SgxMsrs] | None = None) -> None:
        """``msrs`` lets a machine own its vCPUs' MSRs (one logical processor each); without
        it the processor has ``lps`` logical processors with fresh MSRs."""
        self.features = features or SgxFeatures()
        self.epc = epc
        self.epcm = Epcm(epc.pages)
        self.memory = memory
        self.platform = platform
        self.boot = boot
        if msrs is None:
            msrs = [SgxMsrs(self.features) for _ in range(lps)]
        self.lps = [LogicalProcessor(i, m) for i, m in enumerate(msrs)]
        self.enclaves: dict[int, EnclaveState] = {}
        self.evicted_secs: dict[int, EnclaveState] = {}
        self.lock = threading.RLock()
        self._next_eid = 1
        self._next_version = 1

    # -- counters ----------------------------------------------------------------------------

    def new_eid(self) -> int:
        eid = self._next_eid
        self._next_eid += 1
        return eid

    def new_version(self) -> int:
        """A fresh non-zero 64-bit version for EWB (SDM: a unique nonce, TMP_VER)."""
        v = self._next_version
        self._next_version += 1
        return v

    # -- power events ------------------------------------------------------------------------

    def power_cycle(self, boot: BootSecrets) -> None:
        """Lose the EPC as a reset or power cycle does: every EPCM entry becomes invalid and
        the per-boot keys change (SDM 38.20 "Intel SGX and power management")."""
        with self.lock:
            self.epcm = Epcm(self.epc.pages)
            for section in self.epc.sections:
                section.discard()
            self.enclaves.clear()
            self.evicted_secs.clear()
            self.boot = boot
            for lp in self.lps:
                lp.enclave = lp.tcs = None

    # -- threads in enclave mode -------------------------------------------------------------

    def thread_entered(self, secs: int, lp: int) -> None:
        """Logical processor ``lp`` is now executing in the enclave (EENTER/ERESUME)."""
        with self.lock:
            self.enclaves[secs].inside.add(lp)

    def thread_exited(self, secs: int, lp: int) -> None:
        """``lp`` left the enclave (EEXIT or AEX); an ETRACK waiting on it may complete."""
        with self.lock:
            state = self.enclaves[secs]
            state.inside.discard(lp)
            state.tracking.discard(lp)

    # -- operand helpers ---------------------------------------------------------------------

    def read(self, addr: int, size: int, align: int = 1) -> bytes:
        """Read an ordinary-memory operand; misalignment is #GP(0)."""
        if addr % align:
            raise gp(f"operand at {addr:#x} is not {align}-byte aligned")
        if self.epc.index_of(addr) is not None:
            # Non-enclave access to EPC: abort-page semantics, reads return all ones.
            return b"\xff" * size
        return self.memory.read(addr, size)

    def write(self, addr: int, data: bytes, align: int = 1) -> None:
        """Write an ordinary-memory operand; misalignment is #GP(0)."""
        if addr % align:
            raise gp(f"operand at {addr:#x} is not {align}-byte aligned")
        if self.epc.index_of(addr) is None:  # abort-page semantics: EPC writes are dropped
            self.memory.write(addr, data)

    def read_struct(self, cls: type[_S], addr: int) -> _S:
        """Read an architectural structure; set reserved bits are #GP(0)."""
        try:
            return cls.from_bytes(self.read(addr, cls.SIZE, cls.ALIGN))
        except StructError as exc:
            raise gp(str(exc)) from None

    def epc_index(self, pa: int, *, align: int = PAGE_SIZE) -> int:
        """EPC page index for an EPC operand: #GP if misaligned, #PF if not in the EPC."""
        if pa % align:
            raise gp(f"EPC operand {pa:#x} is not {align}-byte aligned")
        idx = self.epc.index_of(pa)
        if idx is None:
            raise pf(pa, "operand is not an EPC page")
        return idx

    def epc_pages(self, indices: npt.NDArray[np.int64]) -> list[memoryview]:
        """Writable views of the EPC pages ``indices`` (pages that exist), what
        :meth:`Epc.page` returns for each, at once."""
        return self.epc.pages_at(indices)

    def secs_of(self, idx: int, addr: int) -> EnclaveState:
        """The enclave whose SECS is EPC page ``idx``; #PF unless it is a valid PT_SECS."""
        e = self.epcm
        if not e.valid(idx) or e.page_type(idx) != _PT_SECS:
            raise pf(addr, "not a valid SECS page")
        return self.enclaves[idx]

    def store_secs(self, idx: int, state: EnclaveState) -> None:
        """Write the SECS page: its architectural fields, and the EID in the reserved area."""
        page = self.epc.page(idx)
        page[:] = state.secs.to_bytes()
        page[SECS_EID_OFFSET : SECS_EID_OFFSET + 8] = state.eid.to_bytes(8, "little")

    # -- enclave-mode memory -----------------------------------------------------------------

    def translate(self, ctx: EnclaveContext, la: int) -> int | None:
        if ctx.translate is not None:
            return ctx.translate(la)
        idx = self.epcm.by_address.get((ctx.secs, la & ~(PAGE_SIZE - 1)))
        return None if idx is None else self.epc.address_of(idx) + (la & (PAGE_SIZE - 1))

    def walk(self, ctx: EnclaveContext, la: int, *, write: bool = False) -> int | None:
        """The page walk before any EPCM check: the EPC index behind ``la`` (None when it
        maps outside the EPC); a linear address the page tables do not map is an ordinary
        #PF (no PFEC.SGX), which the OS may serve."""
        pa = self.translate(ctx, la)
        if pa is None:
            raise pf(la, "not mapped", write=write, epcm=False)
        return self.epc.index_of(pa)

    def enclave_page(self, ctx: EnclaveContext, la: int, *, write: bool = False,
                     execute: bool = False, allow_pending: bool = False) -> int:
        """EPC index behind enclave linear address ``la`` after the EPCM checks an enclave
        access makes (SDM 38.5.2 "Access control"): #PF with PFEC.SGX when the entry is
        invalid, blocked, of another enclave or address, not PT_REG, pending, modified, or
        lacks the permission."""
        enclave = self.enclaves[ctx.secs]
        if not enclave.in_elrange(la):
            raise gp(f"address {la:#x} is outside ELRANGE")
        idx = self.walk(ctx, la, write=write)
        page_la = la & ~(PAGE_SIZE - 1)
        if idx is None:
            raise pf(la, "ELRANGE address maps outside the EPC", write=write)
        e = self.epcm
        bits = e.bits(idx)
        if (not bits & m.VALID or bits & m.BLOCKED or int(e.owner[idx]) != ctx.secs
                or int(e.linaddr[idx]) != page_la or e.page_type(idx) != PageType.PT_REG):
            raise pf(la, "EPCM entry does not belong to this enclave address", write=write)
        if (bits & m.PENDING and not allow_pending) or bits & m.MODIFIED:
            raise pf(la, "EPCM entry is pending or modified", write=write)
        need = (m.W if write else m.R) | (m.X if execute else 0)
        if bits & need != need:
            raise pf(la, "EPCM permissions deny the access", write=write)
        return idx

    def enclave_read(self, ctx: EnclaveContext, la: int, size: int, align: int) -> bytes:
        """Read ``size`` bytes (within one page) of enclave memory as an ENCLU operand."""
        if la % align:
            raise gp(f"operand at {la:#x} is not {align}-byte aligned")
        idx = self.enclave_page(ctx, la)
        off = la & (PAGE_SIZE - 1)
        return bytes(self.epc.page(idx)[off : off + size])

    def enclave_write(self, ctx: EnclaveContext, la: int, data: bytes, align: int) -> None:
        if la % align:
            raise gp(f"operand at {la:#x} is not {align}-byte aligned")
        idx = self.enclave_page(ctx, la, write=True)
        off = la & (PAGE_SIZE - 1)
        self.epc.page(idx)[off : off + len(data)] = data

    # -- dispatch ----------------------------------------------------------------------------

    def _check_enabled(self, lp: int) -> LogicalProcessor:
        proc = self.lps[lp]
        if not proc.msrs.sgx_enabled:
            raise ud("SGX is not enabled in IA32_FEATURE_CONTROL "
                     f"({int(FeatureControl.SGX | FeatureControl.LOCKED):#x} not set)")
        return proc

    def encls(self, leaf: int, rbx: int = 0, rcx: int = 0, rdx: int = 0, *,
              lp: int = 0) -> LeafResult:
        """Execute ENCLS[leaf] at CPL 0 with the given registers (SDM 38.x / 40.x)."""
        from vsgx.cpu.encls import ENCLS_LEAVES

        with self.lock:
            proc = self._check_enabled(lp)
            if proc.enclave is not None:
                raise ud("ENCLS in enclave mode")
            handler = ENCLS_LEAVES.get(leaf)  # IntEnum keys: a plain int finds its leaf
            if handler is None:
                raise gp(f"ENCLS leaf {leaf:#x} is not supported")
            return handler(self, proc, rbx, rcx, rdx)

    def encls_eextend_page(self, rbx: int, page_pa: int, *, lp: int = 0) -> LeafResult:
        """ENCLS[EEXTEND] sixteen times over the page at ``page_pa`` (see
        :func:`vsgx.cpu.encls_build.eextend_page`), with ENCLS's own checks first."""
        from vsgx.cpu.encls_build import eextend_page

        with self.lock:
            proc = self._check_enabled(lp)
            if proc.enclave is not None:
                raise ud("ENCLS in enclave mode")
            return eextend_page(self, proc, rbx, page_pa)

    def enclu(self, leaf: int, ctx: EnclaveContext, rbx: int = 0, rcx: int = 0,
              rdx: int = 0) -> LeafResult:
        """Execute an enclave-mode ENCLU[leaf] on behalf of ``ctx`` (SDM 38.x / 41.x)."""
        from vsgx.cpu.enclu import ENCLU_LEAVES

        with self.lock:
            self.check_enclave_mode(ctx)
            handler = ENCLU_LEAVES.get(leaf)
            if handler is None:
                raise gp(f"ENCLU leaf {leaf:#x} is not supported in enclave mode")
            return handler(self, ctx, rbx, rcx, rdx)

    def check_enclave_mode(self, ctx: EnclaveContext) -> EnclaveState:
        """The checks every enclave-mode ENCLU leaf makes first: SGX enabled (#UD) and the
        logical processor inside an initialised enclave (#GP)."""
        self._check_enabled(ctx.lp)
        state = self.enclaves.get(ctx.secs)
        if state is None or not state.initialized:
            raise gp(f"EPC page {ctx.secs} is not the SECS of an initialised enclave")
        return state

    def require_sgx2(self, what: str) -> None:
        if not self.features.sgx2:
            raise gp(f"{what} needs SGX2 (CPUID.(EAX=12H,ECX=0):EAX[1])")


def cpusvn_beyond(requested: bytes, current: bytes) -> bool:
    """A CPUSVN is "beyond the current configuration" (EINIT's token check, EGETKEY) when any
    of its 16 components exceeds the processor's."""
    return any(a > b for a, b in zip(requested, current, strict=True))


__all__ = ["EnclaveContext", "EnclaveState", "LeafResult", "LogicalProcessor", "SgxFault",
           "SgxProcessor", "cpusvn_beyond"]
