"""A virtual CPU: one logical processor of an :class:`~vsgx.cpu.SgxProcessor` executing x86-64
guest code in one Unicorn instance, with SGX enclave mode (ARCHITECTURE decisions 2-5).

Use one :class:`Vcpu` per host thread; Unicorn releases the GIL while guest code runs, so Vcpus
on different threads execute in parallel, except that the Vcpus inside one enclave take turns
(:mod:`.gate`: Unicorn's atomic instructions are atomic only within one instance). Nothing
here is hooked per instruction:

* **Memory** is the VM's own RAM and EPC, mapped zero-copy (:mod:`.physical`). Translation runs
  in a TLB-fill hook that Unicorn calls only on TLB misses; it applies the guest page tables
  and the SGX access-control rules (:mod:`.translate`) and remembers each decision, so a later
  miss on the same page costs a dictionary lookup.
* **ENCLU and ENCLS** are undefined opcodes to Unicorn and reach the engine through its
  invalid-instruction hook; EENTER, ERESUME and EEXIT switch enclave mode in the same Unicorn
  instance by flushing its TLB (the SDM's ``Flush_linear_context``), the other leaves go to the
  processor model. An EEXIT whose target is the run's ``stop_at`` (an ECALL returning) ends the
  run from the hook, with the state EEXIT computed as the final one. **CPUID**,
  **SYSCALL/SYSENTER** and **INT n** have their own hooks.
* **Faults** in enclave mode become an AEX (:mod:`.transitions`) and are then delivered, like
  faults outside, to the caller as an :class:`~vsgx.engine.exits.Exit`.

The processor model's leaves change the EPCM; each change bumps ``Epcm.generation``. A Vcpu
compares it at the start of every run and at every ENCLU/ENCLS, and drops its remembered
decisions about enclave pages when it moved, which is how ENCLS leaves executed on other
threads reach it (hardware equally sees them after its next TLB miss or enclave entry). When an
EPC page that was mapped executable is freed or written by EDBGWR, ``Epcm.code_generation``
moves too and the Vcpu drops its translated code (Unicorn's code cache sees only the writes of
its own instance, and would otherwise run a reused frame's old code). Page
table changes are the caller's to announce: call :meth:`Vcpu.flush_tlb` (between runs, on the
Vcpu's own thread) after changing the address space's mappings, as an OS executes INVLPG or
reloads CR3. Passing a different address-space object to :meth:`Vcpu.run` flushes by itself.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from vsgx.arch import PAGE_SIZE, EnclsLeaf, EncluLeaf, Vector
from vsgx.cpu.fault import SgxFault, gp, ud
from vsgx.cpu.processor import EnclaveContext, LeafResult, SgxProcessor
from vsgx.engine import transitions
from vsgx.engine.exits import STOPPED, Exit, ExitReason
from vsgx.engine.gate import EnclaveGate, EnclaveGates
from vsgx.engine.native import (
    ERR_OK,
    FETCH,
    GPR_COUNT,
    READ,
    WRITE,
    RegisterArray,
    Unicorn,
    error_name,
    tlb_entry,
)
from vsgx.engine.physical import PhysicalMemory, window_address, window_linear
from vsgx.engine.registers import R11, RAX, RBX, RCX, RDX, RFLAGS, RIP, SIZE, Registers
from vsgx.engine.translate import (
    PAGE_MASK,
    PERM_R,
    PERM_W,
    PERM_X,
    AccessControl,
    AddressSpace,
    Fault,
)

Cpuid = Callable[[int, int], tuple[int, int, int, int]]
"""``(leaf, subleaf) -> (EAX, EBX, ECX, EDX)``, as the VM's ``GuestCpuid`` answers."""

ENCLU = b"\x0f\x01\xd7"
ENCLS = b"\x0f\x01\xcf"
_INT_N = 0xCD
_INT3 = b"\xcc"
_HLT = b"\xf4"
_PERM_ALL = PERM_R | PERM_W | PERM_X
_NEED = (PERM_R, PERM_W, PERM_X)
"""The permission each Unicorn access type (``READ``, ``WRITE``, ``FETCH``, consecutive) needs."""
assert (WRITE, FETCH) == (READ + 1, READ + 2)
_PF = int(Vector.PF)
_NO_STATUS = (frozenset(int(leaf) for leaf in (EncluLeaf.EREPORT, EncluLeaf.EMODPE)),
              frozenset(int(leaf) for leaf in (EnclsLeaf.ECREATE, EnclsLeaf.EADD,
                                               EnclsLeaf.EEXTEND, EnclsLeaf.EPA,
                                               EnclsLeaf.EAUG)))
"""ENCLU and ENCLS leaves that leave RAX and RFLAGS alone ("Flags Affected: None", no status
in RAX): they succeed or fault."""
_EENTER = int(EncluLeaf.EENTER)
_ERESUME = int(EncluLeaf.ERESUME)
_EEXIT = int(EncluLeaf.EEXIT)
_EDECCSSA = int(EncluLeaf.EDECCSSA)
_CPUID_EDECCSSA = 1 << 11
"""CPUID.(EAX=12H,ECX=0):EAX[11]: ENCLU[EDECCSSA] is supported (SDM Vol. 2 CPUID, leaf 12H)."""
_MASK32 = 0xFFFF_FFFF

Tlb = dict[int, tuple[bytes, int, memoryview | None]]
"""Remembered translations: linear page -> (the TLB entry's bytes, its permissions, a view of
the page for the engine's own reads; None for the abort page)."""


_GATES: weakref.WeakKeyDictionary[SgxProcessor, EnclaveGates] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def _gates_of(processor: SgxProcessor) -> EnclaveGates:
    """The enclave gates all Vcpus of ``processor`` share."""
    with _GATES_LOCK:
        gates = _GATES.get(processor)
        if gates is None:
            gates = _GATES[processor] = EnclaveGates()
        return gates


class EngineError(RuntimeError):
    """The guest did something no x86 machine can (an access to physical memory that does not
    exist, e.g. a page-table entry pointing outside RAM and EPC): a bug in the OS model."""


@dataclass(frozen=True, slots=True)
class _Trap:
    """An event a hook saw, to be delivered when the run stops. ``rip`` is the RIP to report
    (None: the one the CPU stopped at)."""

    reason: ExitReason
    vector: int = 0
    error_code: int = 0
    address: int = 0
    rip: int | None = None


class Vcpu:
    """Logical processor ``lp`` of ``processor``, running guest code in its own Unicorn.

    ``physical_regions`` is the VM's RAM as (guest-physical base, mmap) pairs
    (``VirtualMachine.ram.regions()``); the EPC sections come from the processor. ``cpuid``
    answers CPUID outside enclave mode. ``cpl`` is the privilege level the guest code runs at
    as far as ENCLU (ring 3 only) and ENCLS (ring 0 only, operands taken as guest-physical
    addresses, i.e. an identity-mapped kernel) are concerned.
    """

    def __init__(self, processor: SgxProcessor, lp: int,
                 physical_regions: Sequence[tuple[int, mmap.mmap]], cpuid: Cpuid, *,
                 cpl: int = 3) -> None:
        if not 0 <= lp < len(processor.lps):
            raise ValueError(f"the processor has no logical processor {lp}")
        self.processor = processor
        self.lp = lp
        self.cpl = cpl
        self._msrs = processor.lps[lp].msrs
        self._cpuid = cpuid
        self._edeccssa = bool(cpuid(0x12, 0)[0] & _CPUID_EDECCSSA)
        """The processor enumerates EDECCSSA; without it leaf 9 is an unsupported leaf
        (#GP)."""
        self._uc = Unicorn()
        self._memory = PhysicalMemory(self._uc, physical_regions, processor.epc)
        self._access = AccessControl(processor, self._memory)
        self._aspace: AddressSpace | None = None
        self._regs = Registers()
        """The register file of the run in progress (the caller's :class:`Registers`)."""
        self._stop_at = 0
        self._finished = False
        """An EEXIT landed on ``stop_at`` and ended the run with ``_regs`` final."""
        self._counting = False
        self._outside: Tlb = {}
        self._inside: dict[int, Tlb] = {}
        self._tlb = self._outside
        self._entries = transitions.EntryCache()
        self._epcm = processor.epcm
        self._generation = processor.epcm.generation
        self._code_generation = processor.epcm.code_generation
        self._session: transitions.Session | None = None
        self._gates = _gates_of(processor)
        self._gate: EnclaveGate | None = None
        """The enclave gate this vCPU holds while it runs in enclave mode."""
        self._context: EnclaveContext | None = None
        self._pending: dict[int, Fault] = {}
        """Faults decided by fills, by linear page; each has a fault-window TLB entry, so
        the two are dropped together (with a TLB flush)."""
        self._trap: _Trap | None = None
        self._snapshot: bytes | None = None
        self._error: BaseException | None = None
        self._kicked = False
        uc = self._uc
        self._start = uc.start
        self._stop = uc.stop
        self._flush = uc.flush_tlb
        self._load = uc.load_registers
        self._store = uc.store_registers
        uc.hook_tlb_fill(self._fill)
        uc.hook_unmapped(self._unmapped)
        uc.hook_invalid(self._invalid)
        uc.hook_interrupt(self._interrupt)
        uc.hook_cpuid(self._on_cpuid)
        uc.hook_syscall(lambda: self._system_call(ExitReason.SYSCALL),
                        lambda: self._system_call(ExitReason.SYSENTER))

    # -- public --------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Deliver an interrupt to the running vCPU from another thread (an IPI): its run
        ends with an INTERRUPT exit, after an AEX when it is in enclave mode. Without a run
        in progress it does nothing (the caller retries while it still needs the exit)."""
        self._kicked = True
        self._stop()

    @property
    def in_enclave(self) -> bool:
        """The logical processor is in enclave mode (a run stopped at ``stop_at`` inside an
        enclave, as a debugger's breakpoint would; the next run continues there)."""
        return self._session is not None

    def run(self, aspace: AddressSpace, regs: Registers, *, stop_at: int, count: int = 0,
            timeout_us: int = 0) -> Exit:
        """Execute from ``regs.rip`` in ``aspace`` until RIP reaches ``stop_at`` or an event
        needs the OS (see :class:`~vsgx.engine.exits.ExitReason`). ``regs`` is updated in
        place to the state at the exit. ``count`` (instructions) and ``timeout_us`` bound the
        run: running out is an interrupt, which in enclave mode causes an AEX."""
        if aspace is not self._aspace:
            self._aspace = aspace
            self.flush_tlb()
        epcm = self.processor.epcm
        if epcm is not self._epcm or epcm.generation != self._generation:
            self._sync_epcm()
        if count and not self._counting:
            self._uc.flush_translations()
        self._counting = bool(count)
        self._regs = regs
        self._stop_at = stop_at
        self._trap = None
        self._finished = False
        self._store(regs.pointers, GPR_COUNT)
        if self._session is not None:  # continuing inside an enclave
            self._take_turn(self._session.thread.secs)
        try:
            status = self._start(regs.rip, stop_at, timeout_us, count)
            return self._conclude(status, stop_at, count > 0)
        finally:
            self._end_turn()

    def flush_tlb(self) -> None:
        """Forget every translation, as a CR3 reload does: call after changing mappings."""
        self._outside.clear()
        for tlb in self._inside.values():
            tlb.clear()
        self._entries.clear()
        self._pending.clear()
        self._flush()

    def close(self) -> None:
        self._uc.close()

    def __enter__(self) -> Vcpu:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------------

    def _sync_epcm(self) -> None:
        """Drop remembered enclave-page decisions if the EPCM changed since they were made
        (and faults decided before, with their fault-window TLB entries), and the translated
        code when an EPC page it came from has changed (``Epcm.code_generation``): a frame
        freed and reused at the same linear address, or a debugger's EDBGWR."""
        epcm = self.processor.epcm
        if epcm is not self._epcm or epcm.generation != self._generation:
            if epcm is not self._epcm or epcm.code_generation != self._code_generation:
                self._code_generation = epcm.code_generation
                self._uc.flush_translations()
            self._epcm = epcm
            self._generation = epcm.generation
            for tlb in self._inside.values():
                tlb.clear()
            self._entries.clear()
            if self._pending:
                self._pending.clear()
                self._flush()

    def _take_turn(self, secs: int) -> None:
        """Wait for this vCPU's turn inside the enclave of SECS page ``secs`` (:mod:`.gate`)."""
        self._gate = self._gates[secs]
        self._gate.enter(self)

    def _end_turn(self) -> None:
        if self._gate is not None:
            self._gate.leave(self)
            self._gate = None

    def _switch(self, session: transitions.Session | None) -> None:
        """Enter or leave enclave mode: other translation rules, a TLB flush, and the turn
        to run inside the enclave."""
        self._end_turn()
        self._session = session
        self._context = None
        if session is None:
            self._tlb = self._outside
        else:
            self._take_turn(session.thread.secs)
            tlb = self._inside.get(session.thread.secs)
            if tlb is None:
                tlb = self._inside[session.thread.secs] = {}
            self._tlb = tlb
        self._pending.clear()
        self._flush()

    def _aspace_now(self) -> AddressSpace:
        assert self._aspace is not None
        return self._aspace

    def _code(self, va: int, size: int) -> bytes:
        """Up to ``size`` instruction bytes at ``va`` (fewer where nothing is mapped)."""
        out = b""
        while size > 0:
            off = va & (PAGE_SIZE - 1)
            take = min(size, PAGE_SIZE - off)
            hit = self._tlb.get(va - off)
            if hit is None:
                walk = self._aspace_now().translate(va - off)
                page = None if walk is None else self._memory.page(walk[0])
                if page is None:
                    break
            else:
                page = hit[2]
            out += b"\xff" * take if page is None else bytes(page[off : off + take])
            va += take
            size -= take
        return out

    def _linear_to_physical(self, la: int) -> int | None:
        walk = self._aspace_now().translate(la & PAGE_MASK)
        return None if walk is None else walk[0] | (la & (PAGE_SIZE - 1))

    # -- hooks (called by Unicorn; they must not raise) ---------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._stop()

    def _raise(self, trap: _Trap) -> None:
        self._trap = trap
        self._stop()

    def _fill(self, _handle: int, va: int, access: int, entry: int, _user: Any) -> bool:
        """A TLB miss: remembered, or decided by the access-control rules and remembered.
        An access that must fault gets an entry into the fault window instead, so that the
        access itself reports its exact address (:meth:`_unmapped`). A fill never fails:
        Unicorn also fills after a run has ended (for ``stop_at - 1``), where a refusal
        would unwind into a finished ``cpu_exec``."""
        try:
            hit = self._tlb.get(va)
            need = _NEED[access - READ]
            if hit is not None and hit[1] & need and self._snapshot is None:
                ctypes.memmove(entry, hit[0], 12)
                return True
            if self._snapshot is not None:
                ctypes.memmove(entry, tlb_entry(window_address(va), _PERM_ALL), 12)
                return True
            s = self._session
            aspace = self._aspace_now()
            if s is None:
                t = self._access.outside(aspace, va, need)
            else:
                th = s.thread
                t = self._access.enclave(aspace, th.secs, th.base, th.end, va, need)
            if isinstance(t, Fault):
                self._pending[va] = t
                ctypes.memmove(entry, tlb_entry(window_address(va), _PERM_ALL), 12)
            else:
                hit = self._tlb[va] = (tlb_entry(*t), t[1], self._memory.page(t[0]))
                ctypes.memmove(entry, hit[0], 12)
        except BaseException as exc:
            self._fail(exc)
            ctypes.memmove(entry, tlb_entry(window_address(va), _PERM_ALL), 12)
        return True

    def _unmapped(self, pa: int) -> None:
        """An access reached the fault window (or, from a broken page table, nothing)."""
        if self._snapshot is not None or self._error is not None or self._trap is not None:
            return
        va = window_linear(pa)
        fault = None if va is None else self._pending.get(va & PAGE_MASK)
        if va is None or fault is None:
            self._fail(EngineError(f"guest access to physical address {pa:#x}, where there "
                                   "is no memory"))
            return
        address = va if fault.vector == _PF else 0
        self._trap = _Trap(ExitReason.EXCEPTION, fault.vector, fault.error_code, address)

    def _invalid(self, _handle: int, _user: Any) -> bool:
        """#UD in Unicorn: ENCLU and ENCLS are emulated, other undefined opcodes are #UD."""
        try:
            regs = self._regs
            self._load(regs.pointers, GPR_COUNT)
            if self._snapshot is None:
                rip = regs.buffer[RIP]
                off = rip & (PAGE_SIZE - 1)
                hit = self._tlb.get(rip - off)
                page = None if hit is None or off > PAGE_SIZE - 3 else hit[2]
                op = self._code(rip, 3) if page is None else page[off : off + 3]
                if op == ENCLU:
                    self._enclu(regs, rip)
                elif op == ENCLS:
                    self._encls(regs, rip)
                else:
                    self._raise(_Trap(ExitReason.EXCEPTION, int(Vector.UD)))
            else:
                self._stop()
        except SgxFault as fault:
            self._raise(_Trap(ExitReason.EXCEPTION, int(fault.vector), fault.error_code,
                              fault.address or 0))
        except BaseException as exc:
            self._fail(exc)
        return True

    def _on_cpuid(self) -> bool:
        """CPUID from the VM's table outside enclave mode; inside it is #UD (SDM 38.6.1).
        Unicorn would run the rest of the translation block after this hook, so an
        in-enclave CPUID snapshots the registers, flushes the TLB and refuses every further
        fill: nothing after it reaches memory, and the snapshot is the state at the #UD."""
        try:
            if self._snapshot is not None:
                return True
            regs = self._regs
            self._load(regs.pointers, GPR_COUNT)
            values = regs.buffer
            if self._session is None:
                values[RAX], values[RBX], values[RCX], values[RDX] = self._cpuid(
                    values[RAX] & _MASK32, values[RCX] & _MASK32)
                self._store(regs.pointers, 4)
            else:
                self._snapshot = bytes(values)
                self._flush()
                self._raise(_Trap(ExitReason.EXCEPTION, int(Vector.UD)))
        except BaseException as exc:
            self._fail(exc)
        return True

    def _current_rip(self) -> int:
        regs = self._regs
        self._load(regs.pointers, GPR_COUNT)
        return int(regs.buffer[RIP])

    def _system_call(self, reason: ExitReason) -> None:
        """SYSCALL/SYSENTER: an exit to the OS outside enclave mode, #UD inside (38.6.1)."""
        try:
            rip = self._current_rip()
            if self._snapshot is not None:
                self._stop()
            elif self._session is None:
                self._raise(_Trap(reason))
            else:
                self._raise(_Trap(ExitReason.EXCEPTION, int(Vector.UD), rip=rip))
        except BaseException as exc:
            self._fail(exc)

    def _interrupt(self, intno: int) -> None:
        """CPU exceptions and ``INT n`` (Unicorn reports both here). ``INT3`` is the #BP trap;
        ``INT n`` is an exit outside enclave mode and #UD inside (38.6.1); anything else is
        the exception ``intno`` at the current instruction."""
        try:
            rip = self._current_rip()
            if self._snapshot is not None:
                self._stop()
            elif intno == Vector.BP and self._code(rip - 1, 1) == _INT3:
                self._raise(_Trap(ExitReason.EXCEPTION, intno))
            elif self._code(rip - 2, 2) == bytes((_INT_N, intno)):
                self._raise(_Trap(ExitReason.INT, intno) if self._session is None else
                            _Trap(ExitReason.EXCEPTION, int(Vector.UD), rip=rip - 2))
            else:
                self._raise(_Trap(ExitReason.EXCEPTION, intno))
        except BaseException as exc:
            self._fail(exc)

    # -- ENCLU / ENCLS ---------------------------------------------------------------------------

    def _complete(self, regs: Registers, rip: int, leaf: int, no_status: frozenset[int],
                  result: LeafResult) -> None:
        """A leaf that returned: its status in RAX and RFLAGS (unless ``leaf`` is one of the
        leaves in ``no_status``), EDBGRD's data in RBX, RIP past the instruction."""
        values = regs.buffer
        if leaf not in no_status:
            values[RAX] = int(result.status.code)
            values[RFLAGS] = result.status.apply_rflags(values[RFLAGS])
        if result.rbx is not None:
            values[RBX] = result.rbx
        values[RIP] = rip + transitions.ENCLU_LENGTH
        self._store(regs.pointers, GPR_COUNT)
        self._sync_epcm()

    def _enclu(self, regs: Registers, rip: int) -> None:
        """ENCLU (SDM 41.4): EENTER/ERESUME outside enclave mode; EEXIT, EDECCSSA (when CPUID
        enumerates it) and the processor's leaves inside; any other combination is #GP(0)."""
        cpu = self.processor
        if self.cpl != 3:
            raise ud("ENCLU outside ring 3")
        if not self._msrs.sgx_enabled:
            raise ud("SGX is not enabled in IA32_FEATURE_CONTROL")
        values = regs.buffer
        leaf = values[RAX] & _MASK32
        epcm = cpu.epcm
        if epcm is not self._epcm or epcm.generation != self._generation:
            self._sync_epcm()
        s = self._session
        if s is None:
            if leaf != _EENTER and leaf != _ERESUME:
                raise gp(f"ENCLU leaf {leaf:#x} outside an enclave")
            s, fpu = transitions.enter(cpu, self._aspace_now(), self.lp, values,
                                       resume=leaf == _ERESUME, cache=self._entries)
            self._store(regs.pointers, GPR_COUNT)
            if fpu is not None:
                self._uc.write_fpu(fpu)
            self._switch(s)
        elif leaf == _EEXIT:
            transitions.eexit(cpu, self.lp, s, values)
            self._switch(None)
            if values[RIP] == self._stop_at:
                # The run ends exactly where the EEXIT lands: stop here with ``regs`` as the
                # final state instead of handing it to Unicorn to reach ``stop_at`` (the next
                # run stores every register anyway).
                self._finished = True
                self._stop()
            else:
                self._store(regs.pointers, GPR_COUNT)
        elif leaf == _EENTER or leaf == _ERESUME:
            raise gp("EENTER/ERESUME in enclave mode")
        elif leaf == _EDECCSSA and self._edeccssa:
            transitions.edeccssa(cpu, self._aspace_now(), s)
            values[RIP] = rip + transitions.ENCLU_LENGTH
            self._store(regs.pointers, GPR_COUNT)
        else:
            if self._context is None:
                self._context = EnclaveContext(s.thread.secs, s.thread.index, self.lp,
                                               self._linear_to_physical)
            self._complete(regs, rip, leaf, _NO_STATUS[0],
                           cpu.enclu(leaf, self._context, values[RBX], values[RCX],
                                     values[RDX]))

    def _encls(self, regs: Registers, rip: int) -> None:
        """ENCLS (SDM 41.3): ring 0 outside enclave mode only (#UD otherwise)."""
        if self._session is not None or self.cpl != 0:
            raise ud("ENCLS outside ring 0 or in enclave mode")
        values = regs.buffer
        leaf = values[RAX] & _MASK32
        self._complete(regs, rip, leaf, _NO_STATUS[1], self.processor.encls(
            leaf, values[RBX], values[RCX], values[RDX], lp=self.lp))

    # -- the end of a run ------------------------------------------------------------------------

    def _conclude(self, status: int, stop_at: int, counted: bool) -> Exit:
        if self._error is not None:
            error, self._error = self._error, None
            self._snapshot = None
            raise error
        if self._finished:
            return STOPPED
        regs = self._regs
        self._load(regs.pointers, GPR_COUNT)
        values = regs.buffer
        trap = self._trap
        if self._snapshot is not None:
            ctypes.memmove(values, self._snapshot, SIZE)
            self._snapshot = None
        elif trap is None and status != ERR_OK:
            raise EngineError(f"Unicorn stopped with {error_name(status)} at RIP "
                              f"{values[RIP]:#x}")
        if trap is None:
            rip = values[RIP]
            if rip == stop_at:
                return STOPPED
            kicked, self._kicked = self._kicked, False
            if (self._uc.timed_out() or kicked
                    or (counted and self._code(rip - 1, 1) != _HLT)):
                trap = _Trap(ExitReason.INTERRUPT)
            else:
                # Otherwise only HLT stops Unicorn silently (after an instruction budget ran
                # out, the byte before RIP tells them apart). In enclave mode (ring 3) it is
                # #GP(0).
                trap = (_Trap(ExitReason.HLT) if self._session is None else
                        _Trap(ExitReason.EXCEPTION, int(Vector.GP), rip=rip - 1))
        result = self._deliver(trap, values)
        self._store(regs.pointers, GPR_COUNT)
        return result

    def _deliver(self, trap: _Trap, regs: RegisterArray) -> Exit:
        """Turn an event into the exit the OS sees, through an AEX in enclave mode."""
        if trap.rip is not None:
            regs[RIP] = trap.rip
        s = self._session
        if s is None:
            if trap.reason is ExitReason.SYSCALL:
                regs[RCX] = regs[RIP]
                regs[R11] = regs[RFLAGS]
            elif trap.reason is ExitReason.EXCEPTION:
                self._pending.clear()
                self._flush()
            return Exit(trap.reason, trap.vector, trap.error_code, trap.address)
        cause = (None if trap.reason is ExitReason.INTERRUPT else
                 transitions.Cause(trap.vector, trap.error_code, trap.address))
        transitions.aex(self.processor, self.lp, s, regs, cause, self._uc.read_fpu())
        self._uc.write_fpu(transitions.FPU_INIT)
        self._switch(None)
        address = trap.address & PAGE_MASK if trap.vector == _PF else trap.address
        return Exit(trap.reason, trap.vector, trap.error_code, address, aex=True)
