"""The Enclave Page Cache: physical memory sections that only the SGX processor may touch
(SDM 34.5 "Enclave Page Cache").

Each section is one anonymous ``mmap`` reserved without swap accounting (``MAP_NORESERVE``): the
kernel commits a page only when it is first written, so untouched EPC costs no resident memory,
and ``prealloc`` touches every page up front.

A section may draw its pages from a :class:`EpcBacking` (a virtual EPC drawing on its host's EPC
pool, as ``/dev/sgx_vepc`` does in Linux ``arch/x86/kernel/cpu/sgx/virt.c``): the section then
keeps a bitmap of the pages it has committed and asks the backing for each page the first time
the processor touches it (``sgx_vepc_fault``), and gives them back when it is discarded.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from vsgx.arch import PAGE_SIZE

MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
"""Linux's flag value (x86-64 and arm64); CPython's ``mmap`` module does not export it."""


class EpcBacking(Protocol):
    """Where a section's pages come from. ``commit`` raises (any exception) when it cannot
    supply ``pages`` more pages; nothing is committed then."""

    def commit(self, section: EpcSection, pages: int) -> None: ...

    def release(self, section: EpcSection, pages: int) -> None: ...


@dataclass(eq=False)
class EpcSection:
    """One EPC section at guest-physical ``base``; ``node`` is its NUMA proximity domain.

    Without ``backing`` the section's pages simply exist; with it, :attr:`committed` records
    which pages have been drawn from the backing so far.
    """

    base: int
    size: int
    node: int = 0
    backing: EpcBacking | None = None
    memory: mmap.mmap = field(init=False, repr=False)
    committed: npt.NDArray[np.bool_] | None = field(init=False, repr=False)
    preallocated: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size % PAGE_SIZE or self.base % PAGE_SIZE:
            raise ValueError(f"EPC section base {self.base:#x} and size {self.size:#x} must be "
                             "positive multiples of 4 KiB")
        self.memory = mmap.mmap(-1, self.size,
                                flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
        # Transparent huge pages where the kernel offers them: far fewer first-touch faults
        # when enclaves are built, still nothing committed for untouched 2 MiB ranges.
        if hasattr(mmap, "MADV_HUGEPAGE"):
            self.memory.madvise(mmap.MADV_HUGEPAGE)
        self.committed = None if self.backing is None else np.zeros(self.pages, dtype=np.bool_)

    @property
    def pages(self) -> int:
        return self.size // PAGE_SIZE

    @property
    def committed_pages(self) -> int:
        """Pages drawn from the backing (all of them when there is no backing)."""
        return self.pages if self.committed is None else int(np.count_nonzero(self.committed))

    def touch(self, local: npt.NDArray[np.int64]) -> None:
        """Commit the pages ``local`` (indices within this section) if they are not yet."""
        if self.committed is None:
            return
        fresh = np.unique(local[~self.committed[local]])
        if fresh.size:
            assert self.backing is not None
            self.backing.commit(self, int(fresh.size))
            self.committed[fresh] = True

    def touch_one(self, local: int) -> None:
        """:meth:`touch` for one page, without array overhead on the common path."""
        if self.committed is not None and not self.committed[local]:
            assert self.backing is not None
            self.backing.commit(self, 1)
            self.committed[local] = True

    def discard(self) -> None:
        """Drop every page's contents (they read as zero again). A preallocated section keeps
        its pages (QEMU's ``SGX_IOC_VEPC_REMOVE_ALL`` empties them but they stay mapped);
        otherwise the memory goes back to the host and the pages to the backing."""
        if self.preallocated:
            np.frombuffer(self.memory, dtype=np.uint8)[:] = 0
            return
        self.memory.madvise(mmap.MADV_DONTNEED)
        if self.committed is not None:
            assert self.backing is not None
            count = int(np.count_nonzero(self.committed))
            self.committed[:] = False
            if count:
                self.backing.release(self, count)

    def prealloc(self) -> None:
        """Commit every page now (``prealloc=on``): draw them all from the backing, then write
        one byte per page so the host really commits the memory."""
        self.touch(np.arange(self.pages, dtype=np.int64))
        view = np.frombuffer(self.memory, dtype=np.uint8)
        view[::PAGE_SIZE] = 0
        self.preallocated = True

    def close(self) -> None:
        """Give every page back to the backing and the memory back to the host. The mapping
        itself goes when the last view of it (an :class:`Epc`'s) is dropped."""
        self.preallocated = False
        self.discard()


class Epc:
    """All EPC sections of a processor, with one global page index across them.

    Page ``i`` of the EPC is the ``i``-th 4 KiB page counting through the sections in order; the
    ``vsgx isa`` runner names pages by that index.
    """

    def __init__(self, sections: list[EpcSection]) -> None:
        if not sections:
            raise ValueError("an SGX processor needs at least one EPC section")
        ordered = sorted(sections, key=lambda s: s.base)
        for a, b in itertools.pairwise(ordered):
            if a.base + a.size > b.base:
                raise ValueError(f"EPC sections at {a.base:#x} and {b.base:#x} overlap")
        self.sections = list(sections)
        self._bases = [s.base for s in ordered]
        self._ordered = ordered
        self._first_index: dict[int, int] = {}
        total = 0
        for s in self.sections:
            self._first_index[id(s)] = total
            total += s.pages
        self.pages = total
        self._index_starts = [self._first_index[id(s)] for s in self.sections]
        self._section_views = [memoryview(s.memory) for s in self.sections]

    @property
    def size(self) -> int:
        return self.pages * PAGE_SIZE

    def index_of(self, pa: int) -> int | None:
        """Global page index of the EPC page containing physical address ``pa``, or None."""
        i = bisect.bisect_right(self._bases, pa) - 1
        if i < 0:
            return None
        s = self._ordered[i]
        off = pa - s.base
        if off >= s.size:
            return None
        return self._first_index[id(s)] + off // PAGE_SIZE

    def address_of(self, index: int) -> int:
        """Physical address of global page ``index``."""
        k = self._locate(index)
        return self.sections[k].base + (index - self._index_starts[k]) * PAGE_SIZE

    def _locate(self, index: int) -> int:
        if not 0 <= index < self.pages:
            raise IndexError(f"EPC page {index} does not exist (the EPC has {self.pages} pages)")
        return bisect.bisect_right(self._index_starts, index) - 1

    def page(self, index: int) -> memoryview:
        """A writable view of the 4 KiB behind EPC page ``index``."""
        k = self._locate(index)
        local = index - self._index_starts[k]
        self.sections[k].touch_one(local)
        off = local * PAGE_SIZE
        return self._section_views[k][off : off + PAGE_SIZE]

    def pages_at(self, indices: npt.NDArray[np.int64]) -> list[memoryview]:
        """:meth:`page` for many pages at once (each index must exist)."""
        starts = np.asarray(self._index_starts, dtype=np.int64)
        k = np.searchsorted(starts, indices, side="right") - 1
        local = indices - starts[k]
        for section_no in np.unique(k).tolist():
            self.sections[section_no].touch(local[k == section_no])
        offsets = (local * PAGE_SIZE).tolist()
        views = self._section_views
        return [views[s][off : off + PAGE_SIZE]
                for s, off in zip(k.tolist(), offsets, strict=True)]

    def indices_of(self, pas: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`index_of` for page-aligned addresses: -1 where not EPC."""
        bases = np.asarray(self._bases, dtype=np.uint64)
        k = np.searchsorted(bases, pas, side="right").astype(np.int64) - 1
        out = np.full(pas.shape, -1, dtype=np.int64)
        inside = k >= 0
        ordered_sizes = np.asarray([s.size for s in self._ordered], dtype=np.uint64)
        firsts = np.asarray([self._first_index[id(s)] for s in self._ordered], dtype=np.int64)
        kk = k[inside]
        offsets = pas[inside] - bases[kk]
        ok = offsets < ordered_sizes[kk]
        idx = np.full(kk.shape, -1, dtype=np.int64)
        idx[ok] = firsts[kk[ok]] + (offsets[ok] // np.uint64(PAGE_SIZE)).astype(np.int64)
        out[inside] = idx
        return out

    def write_pages(self, indices: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]) -> None:
        """Copy ``data`` (one 4 KiB row per index) into the EPC pages ``indices``."""
        starts = np.asarray(self._index_starts, dtype=np.int64)
        k = np.searchsorted(starts, indices, side="right") - 1
        for section_no in np.unique(k).tolist():
            rows = k == section_no
            section = self.sections[section_no]
            pages = np.frombuffer(section.memory, dtype=np.uint8).reshape(-1, PAGE_SIZE)
            local = indices[rows] - starts[section_no]
            section.touch(local)
            src = data[rows]
            # Runs of consecutive pages (the usual case) are plain block copies.
            breaks = np.flatnonzero(np.diff(local) != 1) + 1
            for run_start, run_stop in zip(np.r_[0, breaks].tolist(),
                                           np.r_[breaks, local.size].tolist(), strict=True):
                first = int(local[run_start])
                pages[first : first + run_stop - run_start] = src[run_start:run_stop]

    def node_of(self, index: int) -> int:
        return self.sections[self._locate(index)].node

    def wipe(self, index: int) -> None:
        self.page(index)[:] = bytes(PAGE_SIZE)
