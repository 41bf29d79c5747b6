"""Helpers for tests that drive a whole virtual machine."""

from __future__ import annotations

from vsgx.arch import (
    ATTRIBUTES,
    PAGEINFO,
    SECINFO,
    SECS,
    AttributesFlags,
    EnclsLeaf,
    PageType,
)
from vsgx.platform.machine import VirtualMachine


def ecreate(vm: VirtualMachine, epc_pa: int) -> None:
    """ECREATE a 2-page enclave at ``epc_pa`` with operands in guest RAM."""
    assert vm.processor is not None
    secs = SECS(size=0x2000, baseaddr=0x10_0000, ssaframesize=1,
                attributes=ATTRIBUTES(int(AttributesFlags.MODE64BIT), 3))
    vm.ram.write(0x1000, secs.to_bytes())
    vm.ram.write(0x100, SECINFO(int(PageType.PT_SECS) << 8).to_bytes())
    vm.ram.write(0x0, PAGEINFO(0, 0x1000, 0x100, 0).to_bytes())
    assert vm.processor.encls(EnclsLeaf.ECREATE, 0x0, epc_pa).status.ok
