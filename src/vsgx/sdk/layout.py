"""Laying an enclave out in its ELRANGE: which pages exist, at which offsets, with which
SECINFO, which are measured, and what the trusted runtime is told about them.

From the ELF's segments and the configuration (offsets from the enclave base)::

    0                 image: the PT_LOAD segments where they were linked (R, RX, RW)
    + guard           heap (RW)
    per thread i:     guard, stack (RW), guard, TCS, SSA frames (RW), thread data (RW),
                      guard, exception stack (RW)
    + guard           dynamic range (SGX2: nothing added; EAUG on first touch)
    ... up to SIZE    a power of two (SDM 38.7: SECS.SIZE)

Guard pages are never added, so touching one faults. Every added page is measured (EADD and
all sixteen EEXTENDs), so the MRENCLAVE covers the initial heap and stacks as well as the code.
Each TCS (SDM 38.8) points OSSA at its SSA frames, OENTRY at ``enclave_entry`` and
OFSBASE/OGSBASE at its thread data page, which the loader fills with the layout words of
``runtime/include/vsgx/abi.h`` (``VSGX_TD_*``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vsgx.arch import PAGE_SIZE, TCS
from vsgx.guest.uapi import (
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    SGX_SECINFO_R,
    SGX_SECINFO_REG,
    SGX_SECINFO_TCS,
    SGX_SECINFO_W,
    SGX_SECINFO_X,
)
from vsgx.sdk.config import EnclaveConfig
from vsgx.sdk.elf import MAX_ELRANGE, EnclaveElf, ImageError

GUARD = PAGE_SIZE
MIN_SIZE = 2 * PAGE_SIZE
_TD_WORDS = struct.Struct("<15Q")
"""The layout words at the start of a thread data page, VSGX_TD_STACK_TOP..VSGX_TD_DYNAMIC_SIZE."""


@dataclass(frozen=True)
class Region:
    """A run of pages with one purpose and one protection."""

    name: str
    offset: int
    size: int
    secinfo: int
    """SECINFO flags of its pages (page type and R/W/X); 0 for the dynamic range."""
    prot: int
    """The protection the loader maps it with (the pages' maximum, as Linux allows)."""
    data: bytes
    """Initial contents (``size`` bytes) of added regions; empty for the dynamic range."""

    @property
    def added(self) -> bool:
        return self.secinfo != 0

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Thread:
    """Where one thread's structures sit."""

    index: int
    tcs: int
    ssa: int
    thread_data: int
    stack_top: int
    stack_limit: int
    exception_stack_top: int


@dataclass(frozen=True)
class Layout:
    """An enclave's complete layout."""

    size: int
    regions: tuple[Region, ...]
    threads: tuple[Thread, ...]
    heap: tuple[int, int]
    dynamic: tuple[int, int]
    ssa_frame_size: int
    """SSAFRAMESIZE in pages."""

    @property
    def added(self) -> tuple[Region, ...]:
        return tuple(r for r in self.regions if r.added)

    @property
    def page_count(self) -> int:
        return sum(r.size for r in self.added) // PAGE_SIZE


def _pages(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


def _prot(secinfo: int) -> int:
    prot = PROT_READ if secinfo & SGX_SECINFO_R else PROT_NONE
    if secinfo & SGX_SECINFO_W:
        prot |= PROT_WRITE
    if secinfo & SGX_SECINFO_X:
        prot |= PROT_EXEC
    return prot


def _image_regions(elf: EnclaveElf, where: str) -> list[Region]:
    """The image's pages, merged into regions of equal protection, with their contents."""
    flags: dict[int, int] = {}
    for seg in elf.segments:
        secinfo = SGX_SECINFO_REG
        secinfo |= SGX_SECINFO_R if seg.readable or seg.executable else 0
        secinfo |= SGX_SECINFO_W if seg.writable else 0
        secinfo |= SGX_SECINFO_X if seg.executable else 0
        first = seg.vaddr - seg.vaddr % PAGE_SIZE
        for page in range(first, _pages(seg.vaddr + seg.memsz), PAGE_SIZE):
            if flags.setdefault(page, secinfo) != secinfo:
                raise ImageError(f"{where}: segments with different protections share the "
                                 f"page at {page:#x}")
    end = max(flags) + PAGE_SIZE
    image = bytearray(end)
    for seg in elf.segments:
        image[seg.vaddr:seg.vaddr + len(seg.data)] = seg.data
    regions: list[Region] = []
    start = None
    for page in range(0, end + PAGE_SIZE, PAGE_SIZE):
        current = flags.get(page)
        if start is not None and (current != flags[start] or page == end):
            names = {SGX_SECINFO_X: "text", SGX_SECINFO_W: "data"}
            kind = flags[start] & (SGX_SECINFO_W | SGX_SECINFO_X)
            regions.append(Region(names.get(kind, "rodata"), start, page - start, flags[start],
                                  _prot(flags[start]), bytes(image[start:page])))
            start = None
        if start is None and current is not None and page < end:
            start = page
    return regions


def compute_layout(elf: EnclaveElf, config: EnclaveConfig, *,
                   where: str = "enclave") -> Layout:
    """The layout of ``elf`` under ``config``."""
    rw = SGX_SECINFO_REG | SGX_SECINFO_R | SGX_SECINFO_W
    prot_rw = PROT_READ | PROT_WRITE
    regions = _image_regions(elf, where)
    cursor = regions[-1].end + GUARD
    heap = (cursor, config.heap_size)
    if config.heap_size:
        regions.append(Region("heap", cursor, config.heap_size, rw, prot_rw,
                              bytes(config.heap_size)))
        cursor += config.heap_size + GUARD
    frame = config.ssa_frame_size * PAGE_SIZE
    placed = []
    for i in range(config.tcs_count):
        stack = cursor + GUARD
        tcs = stack + config.stack_size + GUARD
        ssa = tcs + PAGE_SIZE
        td = ssa + config.ssa_frames * frame
        xstack = td + PAGE_SIZE + GUARD
        cursor = xstack + config.exception_stack_size
        placed.append(Thread(i, tcs, ssa, td, tcs - GUARD, stack,
                             xstack + config.exception_stack_size))
    cursor += GUARD
    dynamic = (cursor, config.dynamic_size)
    end = cursor + config.dynamic_size
    size = MIN_SIZE
    while size < end:
        size <<= 1
    if size > MAX_ELRANGE:
        raise ImageError(f"{where}: the layout needs {end:#x} bytes of ELRANGE, more than "
                         f"the {MAX_ELRANGE:#x} vsgx supports")
    for t in placed:
        words = (t.stack_top, t.stack_limit, t.ssa, frame, config.ssa_frames, t.tcs, heap[0],
                 heap[1], size, t.index, config.tcs_count, t.exception_stack_top,
                 config.miscselect, dynamic[0], dynamic[1])
        tcs_page = TCS(ossa=t.ssa, nssa=config.ssa_frames, oentry=elf.entry, ofsbasgx=t.thread_data,
                       ogsbasgx=t.thread_data, fslimit=0xFFF, gslimit=0xFFF).to_bytes()
        td_page = _TD_WORDS.pack(*words).ljust(PAGE_SIZE, b"\0")
        regions += [
            Region(f"stack {t.index}", t.stack_limit, config.stack_size, rw, prot_rw,
                   bytes(config.stack_size)),
            Region(f"tcs {t.index}", t.tcs, PAGE_SIZE, SGX_SECINFO_TCS, prot_rw, tcs_page),
            Region(f"ssa {t.index}", t.ssa, config.ssa_frames * frame, rw, prot_rw,
                   bytes(config.ssa_frames * frame)),
            Region(f"thread data {t.index}", t.thread_data, PAGE_SIZE, rw, prot_rw, td_page),
            Region(f"exception stack {t.index}", t.exception_stack_top
                   - config.exception_stack_size, config.exception_stack_size, rw, prot_rw,
                   bytes(config.exception_stack_size)),
        ]
    if config.dynamic_size:
        regions.append(Region("dynamic", dynamic[0], dynamic[1], 0, prot_rw, b""))
    return Layout(size, tuple(regions), tuple(placed), heap, dynamic, config.ssa_frame_size)
