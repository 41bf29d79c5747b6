"""The x87 state across an AEX and ERESUME (SDM Vol. 3D 40.3-40.4: the AEX saves the XSAVE
legacy region in the FXSAVE layout, SDM Vol. 1 10.5.1 Table 10-2, and loads INIT; ERESUME's
XRSTOR loads it back), and ENCLU[EDECCSSA] (SDM Vol. 3D EDECCSSA).

Enclave code is hand-assembled; each byte string is commented with its assembly.
"""

from __future__ import annotations

import struct

from engine_harness import (
    CODE,
    DATA,
    EEXIT_TO_RCX,
    ENCLU,
    RO,
    SSA0,
    UNTRUSTED,
    Enclave,
    PageTable,
    Platform,
    ecall,
    eresume,
    gprsgx,
    standard_enclave,
    tcs_state,
)

from vsgx.arch import EncluLeaf, Vector
from vsgx.engine import ExitReason, Registers, Vcpu


def asm(*hex_parts: str) -> bytes:
    return bytes.fromhex("".join(hex_parts))


def f80(mantissa: int, exponent: int) -> bytes:
    """An 80-bit extended-precision value as FSTP m80 and FXSAVE store it."""
    return struct.pack("<QH", mantissa, exponent)


ONE = f80(0x8000_0000_0000_0000, 0x3FFF)
PI = f80(0xC90F_DAA2_2168_C235, 0x4000)
LG2 = f80(0x9A20_9A84_FBCF_F799, 0x3FFD)

X87_ACROSS_A_FAULT = asm(
    "dbe3",                # fninit
    "d9e8",                # fld1
    "d9eb",                # fldpi
    "d9ec",                # fldlg2                 ; ST0 = lg2, ST1 = pi, ST2 = 1
    "48c7072a000000",      # mov qword [rdi], 42    ; DATA is not mapped yet: AEX
    "db7f10",              # fstp tword [rdi + 0x10]
    "db7f20",              # fstp tword [rdi + 0x20]
    "db7f30",              # fstp tword [rdi + 0x30]
    "d97f40",              # fnstcw [rdi + 0x40]
    "dd7f42",              # fnstsw [rdi + 0x42]
) + EEXIT_TO_RCX
OUTSIDE = 0x60_0000
DIRTY_X87_OUTSIDE = asm(
    "d93e",                # fnstcw [rsi]
    "dd7e02",              # fnstsw [rsi + 2]
    "d9e8d9e8d9e8d9ee",    # fld1 ; fld1 ; fld1 ; fldz
)
XSTATE_BV = 512


def _ssa_page(plat: Platform, enclave: Enclave) -> memoryview:
    idx = plat.processor.epc.index_of(enclave.epc(SSA0))
    assert idx is not None
    return plat.processor.epc.page(idx)


def test_aex_saves_x87_in_fxsave_layout_and_eresume_restores_it(
        plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, X87_ACROSS_A_FAULT)
    table.unmap(DATA)
    plat.code(table, OUTSIDE, DIRTY_X87_OUTSIDE)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=DATA)
        assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.PF, True)
        xsave = bytes(_ssa_page(plat, enclave)[:520])
        # The untrusted side sees the synthetic INIT state (FCW 037FH, FSW 0) and may use
        # the x87 stack before ERESUME.
        outside = Registers(rip=OUTSIDE, rsi=UNTRUSTED)
        assert vcpu.run(table, outside, stop_at=OUTSIDE + len(DIRTY_X87_OUTSIDE)).reason is (
            ExitReason.STOP)
        assert plat.read_linear(table, UNTRUSTED, 4) == struct.pack("<HH", 0x037F, 0)
        table.map(DATA, enclave.pages[DATA], 3)
        out = eresume(vcpu, table, regs)
    assert out.reason is ExitReason.STOP
    fcw, fsw, ftw, fop, fip, fdp, mxcsr, mxcsr_mask = struct.unpack_from("<HHBxHQQII", xsave)
    assert (fcw, fsw & 0x3800, ftw) == (0x037F, 5 << 11, 0b1110_0000)  # TOP 5; R5-R7 valid
    assert fip == CODE + 6 and fop == 0 == fdp   # the FLDLG2 (Unicorn keeps no FOP)
    assert mxcsr_mask == 0xFFFF and not mxcsr & ~0xFFFF
    assert [xsave[32 + 16 * i : 48 + 16 * i] for i in range(3)] == [
        LG2 + bytes(6), PI + bytes(6), ONE + bytes(6)]          # ST0-ST2, in stack order
    assert struct.unpack_from("<Q", xsave, XSTATE_BV)[0] & 3 == 3
    stored = plat.epc_read(enclave.epc(DATA + 0x10), 0x34)
    assert [stored[0:10], stored[0x10:0x1A], stored[0x20:0x2A]] == [LG2, PI, ONE]
    assert struct.unpack_from("<HH", stored, 0x30) == (0x037F, 0)  # FCW; FSW with TOP 0


def test_eresume_loads_x87_init_when_xstate_bv_bit_0_is_clear(
        plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, X87_ACROSS_A_FAULT)
    table.unmap(DATA)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=DATA)
        assert out.aex
        ssa = _ssa_page(plat, enclave)
        bv = struct.unpack_from("<Q", ssa, XSTATE_BV)[0]
        struct.pack_into("<H", ssa, 0, 0x0C7F)          # an FCW XRSTOR must not load
        struct.pack_into("<Q", ssa, XSTATE_BV, bv & ~1)
        table.map(DATA, enclave.pages[DATA], 3)
        out = eresume(vcpu, table, regs)
    assert out.reason is ExitReason.STOP
    stored = plat.epc_read(enclave.epc(DATA + 0x10), 0x34)
    assert LG2 not in stored and PI not in stored and ONE not in stored
    fcw, fsw = struct.unpack_from("<HH", stored, 0x30)
    assert (fcw, fsw & 0x3800) == (0x037F, 3 << 11)  # INIT, then three pops from TOP 0


def test_eresume_with_reserved_mxcsr_bits_is_gp(plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, X87_ACROSS_A_FAULT)
    table.unmap(DATA)
    with plat.vcpu() as vcpu:
        out, regs = ecall(vcpu, table, rdi=DATA)
        assert out.aex
        struct.pack_into("<I", _ssa_page(plat, enclave), 24, 0x1_1F80)
        out = eresume(vcpu, table, regs)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.GP, False)
    assert tcs_state(plat, enclave).cssa == 1


# -- EDECCSSA ------------------------------------------------------------------------------------

EDECCSSA = asm(f"b8{int(EncluLeaf.EDECCSSA):02x}000000") + ENCLU  # mov eax, 9 ; enclu
HANDLER_DECREMENTS_THEN_FAULTS = asm(
    "4885c0",              # test rax, rax          ; RAX = CSSA at EENTER
    "7509",                # jnz handler (+0x0e)
    "48c7072a000000",      # mov qword [rdi], 42    ; RO: #PF, AEX into frame 0
    "ebfe",                # jmp $                  ; never reached
) + EDECCSSA + asm(        # handler: EDECCSSA      ; back to frame 0
    "0f0b",                # ud2                    ; AEX into frame 0 again
)
UD2_AT = CODE + 22


def test_edeccssa_moves_the_current_ssa_frame_back(plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, HANDLER_DECREMENTS_THEN_FAULTS)
    assert plat.vm.cpuid(0x12, 0)[0] >> 11 & 1  # the harness's CPU enumerates EDECCSSA
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table, rdi=RO)
        assert (out.vector, out.aex) == (Vector.PF, True)
        assert tcs_state(plat, enclave).cssa == 1
        out, _ = ecall(vcpu, table)                 # the handler, entered with CSSA = 1
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.UD, True)
    frame0 = gprsgx(plat, enclave, 0)
    assert (frame0.rip, frame0.rax) == (UD2_AT, int(EncluLeaf.EDECCSSA))  # RAX untouched
    assert gprsgx(plat, enclave, 1).rip == 0     # frame 1 never received an AEX
    assert tcs_state(plat, enclave).cssa == 1    # 1, EDECCSSA to 0, the AEX to 1


def test_edeccssa_with_cssa_0_is_gp(plat: Platform, table: PageTable) -> None:
    enclave = standard_enclave(plat, table, EDECCSSA + EEXIT_TO_RCX)
    with plat.vcpu() as vcpu:
        out, _ = ecall(vcpu, table)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.GP, True)
    assert gprsgx(plat, enclave, 0).rip == CODE + 5
    assert tcs_state(plat, enclave).cssa == 1


def test_edeccssa_is_gp_when_cpuid_does_not_enumerate_it(plat: Platform,
                                                         table: PageTable) -> None:
    def cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        eax, ebx, ecx, edx = plat.vm.cpuid(leaf, subleaf)
        return (eax & ~(1 << 11) if (leaf, subleaf) == (0x12, 0) else eax), ebx, ecx, edx

    enclave = standard_enclave(plat, table, HANDLER_DECREMENTS_THEN_FAULTS)
    with Vcpu(plat.processor, 0, plat.regions, cpuid) as vcpu:
        out, _ = ecall(vcpu, table, rdi=RO)
        assert out.aex
        out, _ = ecall(vcpu, table)
    assert (out.reason, out.vector, out.aex) == (ExitReason.EXCEPTION, Vector.GP, True)
    assert gprsgx(plat, enclave, 1).rip == UD2_AT - 3   # the ENCLU, saved in frame 1
    assert tcs_state(plat, enclave).cssa == 2
