"""The Enclave Page Cache: physical memory sections that only the SGX processor may touch
(SDM 34.5 "Enclave Page Cache").

Each section is one anonymous ``mmap``: the kernel commits a page only when it is first written,
so untouched EPC costs no resident memory, and ``prealloc`` touches every page up front.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vsgx.arch import PAGE_SIZE


@dataclass(eq=False)
class EpcSection:
    """One EPC section at guest-physical ``base``; ``node`` is its NUMA proximity domain."""

    base: int
    size: int
    node: int = 0
    memory: mmap.mmap = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size % PAGE_SIZE or self.base % PAGE_SIZE:
            raise ValueError(f"EPC section base {self.base:#x} and size {self.size:#x} must be "
                             "positive multiples of 4 KiB")
        self.memory = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        # Transparent huge pages where the kernel offers them: far fewer first-touch faults
        # when enclaves are built, still nothing committed for untouched 2 MiB ranges.
        if hasattr(mmap, "MADV_HUGEPAGE"):
            self.memory.madvise(mmap.MADV_HUGEPAGE)

    @property
    def pages(self) -> int:
        return self.size // PAGE_SIZE

    def discard(self) -> None:
        """Drop every page's contents (they read as zero again) and give the memory back."""
        self.memory.madvise(mmap.MADV_DONTNEED)

    def prealloc(self) -> None:
        """Commit every page now (``prealloc=on``): write one byte per page."""
        view = memoryview(self.memory)
        for off in range(0, self.size, PAGE_SIZE):
            view[off] = 0
        view.release()


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

    def contains(self, pa: int) -> bool:
        return self.index_of(pa) is not None

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
        off = (index - self._index_starts[k]) * PAGE_SIZE
        return self._section_views[k][off : off + PAGE_SIZE]

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
