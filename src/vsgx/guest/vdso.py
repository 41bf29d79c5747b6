"""``__vdso_sgx_enter_enclave``: how a guest process enters its enclaves, with Linux's
semantics (``arch/x86/entry/vdso/vdso64/vsgx.S``, ``arch/x86/include/uapi/asm/sgx.h``).

Every process gets a vDSO page holding one ``ENCLU`` instruction: the AEP. The vDSO call loads
RAX (the leaf: EENTER or ERESUME), RBX (``run->tcs``) and RCX (the AEP), passes RDI, RSI, RDX,
R8 and R9 through, and runs the vCPU from the AEP; the enclave's EEXIT lands right after the
ENCLU, an asynchronous exit lands on the ENCLU itself (so resuming is running it again with
RAX = ERESUME, which the AEX synthetic state already holds). Between the two, the guest
kernel's page-fault handler (``sgx_vma_fault``: ELDU, EAUG, PTE set-up) serves the faults it
can, transparently; any other exception is written into ``struct sgx_enclave_run``
(``fixup_vdso_exception``) and the call returns 0, or calls the ``user_handler``.

A ``user_handler`` is a Python callable registered with :meth:`VdsoSgx.register_handler`,
which returns the "address" to put in ``run->user_handler``; it is called as
``handler(rdi, rsi, rdx, untrusted_rsp, r8, r9, run)`` and a result > 0 is the next ENCLU leaf.

Handlers are host-side Python callables, so they do not migrate: a process brought back by a
migration (:meth:`VdsoSgx.adopt`) keeps its vDSO page, its threads' stacks and the count of
handlers registered, but no handler. They must be registered again; the tokens given before
the migration stay dead (a call through one is a :class:`GuestFault` that says so), and new
registrations get new tokens.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from vsgx.arch import PAGE_SIZE, EncluLeaf, Pfec, Vector
from vsgx.engine import ExitReason, Registers, Vcpu
from vsgx.guest.mm import AddressSpace
from vsgx.guest.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE

ENCLU = b"\x0f\x01\xd7"
UD2 = b"\x0f\x0b"
VDSO_BASE = 0x7FFF_F7FF_E000
"""Where the vDSO page sits (below the default ``mmap_base``; vsgx has no ASLR)."""
STACK_SIZE = 64 << 10
_CLOSE_POLL = 0.01
"""Seconds between interrupts while :meth:`VcpuPool.close` waits for busy vCPUs."""

RUN_SIZE = 256
_RUN = struct.Struct("<QIHHQQQ")
"""``struct sgx_enclave_run``: tcs, function, exception_vector, exception_error_code,
exception_addr, user_handler, user_data; then 216 reserved bytes."""
EINVAL = 22

UserHandler = Callable[[int, int, int, int, int, int, int], int]


class GuestFault(Exception):
    """Code outside the vDSO's ENCLU faulted (an enclave that EEXITed to a bad address, for
    instance): on Linux the process would get a signal. ``vector``, ``error_code`` and
    ``address`` describe the exception; ``rip`` is where it happened."""

    def __init__(self, vector: int, error_code: int, address: int, rip: int,
                 detail: str = "") -> None:
        super().__init__(f"exception {vector} (error code {error_code:#x}, address "
                         f"{address:#x}) at {rip:#x} outside the vDSO: the process would get "
                         f"a signal{detail}")
        self.vector, self.error_code, self.address, self.rip = vector, error_code, address, rip


class ProcessMemory(Protocol):
    """What the vDSO needs of its process."""

    @property
    def mm(self) -> AddressSpace: ...

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int: ...

    def mprotect(self, addr: int, length: int, prot: int) -> None: ...

    def read_memory(self, addr: int, n: int) -> bytes: ...

    def write_memory(self, addr: int, data: bytes) -> int: ...


class VcpuPool:
    """The machine's logical processors, each with its engine :class:`Vcpu`, lent to one host
    thread at a time for the length of a vDSO call (a thread blocks while all are busy).
    ``factory(lp)`` creates the Vcpu of logical processor ``lp`` the first time it is used."""

    def __init__(self, count: int, factory: Callable[[int], Vcpu]) -> None:
        self._factory = factory
        self._vcpus: dict[int, Vcpu] = {}
        self._count = count
        self._free = list(range(count))
        self._cond = threading.Condition()
        self._seen: dict[int, tuple[int, int]] = {}
        self.closing = False
        """The machine is taking its vCPUs back (:meth:`close`): threads inside a vDSO call
        give theirs up at the next interrupt."""

    @contextmanager
    def acquire(self) -> Iterator[Vcpu]:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._free) and not self.closing)
            lp = self._free.pop(0)
            vcpu = self._vcpus.get(lp)
            if vcpu is None:
                vcpu = self._vcpus[lp] = self._factory(lp)
        try:
            yield vcpu
        finally:
            with self._cond:
                self._free.append(lp)
                self._cond.notify_all()

    def sync(self, vcpu: Vcpu, mm: AddressSpace) -> None:
        """Flush ``vcpu``'s TLB when ``mm``'s page tables changed since it last ran there (a
        CR3 write on real hardware flushes it on every switch; here only when needed)."""
        mark = (id(mm), mm.generation)
        if self._seen.get(vcpu.lp) != mark:
            vcpu.flush_tlb()
            self._seen[vcpu.lp] = mark

    def interrupt(self, lps: Iterable[int]) -> None:
        """Interrupt the vCPUs of logical processors ``lps`` that are running (an IPI)."""
        with self._cond:
            targets = [self._vcpus[lp] for lp in lps if lp in self._vcpus]
        for vcpu in targets:
            vcpu.interrupt()

    @property
    def busy(self) -> int:
        """How many vCPUs are lent out (host threads inside a vDSO call)."""
        with self._cond:
            return self._count - len(self._free)

    def quiesce(self) -> None:
        """Take every vCPU back (a reset is coming): vCPUs lent to threads are interrupted (an
        AEX inside an enclave) until each thread has given its vCPU back; the threads then
        wait in :meth:`acquire` until :meth:`close` has run."""
        with self._cond:
            self.closing = True
            while len(self._free) < self._count:
                busy = [self._vcpus[lp] for lp in range(self._count)
                        if lp not in self._free and lp in self._vcpus]
                for vcpu in busy:
                    vcpu.interrupt()
                self._cond.wait(_CLOSE_POLL)

    def close(self) -> None:
        """Release the engines (a reset or shutdown), after :meth:`quiesce`. Threads that
        were waiting resume on fresh engines, where an enclave whose EPC the reset cleared
        faults."""
        self.quiesce()
        with self._cond:
            for vcpu in self._vcpus.values():
                vcpu.close()
            self._vcpus.clear()
            self._seen.clear()
            self.closing = False
            self._cond.notify_all()


@dataclass
class _Run:
    tcs: int
    function: int
    user_handler: int


class VdsoSgx:
    """The SGX part of one process's vDSO."""

    def __init__(self, process: ProcessMemory, cpus: VcpuPool, *,
                 adopt: tuple[int, Sequence[int], int] | None = None) -> None:
        self._process = process
        self._cpus = cpus
        self._handlers: dict[int, UserHandler] = {}
        self._stacks: dict[int, int] = {}
        self._unclaimed: list[int] = []
        """Stacks (their tops) mapped before a migration, for the threads that call next."""
        self._lost = 0
        """How many handlers were registered before a migration (their tokens are dead)."""
        self._run_pins: dict[int, tuple[tuple[int, int], memoryview]] = {}
        self._spare = threading.local()
        """Per host thread, the register file its last call used, to reuse."""
        self._lock = threading.Lock()
        if adopt is not None:
            self.aep, stacks, self._lost = adopt
            self._unclaimed = sorted(stacks, reverse=True)
            return
        base = process.mmap(VDSO_BASE, PAGE_SIZE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS)  # a hint: never over a user mapping
        process.write_memory(base, ENCLU + UD2)
        process.mprotect(base, PAGE_SIZE, PROT_READ | PROT_EXEC)
        self.aep = base
        """The ENCLU instruction every AEX returns to."""

    @classmethod
    def adopt(cls, process: ProcessMemory, cpus: VcpuPool, aep: int, stacks: Sequence[int],
              handlers: int) -> VdsoSgx:
        """The vDSO of a migrated process, whose address space already holds the vDSO page
        at ``aep`` and the stacks (tops) ``stacks``; ``handlers`` were registered before and
        are gone (see the module documentation)."""
        return cls(process, cpus, adopt=(aep, stacks, handlers))

    def migration_state(self) -> tuple[int, list[int], int]:
        """(AEP, every stack's top, handlers registered so far): what :meth:`adopt` takes."""
        with self._lock:
            return (self.aep, sorted([*self._stacks.values(), *self._unclaimed]),
                    self._lost + len(self._handlers))

    def register_handler(self, handler: UserHandler) -> int:
        """Make ``handler`` callable as a ``run->user_handler``; returns the value to store."""
        with self._lock:
            token = self.aep + PAGE_SIZE + 16 * (self._lost + len(self._handlers) + 1)
            self._handlers[token] = handler
        return token

    def _stack(self) -> int:
        """The calling host thread's user stack in the process (its top): one left by a
        migration if any is unclaimed, else a new mapping."""
        ident = threading.get_ident()
        with self._lock:
            top = self._stacks.get(ident)
            if top is None and self._unclaimed:
                top = self._stacks[ident] = self._unclaimed.pop()
        if top is None:
            base = self._process.mmap(0, STACK_SIZE, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS)
            top = base + STACK_SIZE
            with self._lock:
                self._stacks[ident] = top
        return top

    def enter(self, rdi: int, rsi: int, rdx: int, function: int, r8: int, r9: int,
              run: int) -> int:
        """``__vdso_sgx_enter_enclave(rdi, rsi, rdx, function, r8, r9, run)``: returns 0 (or
        a handler's result <= 0), or -EINVAL for a bad ``function`` or non-zero reserved
        bytes; an unreadable ``run`` is an OSError(EFAULT) as the vDSO's load would fault."""
        view = self._run_view(run)
        raw = bytes(view) if view is not None else self._process.read_memory(run, RUN_SIZE)
        tcs, _, _, _, _, handler, _ = _RUN.unpack_from(raw)
        if function not in (EncluLeaf.EENTER, EncluLeaf.ERESUME) or any(raw[_RUN.size:]):
            return -EINVAL
        spare = getattr(self._spare, "regs", None)
        regs = spare if spare is not None else Registers()
        self._spare.regs = None  # a user handler may enter again: it gets its own
        regs.reset(rax=function, rbx=tcs, rcx=self.aep, rdx=rdx, rsi=rsi, rdi=rdi, r8=r8,
                   r9=r9, rip=self.aep, rsp=self._stack() - 8)
        state = _Run(tcs, function, handler)
        try:
            while True:
                with self._cpus.acquire() as vcpu:
                    result = self._loop(vcpu, regs, state, run)
                if result is not None:
                    return result
                # The machine took the vCPU back (a reset): wait for it, then resume.
        finally:
            self._spare.regs = regs

    def _loop(self, vcpu: Vcpu, regs: Registers, state: _Run, run: int) -> int | None:
        """Run until the call returns (its result), or None when the pool takes ``vcpu``
        back, with ``regs`` where the interrupt left them (at the AEP after an AEX)."""
        mm = self._process.mm
        while True:
            self._cpus.sync(vcpu, mm)
            done = vcpu.run(mm, regs, stop_at=self.aep + len(ENCLU))
            if done.reason is ExitReason.INTERRUPT:
                if self._cpus.closing:
                    return None
                continue  # the interrupt was served; an AEX left RIP at the AEP (ERESUME)
            if done.reason is ExitReason.STOP:
                self._store(run, struct.pack("<I", EncluLeaf.EEXIT), 8)
            elif done.reason is ExitReason.EXCEPTION and self._kernel_fixes(done.vector,
                                                                             done.error_code,
                                                                             done.address):
                continue
            elif done.reason is ExitReason.EXCEPTION and regs.rip == self.aep:
                # fixup_vdso_exception: the leaf that faulted (3 after an AEX, 2 when EENTER
                # itself faulted) and the exception, for the caller.
                self._store(run, struct.pack("<IHHQ", regs.rax & 0xFFFF_FFFF, done.vector,
                                             done.error_code & 0xFFFF, done.address), 8)
            else:
                raise GuestFault(done.vector, done.error_code, done.address, regs.rip)
            if not state.user_handler:
                return 0
            result = self._call_handler(state.user_handler, regs, run)
            if result <= 0:
                return result
            regs.rax, regs.rbx, regs.rcx, regs.rip = result, self._tcs(run), self.aep, self.aep

    def _kernel_fixes(self, vector: int, error_code: int, address: int) -> bool:
        """The page-fault handler resolves not-present and protection faults on the
        process's own mappings (loading an evicted enclave page, EAUG); an EPCM fault
        (PFEC.SGX) is never its business (``sgx_vma_fault`` is not called for it)."""
        if vector != Vector.PF or error_code & Pfec.SGX:
            return False
        return self._process.mm.handle_fault(address, write=bool(error_code & Pfec.W),
                                             exec=bool(error_code & Pfec.I))

    def _call_handler(self, token: int, regs: Registers, run: int) -> int:
        handler = self._handlers.get(token)
        if handler is None:
            first = self.aep + PAGE_SIZE + 16
            lost = first <= token < first + 16 * self._lost and not (token - first) % 16
            raise GuestFault(int(Vector.PF), int(Pfec.U | Pfec.I), token, token, (
                " (the user handler was registered before a migration: host-side handlers "
                "do not migrate, register it again)") if lost else "")
        return handler(regs.rdi, regs.rsi, regs.rdx, regs.rsp, regs.r8, regs.r9, run)

    def _tcs(self, run: int) -> int:
        view = self._run_view(run)
        raw = bytes(view[:_RUN.size]) if view is not None else self._process.read_memory(
            run, _RUN.size)
        tcs: int = _RUN.unpack_from(raw)[0]
        return tcs

    def _run_view(self, run: int) -> memoryview | None:
        """``struct sgx_enclave_run`` as the vDSO's own loads and stores see it: a view of the
        process page holding it (when it does not straddle pages and the page is writable),
        kept until the address space's translations change."""
        mm = self._process.mm
        key = (run, mm.generation)
        cached = self._run_pins.get(threading.get_ident())
        if cached is not None and cached[0] == key:
            return cached[1]
        if run % PAGE_SIZE > PAGE_SIZE - RUN_SIZE:
            return None
        try:
            page = mm.pin_user_page(run)
        except OSError:
            return None
        view = page[run % PAGE_SIZE:run % PAGE_SIZE + RUN_SIZE]
        self._run_pins[threading.get_ident()] = (key, view)
        return view

    def _store(self, run: int, data: bytes, offset: int) -> None:
        view = self._run_view(run)
        if view is None:
            self._process.write_memory(run + offset, data)
        else:
            view[offset:offset + len(data)] = data
