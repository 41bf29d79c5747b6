"""EENTER, EEXIT, AEX and ERESUME in the execution engine (SDM Vol. 3D 40.3-40.4, 41.4).

Enclave code is hand-assembled; each byte string is commented with its assembly. The
standard enclave (``engine_harness.standard_enclave``) is entered from the untrusted stub
``mov eax, 2 ; enclu`` whose ENCLU is also the AEP.
"""

from __future__ import annotations

import struct

import pytest
from engine_harness import (
    AEP,
    CODE,
    DATA,
    EEXIT_TO_RCX,
    ENCLU,
    FS_MAGIC,
    GS_MAGIC,
    RO,
    RO_MAGIC,
    SECINFO_PAGE,
    SSA0,
    STUB,
    STUB_END,
    TCS0,
    UNTRUSTED,
    PageTable,
    Platform,
    ecall,
    eresume,
    exinfo,
    gprsgx,
    standard_enclave,
    tcs_state,
)

from vsgx.arch import AttributesFlags, Pfec, TcsFlags, Vector, exitinfo
from vsgx.arch.structs import EXITINFO_TYPE_HARDWARE
from vsgx.engine import ExitReason, Registers

PF_SGX_WRITE = int(Pfec.P | Pfec.W | Pfec.U | Pfec.SGX)  # 0x8007


def asm(*hex_parts: str) -> bytes:
    return bytes.fromhex("".join(hex_parts))


def test_eenter_eexit_pass_registers(plat: Platform, table: PageTable) -> None:
    code = asm(
        "4989c0",              # mov r8, rax            ; CSSA, 0
        "644c8b0c2500000000",  # mov r9, fs:[0]         ; FS base = BASE + OFSBASGX
        "654c8b142500000000",  # mov r10, gs:[0]        ; GS base = BASE + OGSBASGX
        "488d1437",            # lea rdx, [rdi + rsi]
    ) + EEXIT_TO_RCX
    enclave = standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rax=0x77, rdi=40, rsi=2, rbp=0x6789,
                          fs_base=0xAAAA_0000, gs_base=0xBBBB_0000, r8=0x99)
        assert out.reason is ExitReason.STOP
        assert not vcpu.in_enclave
    assert regs.rdx == 42
    assert (regs.r8, regs.r9, regs.r10) == (0, FS_MAGIC, GS_MAGIC)
    assert regs.rip == regs.rbx == STUB_END      # EEXIT jumped to RBX
    assert regs.rcx == AEP                       # EEXIT returns the AEP in RCX
    assert (regs.rsp, regs.rbp) == (UNTRUSTED + 0x3F00, 0x6789)
    assert (regs.fs_base, regs.gs_base) == (0xAAAA_0000, 0xBBBB_0000)
    ssa = gprsgx(plat, enclave)
    assert (ssa.ursp, ssa.urbp) == (UNTRUSTED + 0x3F00, 0x6789)  # saved by EENTER
    tcs = tcs_state(plat, enclave)
    assert (tcs.state, tcs.cssa, tcs.aep) == (0, 0, AEP)
    secs = plat.processor.epc.index_of(enclave.secs_pa)
    assert secs is not None and not plat.processor.enclaves[secs].inside


def test_enclave_reads_and_writes_untrusted_memory(plat: Platform, table: PageTable) -> None:
    code = asm(
        "488b07",      # mov rax, [rdi]
        "4883c001",    # add rax, 1
        "48894608",    # mov [rsi + 8], rax
    ) + EEXIT_TO_RCX
    standard_enclave(plat, table, code)
    plat.write_linear(table, UNTRUSTED, (41).to_bytes(8, "little"))
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=UNTRUSTED, rsi=UNTRUSTED)
    assert out.reason is ExitReason.STOP
    assert plat.read_linear(table, UNTRUSTED + 8, 8) == (42).to_bytes(8, "little")


def test_write_to_read_only_page_is_aex_with_pfec_sgx(plat: Platform,
                                                      table: PageTable) -> None:
    code = asm("48c7072a000000") + EEXIT_TO_RCX  # mov qword [rdi], 42 ; EEXIT
    enclave = standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=RO + 0x10, rsi=5, r12=12, rbp=0x55)
    assert out.reason is ExitReason.EXCEPTION and out.aex
    assert (out.vector, out.error_code) == (Vector.PF, PF_SGX_WRITE)
    assert out.address == RO                     # CR2 with bits 11:0 cleared (Table 40-1)
    # The synthetic state (Table 40-1).
    assert (regs.rax, regs.rbx, regs.rcx, regs.rip) == (3, TCS0, AEP, AEP)
    assert (regs.rdi, regs.rsi, regs.r12, regs.rdx) == (0, 0, 0, 0)
    assert (regs.rsp, regs.rbp) == (UNTRUSTED + 0x3F00, 0x55)
    # What the enclave sees in SSA[0].
    ssa = gprsgx(plat, enclave)
    assert ssa.rip == CODE and (ssa.rdi, ssa.rsi, ssa.r12) == (RO + 0x10, 5, 12)
    assert ssa.exitinfo == exitinfo(Vector.PF, EXITINFO_TYPE_HARDWARE)
    info = exinfo(plat, enclave)
    assert (info.maddr, info.errcd) == (RO + 0x10, PF_SGX_WRITE)
    assert tcs_state(plat, enclave).cssa == 1
    assert plat.epc_read(enclave.epc(RO), 8) == RO_MAGIC.to_bytes(8, "little")


HANDLER_CODE = asm(
    "4885c0",                  # +00 test rax, rax       ; RAX = CSSA on entry
    "7512",                    # +03 jnz handler (+0x17)
    "48c7072a000000",          # +05 mov qword [rdi], 42  ; the faulting write
    "4889cb",                  # +0c mov rbx, rcx
    "b804000000",              # +0f mov eax, 4
) + ENCLU + asm(               # +14 enclu (EEXIT)
    # handler: EMODPE(SECINFO RW) on the page EXINFO.MADDR names, then EEXIT
    "4989c1",                  # +17 mov r9, rax         ; report the CSSA seen
    "4889ca",                  # +1a mov rdx, rcx        ; return address
    "488b0c25", struct.pack("<I", SSA0 + 0x1000 - 184 - 16).hex(),  # mov rcx, [EXINFO.MADDR]
    "4881e100f0ffff",          # and rcx, -4096
    "48c7c3", struct.pack("<I", SECINFO_PAGE).hex(),  # mov rbx, SECINFO_PAGE
    "b806000000",              # mov eax, 6
) + ENCLU + asm(               # enclu (EMODPE)
    "4889d3",                  # mov rbx, rdx
    "b804000000",              # mov eax, 4
) + ENCLU                      # enclu (EEXIT)


def test_nested_eenter_runs_handler_then_eresume_completes(plat: Platform,
                                                           table: PageTable) -> None:
    enclave = standard_enclave(plat, table, HANDLER_CODE)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=RO + 0x10)
        assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.PF, True)
        assert tcs_state(plat, enclave).cssa == 1
        # The OS calls the enclave's exception handler: EENTER with CSSA = 1.
        out, handler = ecall(vcpu, table)
        assert out.reason is ExitReason.STOP and handler.r9 == 1
        assert tcs_state(plat, enclave).cssa == 1
        # Back at the AEP: ERESUME retries the write, which the EMODPE now allows.
        out = eresume(vcpu, table, regs)
    assert out.reason is ExitReason.STOP and regs.rip == STUB_END
    assert plat.epc_read(enclave.epc(RO + 0x10), 8) == (42).to_bytes(8, "little")
    assert tcs_state(plat, enclave).cssa == 0


def test_eresume_restores_state_after_a_fault_the_os_fixes(plat: Platform,
                                                          table: PageTable) -> None:
    code = asm(
        "48c7c60b000000",      # mov rsi, 11
        "48c7472a2a000000",    # mov qword [rdi + 0x2a], 42   ; DATA is not mapped yet
        "4883c601",            # add rsi, 1
    ) + EEXIT_TO_RCX
    enclave = standard_enclave(plat, table, code)
    table.unmap(DATA)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=DATA, r15=0xF15)
        assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.PF, True)
        assert out.error_code == int(Pfec.W | Pfec.U)  # not present, no PFEC.SGX
        assert out.address == DATA
        assert exinfo(plat, enclave).maddr == DATA + 0x2A
        table.map(DATA, enclave.pages[DATA], 3)         # the OS maps the page
        out = eresume(vcpu, table, regs)
    assert out.reason is ExitReason.STOP
    assert (regs.rsi, regs.r15, regs.rdi) == (12, 0xF15, DATA)
    assert plat.epc_read(enclave.epc(DATA + 0x2A), 8) == (42).to_bytes(8, "little")
    assert tcs_state(plat, enclave).cssa == 0


def test_cssa_equal_to_nssa_refuses_entry(plat: Platform, table: PageTable) -> None:
    code = asm("48c7072a000000") + EEXIT_TO_RCX  # mov qword [rdi], 42 (RO: faults)
    enclave = standard_enclave(plat, table, code, nssa=1)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=RO)
        assert out.aex and tcs_state(plat, enclave).cssa == 1
        out, regs = ecall(vcpu, table, rdi=DATA)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.GP, False)
    assert regs.rip == AEP                       # the faulting ENCLU


@pytest.mark.parametrize(("leaf", "rbx", "vector", "error_code", "address"), [
    (2, TCS0 + 8, Vector.GP, 0, 0),                          # TCS not 4 KiB aligned
    (2, DATA, Vector.PF, int(Pfec.P | Pfec.U | Pfec.SGX), DATA),  # not a PT_TCS page
    (2, 0x6660_0000, Vector.PF, int(Pfec.U), 0x6660_0000),   # TCS not mapped
    (3, TCS0, Vector.GP, 0, 0),                              # ERESUME with CSSA = 0
    (4, TCS0, Vector.GP, 0, 0),                              # EEXIT outside an enclave
    (0, TCS0, Vector.GP, 0, 0),                              # EREPORT outside an enclave
])
def test_enclu_faults_outside_enclave_mode(plat: Platform, table: PageTable, leaf: int,
                                           rbx: int, vector: int, error_code: int,
                                           address: int) -> None:
    standard_enclave(plat, table, EEXIT_TO_RCX)
    plat.code(table, 0x60_0000, ENCLU)
    with plat.vcpu() as vcpu:
        regs = Registers(rip=0x60_0000, rax=leaf, rbx=rbx, rcx=AEP)
        out = vcpu.run(table, regs, stop_at=0x60_0003)
    assert (out.reason, out.vector, out.error_code, out.address, out.aex) == (
        ExitReason.EXCEPTION, vector, error_code, address, False)
    assert regs.rip == 0x60_0000


def test_eenter_inside_an_enclave_is_gp_aex(plat: Platform, table: PageTable) -> None:
    code = asm("b802000000") + ENCLU  # mov eax, 2 ; enclu (EENTER, in enclave mode)
    enclave = standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.GP, True)
    assert gprsgx(plat, enclave).rip == CODE + 5
    assert (exinfo(plat, enclave).maddr, exinfo(plat, enclave).errcd) == (0, 0)


def test_eexit_to_a_non_canonical_address_is_gp_aex(plat: Platform, table: PageTable) -> None:
    code = asm("48bb0000000000800000", "b804000000") + ENCLU  # movabs rbx, 1<<47 ; EEXIT
    enclave = standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table)
    assert (out.vector, out.aex) == (Vector.GP, True)
    assert gprsgx(plat, enclave).rip == CODE + 15


def test_aex_notify_eresume_enters_at_oentry(plat: Platform, table: PageTable) -> None:
    """With TCS.FLAGS.AEXNOTIFY and GPRSGX.AEXNOTIFY set in the interrupted frame, ERESUME
    delivers the notification: entry at OENTRY with RAX = CSSA, CSSA kept (ERESUME,
    AEX-Notify branch)."""
    flags = int(AttributesFlags.MODE64BIT | AttributesFlags.DEBUG | AttributesFlags.AEXNOTIFY)
    code = asm(
        "4885c0",              # test rax, rax
        "7509",                # jnz notified (+0x0e)
        "48c7072a000000",      # mov qword [rdi], 42     ; RO: faults
        "ebfe",                # jmp $                  ; never reached
        "4989c1",              # notified: mov r9, rax
    ) + EEXIT_TO_RCX
    enclave = standard_enclave(plat, table, code, flags=flags,
                               tcs_flags=int(TcsFlags.AEXNOTIFY))
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=RO)
        assert out.aex
        gpr = enclave.epc(SSA0 + 0x1000 - 184)
        gidx = plat.processor.epc.index_of(gpr)
        assert gidx is not None
        plat.processor.epc.page(gidx)[(gpr & 0xFFF) + 167] = 1  # as the enclave would
        out = eresume(vcpu, table, regs)
    assert out.reason is ExitReason.STOP
    assert regs.r9 == 1 and regs.rbx == regs.rip == STUB_END
    assert tcs_state(plat, enclave).cssa == 1
    assert regs.rcx == AEP


# -- an EEXIT that lands on stop_at ends the run from the ENCLU hook -------------------------------

OUTSIDE = 0x60_0000
WRITE_DATA_THEN_EEXIT_TO_RDX = asm(
    "488937",                  # mov [rdi], rsi        ; an enclave-view translation of DATA
    "4889d3",                  # mov rbx, rdx          ; the EEXIT target
    "b804000000",              # mov eax, 4
) + ENCLU                      # enclu (EEXIT)


def test_after_an_eexit_at_stop_at_outside_code_sees_the_abort_page(
        plat: Platform, table: PageTable) -> None:
    """The run the EEXIT ended leaves no enclave translation behind: the next run, outside,
    reads the EPC page the enclave wrote as all ones and cannot execute the enclave's code
    page (SDM 38.5: abort-page semantics; EEXIT's "abort page semantics on the next
    destination")."""
    enclave = standard_enclave(plat, table, WRITE_DATA_THEN_EEXIT_TO_RDX)
    plat.code(table, OUTSIDE, asm(
        "488b07",      # mov rax, [rdi]        ; rdi = DATA
        "ffe6",        # jmp rsi               ; rsi = CODE
    ))
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=DATA, rsi=0x1234, rdx=STUB_END)
        assert out.reason is ExitReason.STOP and not vcpu.in_enclave
        assert regs.rip == STUB_END and regs.rcx == AEP
        regs = Registers(rip=OUTSIDE, rdi=DATA, rsi=CODE)
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 0x100)
    assert regs.rax == (1 << 64) - 1
    assert (out.reason, out.vector, out.aex, regs.rip) == (ExitReason.EXCEPTION, Vector.UD,
                                                           False, CODE)
    assert plat.epc_read(enclave.epc(DATA), 8) == (0x1234).to_bytes(8, "little")


def test_eexit_elsewhere_continues_outside_without_the_enclave_view(
        plat: Platform, table: PageTable) -> None:
    """An EEXIT to an address other than stop_at goes on executing there, outside enclave
    mode, in the same run."""
    standard_enclave(plat, table, WRITE_DATA_THEN_EEXIT_TO_RDX)
    plat.code(table, OUTSIDE, asm("488b07"))  # mov rax, [rdi]
    with plat.vcpu() as vcpu:
        regs = Registers(rip=STUB, rbx=TCS0, rcx=AEP, rsp=UNTRUSTED + 0x3F00, rdi=DATA,
                         rsi=0x1234, rdx=OUTSIDE)
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 3)
        assert out.reason is ExitReason.STOP and not vcpu.in_enclave
    assert (regs.rip, regs.rcx, regs.rax) == (OUTSIDE + 3, AEP, (1 << 64) - 1)


def test_runs_after_an_eexit_at_stop_at_start_from_the_callers_registers(
        plat: Platform, table: PageTable) -> None:
    """The state an EEXIT at stop_at leaves in the engine is the enclave's (FS/GS bases
    restored, RIP at the ENCLU): the next run starts from the registers it is given, ECALL or
    not."""
    code = asm(
        "644c8b0c2500000000",  # mov r9, fs:[0]         ; FS base = BASE + OFSBASGX
        "488d1437",            # lea rdx, [rdi + rsi]
    ) + EEXIT_TO_RCX
    standard_enclave(plat, table, code)
    plat.write_linear(table, UNTRUSTED, (0xF5F5).to_bytes(8, "little"))
    plat.code(table, OUTSIDE, asm("64488b042500000000"))  # mov rax, fs:[0]
    with plat.vcpu() as vcpu:
        for rdi in (1, 2, 3):
            out, regs = ecall(vcpu, table, rdi=rdi, rsi=40, fs_base=UNTRUSTED)
            assert out.reason is ExitReason.STOP
            assert (regs.rdx, regs.r9, regs.fs_base) == (rdi + 40, FS_MAGIC, UNTRUSTED)
        regs = Registers(rip=OUTSIDE, fs_base=UNTRUSTED)
        assert vcpu.run(table, regs, stop_at=OUTSIDE + 9).reason is ExitReason.STOP
    assert regs.rax == 0xF5F5
