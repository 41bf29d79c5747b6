"""Instructions the engine traps: CPUID, SYSCALL, SYSENTER, INT n, INT3, HLT, UD2 and ENCLS,
outside enclave mode (exits to the OS) and inside (SDM Vol. 3D 38.6.1: #UD, so an AEX)."""

from __future__ import annotations

import pytest
from engine_harness import (
    CODE,
    DATA,
    EEXIT_TO_RCX,
    PageTable,
    Platform,
    ecall,
    exinfo,
    gprsgx,
    standard_enclave,
)

from vsgx.arch import PageType, SgxError, Vector, exitinfo
from vsgx.arch.structs import EXITINFO_TYPE_HARDWARE, EXITINFO_TYPE_SOFTWARE
from vsgx.cpu.status import RFLAGS_ZF
from vsgx.engine import ExitReason, Registers, Vcpu

OUTSIDE = 0x60_0000


def asm(*hex_parts: str) -> bytes:
    return bytes.fromhex("".join(hex_parts))


def run_outside(plat: Platform, table: PageTable, code: bytes, vcpu: Vcpu | None = None,
                **values: int) -> tuple[ExitReason, Registers, int]:
    plat.code(table, OUTSIDE, code)
    regs = Registers(rip=OUTSIDE, **values)
    with vcpu or plat.vcpu() as v:
        out = v.run(table, regs, stop_at=OUTSIDE + len(code))
    return out.reason, regs, out.vector


def test_cpuid_outside_answers_from_the_vm(plat: Platform, table: PageTable) -> None:
    reason, regs, _ = run_outside(plat, table, asm(
        "b812000000",  # mov eax, 0x12
        "31c9",        # xor ecx, ecx
        "0fa2",        # cpuid
    ), rbx=0x77)
    assert reason is ExitReason.STOP
    assert (regs.rax, regs.rbx, regs.rcx, regs.rdx) == plat.vm.cpuid(0x12, 0)
    assert regs.rip == OUTSIDE + 9


def test_cpuid_in_an_enclave_is_ud_and_nothing_after_it_runs(plat: Platform,
                                                             table: PageTable) -> None:
    code = asm(
        "0fa2",                # cpuid                    ; #UD in enclave mode
        "48c7c663000000",      # mov rsi, 99
        "48c70701000000",      # mov qword [rdi], 1
    ) + EEXIT_TO_RCX
    enclave = standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=DATA, rsi=5)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.UD, True)
    assert (regs.rax, regs.rip) == (3, regs.rcx)
    ssa = gprsgx(plat, enclave)
    assert (ssa.rip, ssa.rsi, ssa.rdi, ssa.rax) == (CODE, 5, DATA, 0)
    assert ssa.exitinfo == exitinfo(Vector.UD, EXITINFO_TYPE_HARDWARE)
    assert plat.epc_read(enclave.epc(DATA), 8) == bytes(8)


@pytest.mark.parametrize(("code", "reason", "vector", "length"), [
    ("0f05", ExitReason.SYSCALL, 0, 2),    # syscall
    ("0f34", ExitReason.SYSENTER, 0, 2),   # sysenter
    ("cd80", ExitReason.INT, 0x80, 2),     # int 0x80
    ("f4", ExitReason.HLT, 0, 1),          # hlt
])
def test_system_instructions_outside_exit_to_the_os(plat: Platform, table: PageTable,
                                                    code: str, reason: ExitReason,
                                                    vector: int, length: int) -> None:
    got, regs, got_vector = run_outside(plat, table, asm("90", code, "90"), rflags=0x202)
    assert (got, got_vector) == (reason, vector)
    assert regs.rip == OUTSIDE + 1 + length
    if reason is ExitReason.SYSCALL:
        assert (regs.rcx, regs.r11) == (OUTSIDE + 3, 0x202)


@pytest.mark.parametrize(("code", "vector", "kind", "rip"), [
    ("0f05", Vector.UD, EXITINFO_TYPE_HARDWARE, 0),    # syscall: illegal in an enclave
    ("0f34", Vector.UD, EXITINFO_TYPE_HARDWARE, 0),    # sysenter
    ("cd80", Vector.UD, EXITINFO_TYPE_HARDWARE, 0),    # int 0x80
    ("0f0b", Vector.UD, EXITINFO_TYPE_HARDWARE, 0),    # ud2
    ("0f01cf", Vector.UD, EXITINFO_TYPE_HARDWARE, 0),  # encls
    ("cc", Vector.BP, EXITINFO_TYPE_SOFTWARE, 1),      # int3: a trap, RIP past it
    ("f4", Vector.GP, EXITINFO_TYPE_HARDWARE, 0),      # hlt at ring 3
])
def test_instructions_illegal_in_an_enclave_cause_an_aex(plat: Platform, table: PageTable,
                                                         code: str, vector: int, kind: int,
                                                         rip: int) -> None:
    enclave = standard_enclave(plat, table, asm(code) + EEXIT_TO_RCX)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, vector, True)
    ssa = gprsgx(plat, enclave)
    assert ssa.rip == CODE + rip
    assert ssa.exitinfo == exitinfo(vector, kind)
    if vector == Vector.GP:
        assert (exinfo(plat, enclave).maddr, exinfo(plat, enclave).errcd) == (0, 0)


def test_int3_outside_is_a_breakpoint_trap(plat: Platform, table: PageTable) -> None:
    plat.code(table, OUTSIDE, asm("cc", "90"))
    regs = Registers(rip=OUTSIDE)
    with plat.vcpu() as vcpu:
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 2)
    assert (out.reason, out.vector, regs.rip) == (ExitReason.EXCEPTION, Vector.BP, OUTSIDE + 1)


def test_other_exceptions_are_reported_at_the_faulting_instruction(
        plat: Platform, table: PageTable) -> None:
    reason, regs, vector = run_outside(plat, table, asm(
        "31c9",    # xor ecx, ecx
        "48f7f1",  # div rcx                ; #DE
    ))
    assert (reason, vector, regs.rip) == (ExitReason.EXCEPTION, Vector.DE, OUTSIDE + 2)


def test_encls_needs_ring_0(plat: Platform, table: PageTable) -> None:
    epc = plat.alloc_epc()
    code = asm(
        "b80a000000",                      # mov eax, 0xa          ; EPA
        "48c7c303000000",                  # mov rbx, 3            ; PT_VA
        "48b9", epc.to_bytes(8, "little").hex(),  # movabs rcx, EPC page
        "0f01cf",                          # encls
    )
    reason, regs, vector = run_outside(plat, table, code)
    assert (reason, vector, regs.rip) == (ExitReason.EXCEPTION, Vector.UD, OUTSIDE + 22)
    kernel = Vcpu(plat.processor, 0, plat.regions, plat.vm.cpuid, cpl=0)
    reason, regs, _ = run_outside(plat, table, code, vcpu=kernel, rflags=0x2 | RFLAGS_ZF)
    assert reason is ExitReason.STOP
    assert regs.rax == 0xA and regs.rflags & RFLAGS_ZF  # EPA reports no status
    idx = plat.processor.epc.index_of(epc)
    assert idx is not None and plat.processor.epcm.entry(idx).page_type == PageType.PT_VA


def test_enclu_needs_ring_3(plat: Platform, table: PageTable) -> None:
    standard_enclave(plat, table, EEXIT_TO_RCX)
    kernel = Vcpu(plat.processor, 0, plat.regions, plat.vm.cpuid, cpl=0)
    with kernel:
        out, _ = ecall(kernel, table)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.UD, False)


def test_enclave_enclu_leaves_go_to_the_processor(plat: Platform, table: PageTable) -> None:
    """EGETKEY with an invalid KEYNAME returns SGX_INVALID_KEYNAME in RAX with ZF set."""
    code = asm(
        "48c7c3", DATA.to_bytes(4, "little").hex(),            # mov rbx, DATA  ; KEYREQUEST
        "66c7033412",                                          # mov word [rbx], 0x1234
        "4989ce",                                              # mov r14, rcx
        "48c7c1", (DATA + 0x200).to_bytes(4, "little").hex(),  # mov rcx, DATA + 0x200
        "b801000000",                                          # mov eax, 1     ; EGETKEY
        "0f01d7",                                              # enclu
        "4989c0",                                              # mov r8, rax
        "9c",                                                  # pushfq
        "415f",                                                # pop r15
        "4c89f1",                                              # mov rcx, r14
    ) + EEXIT_TO_RCX
    standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table)
    assert out.reason is ExitReason.STOP
    assert regs.r8 == SgxError.SGX_INVALID_KEYNAME and regs.r15 & RFLAGS_ZF
