"""The execution engine against bare Unicorn.

1. **ECALL round trip**: an untrusted stub ``mov eax, 2 ; enclu`` (EENTER) into enclave code
   ``mov rbx, rcx ; mov eax, 4 ; enclu`` (EEXIT) and back to the stub's end, one
   ``Vcpu.run`` per round trip; against a bare ``Uc.emu_start`` (the Python binding, default
   TLB) over a two-instruction stub ``nop ; nop``. Target: at most 3x.
2. **Compute in an enclave**: 64 passes of a multiply-add over a 64 KiB buffer in enclave
   memory (2.6 M instructions), entered with EENTER and left with EEXIT; against the same loop
   over the same bytes in bare Unicorn. Reported as bare time / enclave time. Target: >= 0.8.
3. **Two threads, two TCSs**: the compute ECALL in TCS0 and TCS1 of one enclave on two host
   threads at once (one Vcpu each, logical processors 0 and 1), against the same two ECALLs
   one after the other on one thread. Reported as sequential / parallel wall time. Target:
   >= 1.5 on two idle cores; as a control, the same figure for two bare Unicorns says what
   the machine offers at the time.

Best of 3 rounds; each round times the contenders back to back, so load on the machine hits
both. Untimed: building the VM and the enclave, creating the Vcpus, the first (translating)
run of each contender.

Run: ``python benchmarks/bench_engine.py``
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import unicorn
from unicorn import x86_const as x86

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "engine"))

from engine_harness import (
    AEP,
    BUFFER,
    BUFFER_SIZE,
    EEXIT_TO_RCX,
    STUB,
    STUB_END,
    TCS0,
    TCS1,
    PageTable,
    Platform,
    standard_enclave,
)

from vsgx.arch import PAGE_SIZE
from vsgx.engine import ExitReason, Registers

ROUNDS = 3
ECALLS = 20_000
PASSES = 64

COMPUTE = bytes.fromhex(
    "4989f8"          # mov r8, rdi            ; passes
    "31c0"            # xor eax, eax
    # pass:
    "4889f3"          # mov rbx, rsi           ; buffer
    "b900200000"      # mov ecx, 0x2000        ; qwords in 64 KiB
    # qword:
    "486bc021"        # imul rax, rax, 33
    "480303"          # add rax, [rbx]
    "4883c308"        # add rbx, 8
    "ffc9"            # dec ecx
    "75f1"            # jnz qword
    "49ffc8"          # dec r8
    "75e4"            # jnz pass
    "4889c2"          # mov rdx, rax           ; the result
)
"""RDI passes over the 64 KiB at RSI: RAX = RAX * 33 + qword, per qword; result in RDX."""
PATTERN = bytes(range(256)) * (BUFFER_SIZE // 256)


def per_call(fn: Callable[[], object], repeat: int = 1) -> float:
    """Seconds per call over ``repeat`` calls."""
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def best_of(*contenders: tuple[Callable[[], object], int]) -> list[float]:
    """Each contender's best per-call time over ROUNDS rounds, timed back to back."""
    times: list[list[float]] = [[] for _ in contenders]
    for _ in range(ROUNDS):
        for slot, (fn, repeat) in zip(times, contenders, strict=True):
            slot.append(per_call(fn, repeat))
    return [min(slot) for slot in times]


def bare_unicorn(code: bytes, base: int, data: int = 0) -> tuple[unicorn.Uc, int]:
    """A plain Unicorn (default TLB, no hooks) with ``code`` at ``base`` and, at ``data``,
    the buffer contents the enclave has."""
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(base, 0x1000)
    uc.mem_write(base, code)
    if data:
        uc.mem_map(data, BUFFER_SIZE)
        uc.mem_write(data, PATTERN)
    return uc, base + len(code)


def ecall_round_trip() -> None:
    plat = Platform("bench-engine-ecall")
    table = PageTable()
    standard_enclave(plat, table, EEXIT_TO_RCX)
    regs = Registers()
    with plat.vcpu(0) as vcpu:
        def ecall() -> None:
            regs.rip, regs.rbx, regs.rcx = STUB, TCS0, AEP
            vcpu.run(table, regs, stop_at=STUB_END)

        ecall()
        assert regs.rip == STUB_END
        uc, until = bare_unicorn(bytes.fromhex("9090"), 0x1000)  # nop ; nop
        uc.emu_start(0x1000, until)
        bare_t, ecall_t = best_of((lambda: uc.emu_start(0x1000, until), ECALLS),
                                  (ecall, ECALLS))
    print(f"1. ECALL round trip: {ecall_t * 1e6:.2f} us; bare emu_start of 2 nops: "
          f"{bare_t * 1e6:.2f} us; ratio {ecall_t / bare_t:.2f}x (target <= 3)")


def compute_and_threads() -> None:
    plat = Platform("bench-engine-compute")
    table = PageTable()
    standard_enclave(plat, table, bytes.fromhex("4989c9")   # mov r9, rcx  ; return address
                     + COMPUTE + bytes.fromhex("4c89c9")    # mov rcx, r9
                     + EEXIT_TO_RCX)
    for off in range(0, BUFFER_SIZE, PAGE_SIZE):
        idx = plat.processor.epc.index_of(table.entries[BUFFER + off][0])
        assert idx is not None
        plat.processor.epc.page(idx)[:] = PATTERN[off : off + PAGE_SIZE]
    vcpus = {lp: plat.vcpu(lp) for lp in (0, 1)}

    def enclave_compute(lp: int = 0, tcs: int = TCS0) -> int:
        regs = Registers(rip=STUB, rbx=tcs, rcx=AEP, rdi=PASSES, rsi=BUFFER)
        out = vcpus[lp].run(table, regs, stop_at=STUB_END)
        assert out.reason is ExitReason.STOP, out
        return regs.rdx

    cuc, cuntil = bare_unicorn(COMPUTE, 0x30_0000, BUFFER)

    def bare_compute() -> int:
        cuc.reg_write(x86.UC_X86_REG_RDI, PASSES)
        cuc.reg_write(x86.UC_X86_REG_RSI, BUFFER)
        cuc.emu_start(0x30_0000, cuntil)
        return int(cuc.reg_read(x86.UC_X86_REG_RDX))

    assert enclave_compute() == bare_compute() == enclave_compute(1, TCS1)
    bare_t, enclave_t = best_of((bare_compute, 1), (enclave_compute, 1))
    print(f"2. compute in an enclave: {enclave_t * 1e3:.2f} ms; bare Unicorn: "
          f"{bare_t * 1e3:.2f} ms; speed ratio {bare_t / enclave_t:.2f} (target >= 0.8)")

    def sequential() -> None:
        enclave_compute(0, TCS0)
        enclave_compute(0, TCS1)

    def parallel() -> None:
        barrier = threading.Barrier(2)

        def worker(lp: int, tcs: int) -> None:
            barrier.wait()
            enclave_compute(lp, tcs)

        other = threading.Thread(target=worker, args=(1, TCS1))
        other.start()
        worker(0, TCS0)
        other.join()

    other_uc, _ = bare_unicorn(COMPUTE, 0x30_0000, BUFFER)

    def bare_on(uc: unicorn.Uc) -> None:
        uc.reg_write(x86.UC_X86_REG_RDI, PASSES)
        uc.reg_write(x86.UC_X86_REG_RSI, BUFFER)
        uc.emu_start(0x30_0000, cuntil)

    def bare_parallel() -> None:
        other = threading.Thread(target=bare_on, args=(other_uc,))
        other.start()
        bare_on(cuc)
        other.join()

    seq_t, par_t, bare_seq_t, bare_par_t = best_of(
        (sequential, 1), (parallel, 1), (lambda: (bare_on(cuc), bare_on(other_uc)), 1),
        (bare_parallel, 1))
    print(f"3. two TCSs: one thread {seq_t * 1e3:.2f} ms, two threads {par_t * 1e3:.2f} ms; "
          f"scaling {seq_t / par_t:.2f}x (target >= 1.5; two bare Unicorns on two threads "
          f"scale {bare_seq_t / bare_par_t:.2f}x on this machine now)")
    for vcpu in vcpus.values():
        vcpu.close()


def main() -> int:
    ecall_round_trip()
    compute_and_threads()
    return 0


if __name__ == "__main__":
    sys.exit(main())
