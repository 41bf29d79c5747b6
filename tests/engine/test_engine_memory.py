"""Address translation in the execution engine: page faults with exact addresses, abort-page
semantics outside enclave mode, and the EPCM rules in enclave mode (SDM Vol. 3D 38.3, 38.5)."""

from __future__ import annotations

import pytest
from engine_harness import (
    BUFFER,
    CODE,
    DATA,
    EEXIT_TO_RCX,
    RO,
    RW,
    STUB,
    PageTable,
    Platform,
    ecall,
    exinfo,
    gprsgx,
    standard_enclave,
)

from vsgx.arch import PAGE_SIZE, SECINFO, EnclsLeaf, PageType, Pfec, Vector, secinfo_flags
from vsgx.engine import PERM_R, EngineError, ExitReason, Registers

OUTSIDE = 0x60_0000


def asm(*hex_parts: str) -> bytes:
    return bytes.fromhex("".join(hex_parts))


def test_outside_reads_of_epc_return_all_ones_and_writes_are_dropped(
        plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, EEXIT_TO_RCX)
    plat.code(table, OUTSIDE, asm(
        "488b07",      # mov rax, [rdi]       ; rdi = DATA, an EPC page
        "488916",      # mov [rsi], rdx       ; rsi = DATA + 8
        "8b4f10",      # mov ecx, [rdi + 0x10]
    ))
    before = plat.epc_read(enclave.epc(DATA), PAGE_SIZE)
    with plat.vcpu() as vcpu:
        regs = Registers(rip=OUTSIDE, rdi=DATA, rsi=DATA + 8, rdx=0x5555)
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 9)
    assert out.reason is ExitReason.STOP
    assert regs.rax == (1 << 64) - 1 and regs.rcx == 0xFFFF_FFFF
    assert plat.epc_read(enclave.epc(DATA), PAGE_SIZE) == before


def test_outside_fetch_from_epc_executes_the_abort_page(plat: Platform,
                                                        table: PageTable) -> None:
    """FF FF is an undefined opcode: jumping into ELRANGE from outside is #UD (EEXIT's
    "abort page semantics on the next destination")."""
    standard_enclave(plat, table, EEXIT_TO_RCX)
    plat.code(table, OUTSIDE, asm("ffe7"))  # jmp rdi
    with plat.vcpu() as vcpu:
        regs = Registers(rip=OUTSIDE, rdi=CODE)
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 2)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.UD, False)
    assert regs.rip == CODE


def test_not_present_page_fault_reports_the_exact_address(plat: Platform,
                                                          table: PageTable) -> None:
    plat.code(table, OUTSIDE, asm("488b4723"))  # mov rax, [rdi + 0x23]
    with plat.vcpu() as vcpu:
        regs = Registers(rip=OUTSIDE, rdi=0x70_0100)
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 4)
        assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.PF, False)
        assert (out.error_code, out.address) == (int(Pfec.U), 0x70_0123)
        assert regs.rip == OUTSIDE
        pa = plat.alloc_ram()
        plat.write(pa + 0x123, (0xABCD).to_bytes(8, "little"))
        table.map(0x70_0000, pa, PERM_R)                     # the OS maps the page
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 4)
    assert out.reason is ExitReason.STOP and regs.rax == 0xABCD


def test_write_to_a_read_only_page_is_an_ordinary_protection_fault(
        plat: Platform, table: PageTable) -> None:
    plat.code(table, OUTSIDE, asm("488917"))  # mov [rdi], rdx
    table.map(0x70_0000, plat.alloc_ram(), PERM_R)
    with plat.vcpu() as vcpu:
        out = vcpu.run(table, Registers(rip=OUTSIDE, rdi=0x70_0ffc), stop_at=OUTSIDE + 3)
    assert (out.vector, out.error_code, out.address) == (
        Vector.PF, int(Pfec.P | Pfec.W | Pfec.U), 0x70_0ffc)


def test_fetch_from_a_non_executable_page_sets_pfec_i(plat: Platform,
                                                      table: PageTable) -> None:
    plat.code(table, OUTSIDE, asm("ffe7"))    # jmp rdi
    plat.code(table, 0x70_0000, asm("90"), perms=RW)
    with plat.vcpu() as vcpu:
        regs = Registers(rip=OUTSIDE, rdi=0x70_0010)
        out = vcpu.run(table, regs, stop_at=OUTSIDE + 2)
    assert (out.vector, out.error_code, out.address) == (
        Vector.PF, int(Pfec.P | Pfec.I | Pfec.U), 0x70_0010)
    assert regs.rip == 0x70_0010


def test_fetch_outside_elrange_in_enclave_mode_is_gp(plat: Platform,
                                                     table: PageTable) -> None:
    enclave = standard_enclave(plat, table, asm("ffe7"))  # jmp rdi
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=STUB)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.GP, True)
    assert gprsgx(plat, enclave).rip == STUB
    assert (exinfo(plat, enclave).maddr, exinfo(plat, enclave).errcd) == (0, 0)


def test_elrange_page_mapped_to_ordinary_memory_is_pf_sgx(plat: Platform,
                                                         table: PageTable) -> None:
    """Inside ELRANGE every access must reach an EPC page of the enclave at that address."""
    enclave = standard_enclave(plat, table, asm("488b07") + EEXIT_TO_RCX)  # mov rax, [rdi]
    table.map(DATA, plat.alloc_ram(), RW)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=DATA + 0x40)
    assert (out.vector, out.aex) == (Vector.PF, True)
    assert out.error_code == int(Pfec.P | Pfec.U | Pfec.SGX)
    assert exinfo(plat, enclave).maddr == DATA + 0x40


def test_elrange_page_mapped_at_the_wrong_address_is_pf_sgx(plat: Platform,
                                                           table: PageTable) -> None:
    """The EPCM records each page's linear address: an OS that swaps two enclave pages in
    the page tables gets #PF with PFEC.SGX, not the other page's contents."""
    enclave = standard_enclave(plat, table, asm("488b07") + EEXIT_TO_RCX)  # mov rax, [rdi]
    table.map(DATA, enclave.pages[BUFFER], RW)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=DATA)
    assert (out.vector, out.error_code & int(Pfec.SGX), out.aex) == (Vector.PF, Pfec.SGX, True)


def test_epc_outside_elrange_in_enclave_mode_is_pf_sgx(plat: Platform,
                                                       table: PageTable) -> None:
    enclave = standard_enclave(plat, table, asm("488b07") + EEXIT_TO_RCX)  # mov rax, [rdi]
    table.map(0x70_0000, enclave.pages[DATA], RW)   # an alias of an enclave page
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=0x70_0008)
    assert (out.vector, out.error_code, out.aex) == (
        Vector.PF, int(Pfec.P | Pfec.U | Pfec.SGX), True)


def test_read_only_page_reads_in_the_enclave(plat: Platform, table: PageTable) -> None:
    standard_enclave(plat, table, asm("488b17") + EEXIT_TO_RCX)  # mov rdx, [rdi]
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=RO)
    assert out.reason is ExitReason.STOP and regs.rdx == 0x0BAD_C0DE_0BAD_C0DE


def test_epcm_changes_by_encls_reach_the_next_entry(plat: Platform, table: PageTable) -> None:
    """EMODPR (ENCLS, the OS) removes W from DATA after an ECALL that wrote it: the next
    ECALL's write faults. The engine notices through the EPCM generation."""
    code = asm("48c7072a000000") + EEXIT_TO_RCX  # mov qword [rdi], 42
    enclave = standard_enclave(plat, table, code)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=DATA)
        assert out.reason is ExitReason.STOP
        secinfo = plat.alloc_ram()
        plat.write(secinfo, SECINFO(secinfo_flags(PageType.PT_REG, PERM_R)).to_bytes())
        plat.encls(EnclsLeaf.EMODPR, secinfo, enclave.pages[DATA])
        plat.encls(EnclsLeaf.ETRACK, 0, enclave.secs_pa)
        out, _ = ecall(vcpu, table, rdi=DATA)
    assert (out.vector, out.error_code, out.aex) == (Vector.PF, 0x8007, True)


def test_mapping_to_memory_that_does_not_exist_is_an_engine_error(plat: Platform,
                                                                 table: PageTable) -> None:
    plat.code(table, OUTSIDE, asm("488b07"))  # mov rax, [rdi]
    table.map(0x70_0000, 0x40_0000_0000, RW)    # beyond RAM and EPC
    with plat.vcpu() as vcpu, pytest.raises(EngineError, match="no memory"):
        vcpu.run(table, Registers(rip=OUTSIDE, rdi=0x70_0000), stop_at=OUTSIDE + 3)


def test_switching_address_spaces_forgets_translations(plat: Platform) -> None:
    first, second = PageTable(), PageTable()
    code = asm("488b07")  # mov rax, [rdi]
    for table, value in ((first, 1), (second, 2)):
        plat.code(table, OUTSIDE, code)
        pa = plat.alloc_ram()
        plat.write(pa, value.to_bytes(8, "little"))
        table.map(0x70_0000, pa, PERM_R)
    with plat.vcpu() as vcpu:
        for table, value in ((first, 1), (second, 2), (first, 1)):
            regs = Registers(rip=OUTSIDE, rdi=0x70_0000)
            assert vcpu.run(table, regs, stop_at=OUTSIDE + 3).reason is ExitReason.STOP
            assert regs.rax == value


def test_flush_tlb_after_remapping(plat: Platform, table: PageTable) -> None:
    plat.code(table, OUTSIDE, asm("488b07"))  # mov rax, [rdi]
    old, new = plat.alloc_ram(), plat.alloc_ram()
    plat.write(old, (1).to_bytes(8, "little"))
    plat.write(new, (2).to_bytes(8, "little"))
    table.map(0x70_0000, old, PERM_R)
    with plat.vcpu() as vcpu:
        regs = Registers(rip=OUTSIDE, rdi=0x70_0000)
        vcpu.run(table, regs, stop_at=OUTSIDE + 3)
        assert regs.rax == 1
        table.map(0x70_0000, new, PERM_R)
        vcpu.flush_tlb()
        regs = Registers(rip=OUTSIDE, rdi=0x70_0000)
        vcpu.run(table, regs, stop_at=OUTSIDE + 3)
    assert regs.rax == 2
