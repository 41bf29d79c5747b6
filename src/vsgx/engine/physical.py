"""The guest-physical address space one engine sees: the VM's RAM and EPC, shared zero-copy.

Every RAM region and every EPC section is mapped into the Unicorn instance at its guest-physical
address with ``uc_mem_map_ptr`` on the very ``mmap`` the platform allocated, so guest code, the
processor model and every other engine read and write the same bytes (ARCHITECTURE decision 2).

Two special physical ranges sit above all guest memory:

* the **abort page** (SDM Vol. 3D 38.5 "Access-control requirements"; Costan & Devadas, "Intel
  SGX Explained" 6.2.1): a non-enclave access that resolves to the EPC is redirected to this
  MMIO page, whose reads return all ones and whose writes are dropped;
* the **fault window**: a translation that must fault on a data access is pointed into this
  unmapped range at ``FAULT_WINDOW + linear address``, so the access itself reaches no memory
  and Unicorn reports the exact physical address, from which the engine recovers the faulting
  linear address (CR2) to the byte.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

from vsgx.arch import PAGE_SIZE
from vsgx.cpu.epc import Epc
from vsgx.engine.native import Unicorn

ABORT_PAGE = 1 << 49
"""Guest-physical address of the abort page."""
FAULT_WINDOW = 1 << 50
"""Base of the unmapped fault window; it spans the 48-bit linear address space."""
LINEAR_MASK = (1 << 48) - 1


def _all_ones(_offset: int, size: int) -> int:
    return (1 << (8 * size)) - 1


def _drop(_offset: int, _size: int, _value: int) -> None:
    """Abort-page semantics: writes are ignored."""


def window_address(va: int) -> int:
    """Where a faulting data access to linear address ``va`` is sent."""
    return FAULT_WINDOW + (va & LINEAR_MASK)


def window_linear(pa: int) -> int | None:
    """The canonical linear address a fault-window physical address stands for (None when
    ``pa`` is not in the window)."""
    if pa < FAULT_WINDOW:
        return None
    va = pa - FAULT_WINDOW
    return va - (1 << 48) if va >> 47 & 1 else va


class PhysicalMemory:
    """RAM regions and EPC sections mapped into one :class:`Unicorn`, plus the abort page.

    :meth:`page` serves the engine's own reads of guest memory (instruction bytes); it sees
    RAM and EPC alike, as the processor does.
    """

    def __init__(self, uc: Unicorn, ram: Sequence[tuple[int, mmap.mmap]], epc: Epc) -> None:
        regions = [(base, memory) for base, memory in ram]
        regions += [(section.base, section.memory) for section in epc.sections]
        regions.sort(key=lambda r: r[0])
        for base, memory in regions:
            if base + len(memory) > ABORT_PAGE:
                raise ValueError(f"guest memory at {base:#x} reaches the engine's reserved "
                                 f"physical range at {ABORT_PAGE:#x}")
            uc.map_memory(base, memory)
        uc.map_mmio(ABORT_PAGE, PAGE_SIZE, _all_ones, _drop)
        self._regions = [(base, base + len(memory), memoryview(memory))
                         for base, memory in regions]
        self._epc = [(s.base, s.base + s.size) for s in epc.sections]

    def is_epc(self, pa: int) -> bool:
        return any(lo <= pa < hi for lo, hi in self._epc)

    def page(self, pa: int) -> memoryview | None:
        """The 4 KiB of guest memory at page ``pa`` (None where there is no memory)."""
        for lo, hi, view in self._regions:
            if lo <= pa < hi:
                return view[pa - lo : pa - lo + PAGE_SIZE]
        return None
