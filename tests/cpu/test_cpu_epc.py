"""EPC sections: global page indexing, lazily committed memory, prealloc and discard."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vsgx.arch import PAGE_SIZE
from vsgx.cpu import Epc, EpcSection


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_pages_are_indexed_across_sections_in_order() -> None:
    a = EpcSection(0x1_0000_0000, 4 * PAGE_SIZE, node=0)
    b = EpcSection(0x2_0000_0000, 2 * PAGE_SIZE, node=1)
    epc = Epc([a, b])
    assert epc.pages == 6
    assert epc.size == 6 * PAGE_SIZE
    assert [epc.address_of(i) for i in (0, 3, 4, 5)] == [
        0x1_0000_0000, 0x1_0000_3000, 0x2_0000_0000, 0x2_0000_1000]
    assert epc.index_of(0x2_0000_1FFF) == 5
    assert epc.index_of(0x1_0000_4000) is None
    assert epc.index_of(0x0FFF_FFFF) is None
    assert epc.node_of(4) == 1
    with pytest.raises(IndexError, match="EPC page 6 does not exist"):
        epc.page(6)


def test_page_views_are_backed_by_the_section_memory() -> None:
    epc = Epc([EpcSection(0x1_0000_0000, 2 * PAGE_SIZE)])
    epc.page(1)[:4] = b"abcd"
    assert bytes(epc.sections[0].memory[PAGE_SIZE : PAGE_SIZE + 4]) == b"abcd"
    epc.wipe(1)
    assert bytes(epc.page(1)) == bytes(PAGE_SIZE)


@pytest.mark.parametrize(("base", "size"), [(0x1000, 0), (0x1000, 100), (0x1001, PAGE_SIZE)])
def test_sections_must_be_page_granular(base: int, size: int) -> None:
    with pytest.raises(ValueError, match="positive multiples of 4 KiB"):
        EpcSection(base, size)


def test_overlapping_sections_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Epc([EpcSection(0x10000, 4 * PAGE_SIZE), EpcSection(0x12000, PAGE_SIZE)])


def test_an_epc_needs_a_section() -> None:
    with pytest.raises(ValueError, match="at least one EPC section"):
        Epc([])


def test_untouched_epc_costs_no_resident_memory() -> None:
    before = _rss()
    epc = Epc([EpcSection(0x1_0000_0000, 4 << 30)])
    epc.page(12345)[0] = 1
    assert _rss() - before < 32 << 20
    assert epc.pages == (4 << 30) // PAGE_SIZE


def test_prealloc_commits_and_discard_keeps_a_preallocated_section() -> None:
    section = EpcSection(0x1_0000_0000, 64 << 20)
    before = _rss()
    section.prealloc()
    assert _rss() - before >= 60 << 20
    section.memory[0:4] = b"live"
    section.discard()  # a reset empties a preallocated vEPC but keeps it committed
    assert bytes(section.memory[0:4]) == bytes(4)
    assert _rss() - before >= 60 << 20
    section.close()
    assert _rss() - before < 16 << 20


def test_discard_gives_touched_pages_back() -> None:
    section = EpcSection(0x1_0000_0000, 64 << 20)
    before = _rss()
    np.frombuffer(section.memory, dtype=np.uint8)[:: PAGE_SIZE] = 1
    assert _rss() - before >= 60 << 20
    section.discard()
    assert bytes(section.memory[0:1]) == bytes(1)
    assert _rss() - before < 16 << 20


class _Pool:
    def __init__(self, free: int) -> None:
        self.free = free

    def commit(self, section: EpcSection, pages: int) -> None:
        if pages > self.free:
            raise MemoryError("host EPC exhausted")
        self.free -= pages

    def release(self, section: EpcSection, pages: int) -> None:
        self.free += pages


def test_a_backed_section_draws_each_page_once_on_first_touch_and_returns_them() -> None:
    pool = _Pool(free=5)
    section = EpcSection(0x1_0000_0000, 8 * PAGE_SIZE, backing=pool)
    epc = Epc([section])
    epc.page(3)
    epc.page(3)
    assert (pool.free, section.committed_pages) == (4, 1)
    epc.write_pages(np.asarray([3, 4, 5], dtype=np.int64), np.zeros((3, PAGE_SIZE), np.uint8))
    epc.pages_at(np.asarray([0, 0], dtype=np.int64))
    assert (pool.free, section.committed_pages) == (1, 4)
    with pytest.raises(MemoryError):
        epc.pages_at(np.asarray([6, 7], dtype=np.int64))
    assert (pool.free, section.committed_pages) == (1, 4)  # nothing half-committed
    with pytest.raises(MemoryError):
        section.prealloc()
    section.discard()
    assert (pool.free, section.committed_pages) == (5, 0)


def test_vectorised_indexing_and_page_writes_match_the_scalar_ones() -> None:
    epc = Epc([EpcSection(0x2_0000_0000, 3 * PAGE_SIZE), EpcSection(0x1_0000_0000, 2 * PAGE_SIZE)])
    pas = np.asarray([0x1_0000_1000, 0x2_0000_0000, 0x5000, 0x1_0000_2000, 0x2_0000_2000],
                     dtype=np.uint64)
    assert epc.indices_of(pas).tolist() == [
        -1 if epc.index_of(int(pa)) is None else epc.index_of(int(pa)) for pa in pas.tolist()]
    idx = np.asarray([4, 0, 1, 3], dtype=np.int64)
    data = np.arange(4 * PAGE_SIZE, dtype=np.uint32).astype(np.uint8).reshape(4, PAGE_SIZE)
    epc.write_pages(idx, data)
    for row, i in enumerate(idx.tolist()):
        assert bytes(epc.page(i)) == data[row].tobytes()
    assert bytes(epc.page(2)) == bytes(PAGE_SIZE)
