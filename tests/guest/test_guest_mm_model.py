"""mmap/mprotect/munmap/write against a page-by-page model of Linux's rules (hypothesis state
machine): the errno of every call, VMAs that never overlap and are merged where Linux merges
them, every page's protection and contents as set, and RAM freed as pages go."""

from __future__ import annotations

import errno
import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sgx_user import machine

from vsgx.guest import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MMAP_BASE,
    PROT_SEM,
    PROT_WRITE,
    VmFlags,
)

P = 4096
W = 0x4000_0000_0000
"""The window the fixed mappings and hints fall in."""
WINDOW = 24
pages_st = st.integers(0, WINDOW - 1)
counts_st = st.integers(0, 6)
prots_st = st.integers(0, 7)
kinds_st = st.sampled_from(["fixed", "noreplace", "hint", "anywhere"])


class Page:
    def __init__(self, prot: int, shared: bool) -> None:
        self.prot = prot
        self.shared = shared
        self.content = 0
        self.touched = False


class MmModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.vm = machine()
        self.proc = self.vm.guest.spawn()
        self.free_at_start = self.vm.guest.memory.nr_free_pages
        self.pages: dict[int, Page] = {}  # page address -> model page

    def teardown(self) -> None:
        self.vm.close()

    def call(self, expected: int, fn: object, *args: int | bytes) -> object:
        assert callable(fn)
        try:
            result = fn(*args)
        except OSError as exc:
            assert exc.errno == expected, (fn, args, exc)
            return None
        assert expected == 0, (fn, args, result)
        return result

    def free(self, start: int, count: int) -> bool:
        return all(start + k * P not in self.pages for k in range(count))

    def top_down(self, count: int) -> int:
        top = MMAP_BASE
        while not self.free(top - count * P, count):
            top -= P
        return top - count * P

    @rule(page=pages_st, count=counts_st, prot=prots_st, kind=kinds_st, shared=st.booleans(),
          misalign=st.booleans())
    def mmap(self, page: int, count: int, prot: int, kind: str, shared: bool,
             misalign: bool) -> None:
        addr = W + page * P + (misalign and kind != "anywhere")
        flags = MAP_ANONYMOUS | (MAP_SHARED if shared else MAP_PRIVATE)
        flags |= {"fixed": MAP_FIXED, "noreplace": MAP_FIXED_NOREPLACE}.get(kind, 0)
        if kind == "anywhere":
            addr = 0
        aligned = addr & ~(P - 1)
        if count == 0:
            expected, where = errno.EINVAL, 0
        elif kind in ("fixed", "noreplace") and misalign:
            expected, where = errno.EINVAL, 0
        elif kind == "noreplace" and not self.free(aligned, count):
            expected, where = errno.EEXIST, 0
        elif kind in ("fixed", "noreplace") or (kind == "hint" and self.free(aligned, count)):
            expected, where = 0, aligned
        else:
            expected, where = 0, self.top_down(count)
        result = self.call(expected, self.proc.mmap, addr, count * P, prot, flags)
        if expected == 0:
            assert result == where
            for k in range(count):
                self.pages[where + k * P] = Page(prot, shared)

    @rule(page=pages_st, count=counts_st, prot=prots_st, misalign=st.booleans(),
          sem=st.booleans())
    def mprotect(self, page: int, count: int, prot: int, misalign: bool, sem: bool) -> None:
        addr = W + page * P + misalign
        if misalign:
            expected = errno.EINVAL
        elif count == 0:
            expected = 0
        elif addr not in self.pages:
            expected = errno.ENOMEM
        else:
            expected = 0
            for k in range(count):
                target = self.pages.get(addr + k * P)
                if target is None:
                    expected = errno.ENOMEM
                    break
                target.prot = prot
        self.call(expected, self.proc.mprotect, addr, count * P, prot | (PROT_SEM if sem else 0))

    @rule(page=pages_st, count=counts_st, misalign=st.booleans())
    def munmap(self, page: int, count: int, misalign: bool) -> None:
        addr = W + page * P + misalign
        expected = errno.EINVAL if misalign or count == 0 else 0
        self.call(expected, self.proc.munmap, addr, count * P)
        if expected == 0:
            for k in range(count):
                self.pages.pop(addr + k * P, None)

    @rule(data=st.data(), value=st.integers(1, 255))
    def write(self, data: st.DataObject, value: int) -> None:
        candidates = sorted(self.pages) or [W]
        addr = data.draw(st.sampled_from(candidates))
        target = self.pages.get(addr)
        writable = target is not None and (not target.shared or target.prot & PROT_WRITE)
        expected = 0 if writable else errno.EIO
        self.call(expected, self.proc.write_memory, addr + 100, bytes([value]))
        if target is not None and writable:
            target.content = value
            target.touched = True

    @invariant()
    def vmas_match_the_model(self) -> None:
        vmas = self.proc.mm.vmas()
        seen: dict[int, tuple[int, bool]] = {}
        for a, b in itertools.pairwise(vmas):
            assert a.end <= b.start
            mergeable = a.end == b.start and a.flags == b.flags
            assert not (mergeable and not a.flags & VmFlags.MAYSHARE), (a, b)
        for vma in vmas:
            assert vma.start < vma.end and vma.start % P == 0 and vma.end % P == 0
            for addr in range(vma.start, vma.end, P):
                seen[addr] = (vma.prot, bool(vma.flags & VmFlags.SHARED))
        assert seen == {a: (p.prot, p.shared) for a, p in self.pages.items()}

    @invariant()
    def contents_and_ram_match_the_model(self) -> None:
        for addr, page in self.pages.items():
            assert self.proc.read_memory(addr + 100, 1) == bytes([page.content])
        touched = sum(page.touched for page in self.pages.values())
        assert self.vm.guest.memory.nr_free_pages == self.free_at_start - touched


MmModel.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_mm_model = MmModel.TestCase
