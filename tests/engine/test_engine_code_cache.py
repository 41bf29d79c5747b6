"""Translated code follows the EPC: Unicorn caches translations by linear and physical address
and sees only the writes its own vCPU makes, so the engine must drop them when an EPC page's
contents change behind it. On silicon a freed EPC frame reused at the same linear address runs
its new code, and a debugger's EDBGWR breakpoint traps on the next execution."""

from __future__ import annotations

import numpy as np
from engine_harness import (
    BASE,
    CODE,
    EEXIT_TO_RCX,
    FS_PAGE,
    GS_PAGE,
    REG_RX,
    SIZE,
    SSA0,
    SSA1,
    TCS0,
    TCS1,
    Page,
    PageTable,
    Platform,
    ecall,
    standard_enclave,
    tcs_page,
)

from vsgx.arch import PAGE_SIZE, EnclsLeaf, Vector
from vsgx.cpu.epcm import Epcm
from vsgx.engine import ExitReason


def returns(value: int) -> bytes:
    """Enclave code: ``mov edx, value`` then EEXIT to RCX."""
    return bytes.fromhex("ba") + value.to_bytes(4, "little") + EEXIT_TO_RCX


def test_a_reused_epc_frame_runs_its_new_code(plat: Platform, table: PageTable) -> None:
    first = standard_enclave(plat, table, returns(7))
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table)
        assert (out.reason, regs.rdx) == (ExitReason.STOP, 7)
        # Tear the enclave down and build another one at the same ELRANGE in the same
        # frames (the allocator starts over), with other code at CODE.
        for pa in first.pages.values():
            plat.encls(EnclsLeaf.EREMOVE, 0, pa)
        plat.encls(EnclsLeaf.EREMOVE, 0, first.secs_pa)
        plat._next_epc = 0
        second = plat.build(table, BASE, SIZE, [
            tcs_page(TCS0 - BASE, ossa=SSA0 - BASE, oentry=CODE - BASE,
                     ofsbasgx=FS_PAGE - BASE, ogsbasgx=GS_PAGE - BASE),
            tcs_page(TCS1 - BASE, ossa=SSA1 - BASE, oentry=CODE - BASE,
                     ofsbasgx=FS_PAGE - BASE, ogsbasgx=GS_PAGE - BASE),
            Page(CODE - BASE, REG_RX, returns(9)),
            *(Page(SSA0 - BASE + i * PAGE_SIZE) for i in range(4)),
            Page(FS_PAGE - BASE),
            Page(GS_PAGE - BASE),
        ])
        assert second.pages[CODE] == first.pages[CODE]
        vcpu.flush_tlb()  # the OS changed the page tables
        out, regs = ecall(vcpu, table)
    assert (out.reason, regs.rdx) == (ExitReason.STOP, 9)


def test_an_edbgwr_breakpoint_in_code_that_ran_traps(plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, returns(7))
    with plat.vcpu() as vcpu:
        assert ecall(vcpu, table)[1].rdx == 7
        original = plat.epc_read(enclave.epc(CODE), 8)
        plat.encls(EnclsLeaf.EDBGWR, int.from_bytes(b"\xcc" + original[1:], "little"),
                   enclave.epc(CODE))
        out, regs = ecall(vcpu, table)
        assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.BP, True)
        # The debugger puts the byte back: the next entry runs the original code again.
        plat.encls(EnclsLeaf.EDBGWR, int.from_bytes(original, "little"), enclave.epc(CODE))
        out, regs = ecall(vcpu, table, tcs=TCS1)
    assert (out.reason, regs.rdx) == (ExitReason.STOP, 7)


def test_code_generation_moves_only_for_pages_code_may_have_come_from() -> None:
    epcm = Epcm(8)
    for i in range(4):
        epcm.set_valid(i, 0, 0)
    epcm.executable[1] = epcm.executable[3] = True
    epcm.invalidate(0)
    epcm.code_written(2)
    assert epcm.code_generation == 0
    epcm.code_written(1)
    assert (epcm.code_generation, epcm.executable[1]) == (1, False)
    epcm.code_written(1)  # nothing translated from it since
    assert epcm.code_generation == 1
    epcm.invalidate_many(np.array([2, 3]))
    assert epcm.code_generation == 2 and not epcm.executable.any()
