"""Several logical processors, one Vcpu per host thread: TCS busy state across threads and two
threads in two TCSs of one enclave; and interrupts (a run's instruction budget running out),
whose AEX and ERESUME must not change what the enclave computes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from engine_harness import (
    AEP,
    CODE,
    EEXIT_TO_RCX,
    STUB_END,
    TCS0,
    TCS1,
    UNTRUSTED,
    PageTable,
    Platform,
    ecall,
    gprsgx,
    standard_enclave,
    tcs_state,
)

from vsgx.engine import Exit, ExitReason, Registers, Vcpu

HASH_LOOP = bytes.fromhex(
    "660fefc0"      # pxor xmm0, xmm0
    "4889f0"        # mov rax, rsi           ; seed
    "66480f6ec8"    # movq xmm1, rax
    # loop:
    "486bc021"      # imul rax, rax, 33
    "4801f8"        # add rax, rdi
    "660fd4c1"      # paddq xmm0, xmm1
    "66480f6ec8"    # movq xmm1, rax
    "48ffcf"        # dec rdi
    "75eb"          # jnz loop
    "66480f7ec2"    # movq rdx, xmm0
    "4989c0"        # mov r8, rax
) + EEXIT_TO_RCX
"""RDI rounds of a multiplicative hash seeded by RSI: R8 = the hash, RDX = the sum of its
successive values (kept in XMM0, so an AEX must save and restore SSE state)."""


def reference_hash(rounds: int, seed: int) -> tuple[int, int]:
    mask = (1 << 64) - 1
    value, total = seed, 0
    for i in range(rounds, 0, -1):
        previous = value
        value = (value * 33 + i) & mask
        total = (total + previous) & mask
    return value, total


def run_to_completion(vcpu: Vcpu, table: PageTable, regs: Registers, count: int) -> int:
    """Run with an instruction budget until STOP, resuming after every interrupt (at the AEP
    when the interrupt hit enclave mode). Returns how many AEXs there were."""
    aexs = 0
    while True:
        out = vcpu.run(table, regs, stop_at=STUB_END, count=count)
        if out.reason is ExitReason.STOP:
            return aexs
        assert out.reason is ExitReason.INTERRUPT, out
        if out.aex:
            aexs += 1
            assert (regs.rax, regs.rbx, regs.rcx, regs.rip) == (3, TCS0, AEP, AEP)


@pytest.mark.parametrize("count", [5, 17, 64, 333])
def test_interrupts_and_eresume_do_not_change_the_result(plat: Platform, table: PageTable,
                                                         count: int) -> None:
    enclave = standard_enclave(plat, table, HASH_LOOP)
    with plat.vcpu() as vcpu:
        out, whole = ecall(vcpu, table, rdi=500, rsi=7)
        assert out.reason is ExitReason.STOP
        assert (whole.r8, whole.rdx) == reference_hash(500, 7)
        regs = Registers(rip=whole.rip - 8, rbx=TCS0, rcx=AEP, rdi=500, rsi=7,
                         rsp=whole.rsp)
        aexs = run_to_completion(vcpu, table, regs, count)
    assert aexs > 0
    assert (regs.r8, regs.rdx, regs.rip) == (whole.r8, whole.rdx, STUB_END)
    assert tcs_state(plat, enclave).cssa == 0


def test_interrupt_in_enclave_leaves_exitinfo_invalid(plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, HASH_LOOP)
    with plat.vcpu() as vcpu:
        regs = Registers(rip=STUB_END - 8, rbx=TCS0, rcx=AEP, rdi=1000, rsi=1)
        out = vcpu.run(table, regs, stop_at=STUB_END, count=40)
    assert (out.reason, out.aex, out.vector) == (ExitReason.INTERRUPT, True, 0)
    ssa = gprsgx(plat, enclave)
    assert ssa.exitinfo == 0 and CODE <= ssa.rip < CODE + len(HASH_LOOP)
    assert tcs_state(plat, enclave).cssa == 1


def test_tcs_busy_across_threads(plat: Platform, table: PageTable) -> None:
    """A logical processor parked inside the enclave (its run stopped at an address in the
    enclave, like a breakpoint) keeps TCS0 busy: EENTER on it from another thread is
    #GP(0); TCS1 is free; once the first leaves, TCS0 can be entered again."""
    code = bytes.fromhex("9090") + EEXIT_TO_RCX  # nop ; nop ; EEXIT
    standard_enclave(plat, table, code)

    def other_thread(tcs: int) -> tuple[Exit, Registers]:
        with Vcpu(plat.processor, 1, plat.regions, plat.vm.cpuid) as vcpu:
            return ecall(vcpu, table, tcs)

    with plat.vcpu(0) as vcpu, ThreadPoolExecutor(1) as pool:
        regs = Registers(rip=STUB_END - 8, rbx=TCS0, rcx=AEP)
        assert vcpu.run(table, regs, stop_at=CODE + 1).reason is ExitReason.STOP
        assert vcpu.in_enclave and regs.rip == CODE + 1
        out, other = pool.submit(other_thread, TCS0).result()
        assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, 13, False)
        assert other.rip == AEP
        out, _ = pool.submit(other_thread, TCS1).result()
        assert out.reason is ExitReason.STOP
        assert vcpu.run(table, regs, stop_at=STUB_END).reason is ExitReason.STOP
        assert not vcpu.in_enclave
        out, _ = pool.submit(other_thread, TCS0).result()
        assert out.reason is ExitReason.STOP


def test_two_threads_in_two_tcs_concurrently(plat: Platform, table: PageTable) -> None:
    standard_enclave(plat, table, HASH_LOOP)
    barrier = threading.Barrier(2)
    work = {0: (TCS0, 20_000, 3), 1: (TCS1, 30_000, 5)}

    def worker(lp: int) -> tuple[int, int]:
        tcs, rounds, seed = work[lp]
        with Vcpu(plat.processor, lp, plat.regions, plat.vm.cpuid) as vcpu:
            barrier.wait()
            out, regs = ecall(vcpu, table, tcs, rdi=rounds, rsi=seed)
            assert out.reason is ExitReason.STOP
            return regs.r8, regs.rdx

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(worker, work))
    assert results == [reference_hash(r, s) for _, r, s in work.values()]
    assert all(not enclave.inside for enclave in plat.processor.enclaves.values())


def test_timeout_interrupts_a_spinning_enclave(plat: Platform, table: PageTable) -> None:
    code = bytes.fromhex(
        "48833f00"  # spin: cmp qword [rdi], 0     ; an untrusted flag
        "74fa"      # je spin
    ) + EEXIT_TO_RCX
    standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        regs = Registers(rip=STUB_END - 8, rbx=TCS0, rcx=AEP, rdi=UNTRUSTED)
        for _ in range(100):  # until the timer fires in enclave mode (it spins there)
            out = vcpu.run(table, regs, stop_at=STUB_END, timeout_us=20_000)
            assert out.reason is ExitReason.INTERRUPT
            if out.aex:
                break
        assert out.aex and regs.rip == AEP
        plat.write_linear(table, UNTRUSTED, (1).to_bytes(8, "little"))
        out = vcpu.run(table, regs, stop_at=STUB_END, timeout_us=2_000_000)
    assert out.reason is ExitReason.STOP
