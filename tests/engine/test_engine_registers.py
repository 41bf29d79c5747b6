"""The register file a run starts from and ends with."""

from __future__ import annotations

import pytest

from vsgx.engine import Registers
from vsgx.engine.registers import RAX, RBX, RIP


def test_registers_default_to_zero_with_rflags_bit_1() -> None:
    regs = Registers(rax=1, r15=2, fs_base=3)
    assert (regs.rax, regs.r15, regs.fs_base, regs.rbx, regs.rflags) == (1, 2, 3, 0, 0x2)
    assert dict(regs.items())["r15"] == 2
    assert repr(regs) == "Registers(rax=0x1, r15=0x2, rflags=0x2, fs_base=0x3)"


def test_registers_are_64_bit() -> None:
    regs = Registers()
    regs.rcx = -1
    assert regs.rcx == (1 << 64) - 1


def test_copy_and_equality() -> None:
    regs = Registers(rip=0x1000)
    twin = regs.copy()
    assert twin == regs and twin is not regs
    twin.rip += 1
    assert twin != regs and regs.rip == 0x1000


def test_unknown_register_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown register 'eip'"):
        Registers(eip=1)


def test_named_registers_and_the_batch_buffer_are_the_same_storage() -> None:
    regs = Registers(rip=0x1000)
    assert regs.buffer[RIP] == 0x1000
    regs.buffer[RAX] = 7
    regs.rbx = (1 << 64) + 5
    assert (regs.rax, regs.buffer[RBX]) == (7, 5)
