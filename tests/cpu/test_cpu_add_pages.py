"""``add_pages`` is exactly the EADD + 16 x EEXTEND sequence, page by page: same EPCM, same EPC
contents, same MRENCLAVE, and the same fault at the same page when one is bad."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.arch import (
    ATTRIBUTES,
    EEXTEND_CHUNK,
    PAGE_SIZE,
    PAGEINFO,
    SECINFO,
    SECS,
    EnclsLeaf,
    PageType,
    secinfo_flags,
)
from vsgx.cpu import Epc, EpcSection, SgxFault, SgxProcessor, SparseMemory, add_pages
from vsgx.crypto import BootSecrets, PlatformSecrets

BASES = (0x1_0000_0000, 0x2_0000_0000)
SECTION_PAGES = 40  # 80 pages: a batch can pass the parallel-hashing threshold (64)
ENCLAVE_BASE = 0x40_0000
ENCLAVE_SIZE = 0x10_0000
SECS_PA = BASES[0]


def _platform() -> SgxProcessor:
    memory = SparseMemory()
    memory.map(0, 4 * PAGE_SIZE)
    epc = Epc([EpcSection(b, SECTION_PAGES * PAGE_SIZE, node=n) for n, b in enumerate(BASES)])
    cpu = SgxProcessor(epc, memory, platform=PlatformSecrets.from_seed(b"add"),
                       boot=BootSecrets.from_seed(b"add", 0))
    cpu.lps[0].msrs.wrmsr(0x3A, 1 | 1 << 17 | 1 << 18)
    secs = SECS(size=ENCLAVE_SIZE, baseaddr=ENCLAVE_BASE, ssaframesize=1,
                attributes=ATTRIBUTES(4, 3))
    memory.write(PAGE_SIZE, secs.to_bytes())
    memory.write(2 * PAGE_SIZE, SECINFO.of(PageType.PT_SECS).to_bytes())
    memory.write(0, PAGEINFO(0, PAGE_SIZE, 2 * PAGE_SIZE, 0).to_bytes())
    cpu.encls(EnclsLeaf.ECREATE, 0, SECS_PA)
    return cpu


def _leaf_by_leaf(cpu: SgxProcessor, pas: list[int], las: list[int], flags: int, data: bytes,
                  measure: bool) -> None:
    memory = cpu.memory
    assert isinstance(memory, SparseMemory)
    memory.write(2 * PAGE_SIZE, SECINFO(flags).to_bytes())
    for k, (pa, la) in enumerate(zip(pas, las, strict=True)):
        memory.write(PAGE_SIZE, data[k * PAGE_SIZE : (k + 1) * PAGE_SIZE])
        memory.write(0, PAGEINFO(la, PAGE_SIZE, 2 * PAGE_SIZE, SECS_PA).to_bytes())
        cpu.encls(EnclsLeaf.EADD, 0, pa)
        if measure:
            for off in range(0, PAGE_SIZE, EEXTEND_CHUNK):
                cpu.encls(EnclsLeaf.EEXTEND, SECS_PA, pa + off)


@dataclass
class Outcome:
    fault: tuple[int, int, int | None] | None
    flags: bytes
    owner: bytes
    linaddr: bytes
    epc: bytes
    mrenclave: bytes
    children: int


def _run(batched: bool, pas: list[int], las: list[int], flags: int, data: bytes,
         measure: bool) -> Outcome:
    cpu = _platform()
    fault = None
    try:
        if batched:
            add_pages(cpu, SECS_PA, pas, las, flags, data, measure)
        else:
            _leaf_by_leaf(cpu, pas, las, flags, data, measure)
    except SgxFault as exc:
        fault = (int(exc.vector), exc.error_code, exc.address)
    state = cpu.enclaves[0]
    return Outcome(fault, cpu.epcm.flags.tobytes(), cpu.epcm.owner.tobytes(),
                   cpu.epcm.linaddr.tobytes(),
                   b"".join(bytes(s.memory) for s in cpu.epc.sections),
                   state.builder.digest(), state.children)


_ALL_PAGES = [b + i * PAGE_SIZE for b in BASES for i in range(SECTION_PAGES)]


@st.composite
def _batches(draw: st.DrawFn) -> tuple[list[int], list[int], int, bytes, bool]:
    n = draw(st.integers(1, 10))
    pas = draw(st.lists(st.sampled_from(_ALL_PAGES[1:]), min_size=n, max_size=n, unique=True))
    if draw(st.booleans()):  # now and then a bad page: the SECS, a duplicate, non-EPC
        k = draw(st.integers(0, n - 1))
        pas[k] = draw(st.sampled_from([SECS_PA, pas[0], 0x3_0000_0000, pas[k] + 8]))
    slots = draw(st.lists(st.integers(0, ENCLAVE_SIZE // PAGE_SIZE), min_size=n, max_size=n,
                          unique=True))
    las = [ENCLAVE_BASE + s * PAGE_SIZE for s in slots]  # slot 256 is just past ELRANGE
    flags = draw(st.sampled_from([secinfo_flags(PageType.PT_REG, 3),
                                  secinfo_flags(PageType.PT_REG, 5),
                                  secinfo_flags(PageType.PT_REG, 2),
                                  secinfo_flags(PageType.PT_TCS, 0)]))
    seeds = draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    data = b"".join(bytes((s + i) % 256 for i in range(256)) * 16 for s in seeds)
    return pas, las, flags, data, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(_batches())
def test_add_pages_equals_the_leaf_sequence(
        batch: tuple[list[int], list[int], int, bytes, bool]) -> None:
    pas, las, flags, data, measure = batch
    assert _run(True, pas, las, flags, data, measure) == \
        _run(False, pas, las, flags, data, measure)


def test_two_sections_out_of_order_agree() -> None:
    """78 pages spanning both EPC sections in descending order: hashed on the worker thread."""
    pas = [b + i * PAGE_SIZE for b in BASES for i in range(1, SECTION_PAGES)][::-1]
    n = len(pas)
    las = [ENCLAVE_BASE + i * PAGE_SIZE for i in range(n)]
    data = np.arange(n * PAGE_SIZE, dtype=np.uint32).astype(np.uint8).tobytes()
    flags = secinfo_flags(PageType.PT_REG, 3)
    assert _run(True, pas, las, flags, data, True) == _run(False, pas, las, flags, data, True)
