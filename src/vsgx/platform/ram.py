"""Guest RAM: the ``-m`` memory at its guest-physical addresses, lazily committed.

QEMU maps the first ``below_4g_mem_size`` bytes of RAM at 0 and the rest at 4 GiB
(``pc_memory_init``); with ``-numa node,memdev=`` the RAM is the node backends back to back.
Each contiguous guest-physical range here is one anonymous ``MAP_NORESERVE`` mapping, so
untouched RAM costs nothing; ``prealloc=on`` on a node's backend touches its part at start.
"""

from __future__ import annotations

import bisect
import mmap

import numpy as np

from vsgx.arch import PAGE_SIZE
from vsgx.cpu.epc import MAP_NORESERVE
from vsgx.cpu.fault import pf
from vsgx.platform.config import MachineConfig
from vsgx.platform.layout import GuestLayout


class GuestRam:
    """Guest-physical RAM implementing :class:`vsgx.cpu.memory.Memory` (addresses outside RAM
    fault as #PF, the processor model's way of refusing an operand)."""

    def __init__(self, config: MachineConfig, layout: GuestLayout) -> None:
        self._bases: list[int] = []
        self._maps: list[mmap.mmap] = []
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
        for base, size in ((0, layout.below_4g_mem_size),
                           (layout.above_4g_mem_start, layout.above_4g_mem_size)):
            if size:
                self._bases.append(base)
                self._maps.append(mmap.mmap(-1, size, flags=flags))
        offset = 0
        for node in config.numa_nodes:
            if node.memdev is not None and node.memdev.prealloc:
                self._prealloc(layout, offset, node.size)
            offset += node.size

    def regions(self) -> list[tuple[int, mmap.mmap]]:
        """The contiguous guest-physical RAM ranges: (base address, host memory)."""
        return list(zip(self._bases, self._maps, strict=True))

    def _prealloc(self, layout: GuestLayout, offset: int, size: int) -> None:
        """Touch RAM offsets ``[offset, offset+size)`` (RAM offset, before the 4 GiB split)."""
        below = layout.below_4g_mem_size
        for start, stop in ((offset, min(offset + size, below)),
                            (max(offset, below), offset + size)):
            if start < stop:
                addr = start if start < below else start - below + layout.above_4g_mem_start
                k, off = self._locate(addr, stop - start)
                np.frombuffer(self._maps[k], dtype=np.uint8)[off : off + stop - start
                                                              : PAGE_SIZE] = 0

    def _locate(self, addr: int, size: int) -> tuple[int, int]:
        k = bisect.bisect_right(self._bases, addr) - 1
        if k >= 0:
            off = addr - self._bases[k]
            if size >= 0 and off + size <= len(self._maps[k]):
                return k, off
        raise pf(addr, "not guest RAM", epcm=False)

    def read(self, addr: int, size: int) -> bytes:
        k, off = self._locate(addr, size)
        return self._maps[k][off : off + size]

    def write(self, addr: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        k, off = self._locate(addr, len(view))
        self._maps[k][off : off + len(view)] = view

    def clear(self) -> None:
        """Give the memory back to the host: every byte reads as zero afterwards."""
        for m in self._maps:
            m.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Release the memory (:meth:`clear`; the mappings stay valid and read as zero)."""
        self.clear()
