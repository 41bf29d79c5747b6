"""The guest kernel's physical memory: a page allocator over guest RAM (the part of Linux's
buddy allocator this model needs: single zeroed pages, ``alloc_page(GFP_KERNEL |
__GFP_ZERO)`` and ``__free_page``) and physical reads and writes.

The allocator hands out RAM above :data:`KERNEL_RESERVED`: the first MiB (real-mode area,
BIOS data, option ROMs) and the kernel image with its early allocations stay the kernel's, as
in a booted Linux. Pages are handed out lowest address first, freed pages are reused first.

Physical accesses follow the platform: RAM is read and written; an EPC page read outside
enclave mode returns all ones and writes to it are dropped (SDM 38.5 "abort-page
semantics"), which is what the kernel sees when it touches a user mapping of an enclave.
"""

from __future__ import annotations

import bisect
import mmap
import threading
from collections.abc import Sequence
from typing import Protocol

from vsgx.arch import PAGE_SIZE
from vsgx.guest.uapi import Errno, syscall_error

KERNEL_RESERVED = 16 << 20
"""Guest-physical memory below this belongs to the kernel (1 MiB of legacy area plus the
kernel image and early allocations) and is never handed out."""

_ZERO_PAGE = bytes(PAGE_SIZE)


def allocatable(ram: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (start, end) page ranges the allocator hands out of RAM regions (base, size):
    each region above :data:`KERNEL_RESERVED`, whole pages only."""
    ranges = []
    for base, size in ram:
        start, end = max(base, KERNEL_RESERVED), base + size // PAGE_SIZE * PAGE_SIZE
        if start < end:
            ranges.append((start, end))
    return ranges


class GuestRamView(Protocol):
    """Guest RAM as the platform provides it (:class:`vsgx.platform.ram.GuestRam`)."""

    def regions(self) -> list[tuple[int, mmap.mmap]]: ...

    def read(self, addr: int, size: int) -> bytes: ...

    def write(self, addr: int, data: bytes | memoryview) -> None: ...


class PhysicalMemory:
    """Guest-physical memory as the kernel manages it: free RAM pages and physical access.

    ``epc`` are the (start, size) ranges the kernel knows to be EPC (its EPC sections).
    """

    def __init__(self, ram: GuestRamView, epc: Sequence[tuple[int, int]]) -> None:
        self._ram = ram
        self._epc = sorted(epc)
        self._epc_starts = [start for start, _ in self._epc]
        self._lock = threading.Lock()
        self._recycled: list[int] = []
        self._untouched = [[start, end] for start, end in allocatable(
            [(base, len(memory)) for base, memory in ram.regions()])]
        """[next never-allocated page, end] per region."""
        self.total_pages = sum((end - start) // PAGE_SIZE for start, end in self._untouched)
        self._free = self.total_pages

    @property
    def nr_free_pages(self) -> int:
        """Free RAM pages (``nr_free_pages()``)."""
        return self._free

    def alloc_page(self) -> int:
        """A zero-filled free page's guest-physical address; ENOMEM when RAM is exhausted."""
        with self._lock:
            if self._recycled:
                pa = self._recycled.pop()
            else:
                region = next((r for r in self._untouched if r[0] < r[1]), None)
                if region is None:
                    raise syscall_error(Errno.ENOMEM)
                pa = region[0]
                region[0] += PAGE_SIZE
            self._free -= 1
        self._ram.write(pa, _ZERO_PAGE)
        return pa

    def free_page(self, pa: int) -> None:
        """Give the page at ``pa`` back (``__free_page``)."""
        with self._lock:
            self._recycled.append(pa)
            self._free += 1

    def allocator_state(self) -> tuple[list[tuple[int, int]], list[int]]:
        """What a migration carries of the allocator: per region (next never-allocated
        page, end), and the freed pages in reuse order (the last is reused first)."""
        with self._lock:
            return [(start, end) for start, end in self._untouched], list(self._recycled)

    def restore_allocator(self, untouched: Sequence[tuple[int, int]],
                          recycled: Sequence[int]) -> None:
        """Take over a migrated allocator's state (checked against :func:`allocatable` of
        the same RAM by the caller): the pages it had handed out stay in use."""
        with self._lock:
            self._untouched = [[start, end] for start, end in untouched]
            self._recycled = list(recycled)
            self._free = len(self._recycled) + sum((end - start) // PAGE_SIZE
                                                   for start, end in self._untouched)

    def is_epc(self, pa: int) -> bool:
        """Whether ``pa`` lies in one of the kernel's EPC sections."""
        i = bisect.bisect_right(self._epc_starts, pa) - 1
        return i >= 0 and pa < self._epc[i][0] + self._epc[i][1]

    def kmap(self, pa: int) -> memoryview:
        """The RAM page at ``pa`` as a writable view (``kmap``/``page_address``): valid as
        long as the page stays allocated. EPC has no such view (EFAULT)."""
        if self.is_epc(pa):
            raise syscall_error(Errno.EFAULT)
        for base, memory in self._ram.regions():
            if base <= pa < base + len(memory):
                return memoryview(memory)[pa - base:pa - base + PAGE_SIZE]
        raise syscall_error(Errno.EFAULT)

    def read(self, pa: int, size: int) -> bytes:
        """``size`` bytes at ``pa`` (within one page): RAM, or all ones for EPC."""
        if self.is_epc(pa):
            return b"\xff" * size
        return self._ram.read(pa, size)

    def write(self, pa: int, data: bytes) -> None:
        """Store ``data`` at ``pa`` (within one page); dropped for EPC."""
        if not self.is_epc(pa):
            self._ram.write(pa, data)
