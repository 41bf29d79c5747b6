"""EPC reclaim in the guest kernel on machines whose EPC is smaller than their enclaves: an
oversized enclave builds, initializes and reads back through EWB/ELDU; free pages, VA slots and
the backing store stay accounted for; the SECS goes and comes back; EWB waits for threads
inside; tampered backing pages fail ELDU; and random access sequences agree with a model."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sgx_user import (
    BASE,
    MACHINE,
    REG_R,
    REG_RW,
    REG_RX,
    EnclaveBuilder,
    User,
    machine,
    tcs_page,
)

import vsgx
from vsgx.arch import PAGE_SIZE, SECINFO, PageType, SgxError
from vsgx.guest import (
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    SGX_PAGE_MEASURE,
    SGX_SECINFO_R,
    SGX_SECINFO_TCS,
    Enclave,
    EpcAllocator,
    EpcPage,
    SgxEnclaveAddPages,
    SgxEnclaveRestrictPermissions,
)
from vsgx.guest.reclaim import SGX_NR_HIGH_PAGES, SGX_NR_LOW_PAGES, SGX_NR_TO_SCAN

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE
SMALL = [arg.replace("size=8M", "size=1M") for arg in MACHINE]
"""The standard machine with 1 MiB (256 pages) of EPC."""
BIG = 0x40_0000
MAC_COMPARE_FAIL = int(SgxError.SGX_MAC_COMPARE_FAIL)


@pytest.fixture
def small_vm() -> Iterator[vsgx.Machine]:
    with machine(SMALL) as started:
        yield started


def allocator(vm: vsgx.Machine) -> EpcAllocator:
    assert vm.guest.epc is not None
    return vm.guest.epc


def raises(err: int) -> pytest.RaisesExc[OSError]:
    return pytest.raises(OSError, check=lambda exc: exc.errno == err)


def page_data(tag: int, k: int) -> bytes:
    return hashlib.shake_128(f"{tag}:{k}".encode()).digest(P)


def add_distinct(builder: EnclaveBuilder, offset: int, contents: list[bytes],
                 secinfo: int = REG_RW) -> None:
    """One measured ADD_PAGES of pages with different contents."""
    user = builder.user
    user.ioctl(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, SgxEnclaveAddPages(
        src=user.put(b"".join(contents)), offset=offset, length=len(contents) * P,
        secinfo=user.put(SECINFO(secinfo).to_bytes()), flags=SGX_PAGE_MEASURE))
    for k, data in enumerate(contents):
        builder.record(offset + k * P, data, secinfo, True)


def build(user: User, pages: int, *, base: int = BASE, size: int = BIG, tag: int = 0,
          init: bool = True) -> tuple[EnclaveBuilder, dict[int, bytes]]:
    """A DEBUG enclave with a TCS at offset 0 and ``pages`` read/write pages after it, all
    measured, initialized and mapped read/write; and the contents of every page by address."""
    builder = EnclaveBuilder(user, base=base, size=size).open().create()
    builder.add(0, tcs_page(), SGX_SECINFO_TCS)
    data = [page_data(tag, k) for k in range(pages)]
    add_distinct(builder, P, data)
    if init:
        builder.init()
    builder.map(RW)
    contents = {base: tcs_page()} | {base + (k + 1) * P: d for k, d in enumerate(data)}
    return builder, contents


def resident(encl: Enclave) -> list[int]:
    return [a for a, e in encl.page_array.items() if e.resident is not None]


def evicted(encl: Enclave) -> list[int]:
    return [a for a, e in encl.page_array.items() if e.resident is None]


def check_accounting(vm: vsgx.Machine, *encls: Enclave, held: int = 0) -> None:
    """Every EPC page is free, held by the test, or an enclave's resident page, SECS or VA
    page; each evicted page (and an evicted SECS) has exactly one VA slot."""
    epc = allocator(vm)
    used = 0
    for encl in encls:
        live = len(resident(encl))
        assert encl.secs_child_cnt == live
        used += live + (encl.secs is not None) + len(encl.va_pages)
        slots = sum(va.nr_used for va in encl.va_pages)
        assert slots == len(evicted(encl)) + (encl.secs is None)
    assert epc.nr_free_pages + used + held == epc.total_pages
    assert epc.nr_free_pages >= SGX_NR_LOW_PAGES or not epc.reclaimer.nr_reclaimable


def read_back(builder: EnclaveBuilder, contents: dict[int, bytes], addrs: list[int]) -> None:
    """Each page's first and last 64 bytes through ``/proc/PID/mem`` (EDBGRD)."""
    for addr in addrs:
        data = contents[addr]
        assert builder.proc.read_memory(addr, 64) == data[:64], hex(addr)
        assert builder.proc.read_memory(addr + P - 64, 64) == data[-64:], hex(addr)


def evict_all(epc: EpcAllocator) -> None:
    while epc.reclaimer.nr_reclaimable:
        epc.reclaimer.reclaim_pages()


def hold_all(epc: EpcAllocator, err: int) -> list[EpcPage]:
    """Allocate without reclaim until it fails with ``err``; the pages taken."""
    held = []
    with raises(err):
        while True:
            held.append(epc.alloc(None, reclaim=False, node=0))
    return held


def spy_eldu(monkeypatch: pytest.MonkeyPatch, encl: Enclave) -> list[int]:
    """The return value of every ELDU the guest kernel issues from now on."""
    results: list[int] = []
    real: Callable[..., int] = encl.encls.eldu

    def eldu(*args: object) -> int:
        results.append(real(*args))
        return results[-1]

    monkeypatch.setattr(encl.encls, "eldu", eldu)
    return results


# -- an enclave larger than the EPC -------------------------------------------------------------

def test_oversized_enclave_builds_and_reads_back(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    start = epc.nr_free_pages
    assert start == epc.total_pages == 256
    builder, contents = build(User(small_vm.guest.spawn()), 512, init=False)
    encl = builder.enclave
    assert len(encl.page_array) == 513 and len(evicted(encl)) > 513 - 256
    assert len(encl.va_pages) == 2  # 514 pages with the SECS
    check_accounting(small_vm, encl)
    builder.init()  # EINIT with most pages evicted
    cpu = small_vm.processor
    assert cpu is not None
    state = cpu.enclaves[cpu.epc.index_of(encl.secs_pa) or 0]
    assert state.initialized and state.secs.mrenclave == builder.measurement.digest()
    addrs = sorted(contents)
    read_back(builder, contents, addrs)
    check_accounting(small_vm, encl)
    read_back(builder, contents, addrs[::-1])  # what the first pass left resident goes first
    for addr in addrs[::64]:
        assert builder.proc.read_memory(addr, P) == contents[addr]
    check_accounting(small_vm, encl)
    assert encl.backing.nr_pages > len(evicted(encl)) > 0


def test_fault_zaps_and_loads_back(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    builder, contents = build(User(small_vm.guest.spawn()), 300)
    encl, mm = builder.enclave, builder.proc.mm
    addr = resident(encl)[0]
    assert mm.handle_fault(addr)
    assert mm.translate(addr) == (encl.page_array[addr].epc_page.pa, 1 | 2)
    generation = mm.generation
    while encl.page_array[addr].resident is not None:
        assert epc.reclaimer.reclaim_pages()
    assert mm.translate(addr) is None and mm.generation > generation  # TLBs to flush
    backing_pages = encl.backing.nr_pages
    assert mm.handle_fault(addr, write=True)  # ELDU, mapped again
    entry = encl.page_array[addr]
    assert entry.resident is not None and entry.va_slot is None
    assert mm.translate(addr) == (entry.epc_page.pa, 1 | 2)
    assert encl.backing.nr_pages < backing_pages
    cpu = small_vm.processor
    assert cpu is not None
    epcm = cpu.epcm.entry(cpu.epc.index_of(entry.epc_page.pa) or 0)
    assert (epcm.page_type, epcm.enclaveaddress, epcm.r, epcm.w, epcm.blocked) == (
        PageType.PT_REG, addr, True, True, False)
    assert builder.proc.read_memory(addr, P) == contents[addr]
    check_accounting(small_vm, encl)


def test_allocation_reclaims(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    builder, _ = build(User(small_vm.guest.spawn()), 64, size=0x10_0000)
    encl = builder.enclave
    held = hold_all(epc, errno.EBUSY)  # reclaimable pages, but no reclaim: EBUSY
    assert epc.nr_free_pages == 0 and epc.reclaimer.nr_reclaimable == 65
    held.append(epc.alloc(None, reclaim=True, node=0))  # direct reclaim, then ksgxd
    assert len(evicted(encl)) >= SGX_NR_TO_SCAN
    assert epc.nr_free_pages >= SGX_NR_HIGH_PAGES or not epc.reclaimer.nr_reclaimable
    check_accounting(small_vm, encl, held=len(held))
    evict_all(epc)
    held += hold_all(epc, errno.ENOMEM)  # nothing reclaimable: ENOMEM
    with raises(errno.ENOMEM):
        epc.alloc(None, reclaim=True, node=0)
    for page in held:
        epc.free(page)
    check_accounting(small_vm, encl)


def test_free_pages_stay_above_the_low_watermark(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    builder, contents = build(User(small_vm.guest.spawn()), 400)
    for addr in sorted(contents):
        assert builder.proc.mm.handle_fault(addr)
        assert epc.nr_free_pages >= SGX_NR_LOW_PAGES
    assert epc.nr_free_pages <= SGX_NR_HIGH_PAGES + SGX_NR_TO_SCAN


# -- VA slots and the SECS ----------------------------------------------------------------------

def test_va_slots_are_freed_and_reused(vm: vsgx.Machine, user: User) -> None:
    epc = allocator(vm)
    builder, contents = build(user, 4, size=0x10000)
    encl = builder.enclave
    evict_all(epc)  # in list order: the TCS, pages 1-4, then the SECS
    slots = [encl.page_array[BASE + k * P].va_slot for k in range(5)]
    assert [s.offset for s in slots if s is not None] == [0, 8, 16, 24, 32]
    assert encl.secs_va_slot is not None and encl.secs_va_slot.offset == 40
    assert encl.va_pages[0].nr_used == 6
    assert builder.proc.read_memory(BASE + 2 * P, 64) == contents[BASE + 2 * P][:64]
    assert encl.va_pages[0].nr_used == 4  # the SECS's and page 2's slots
    check_accounting(vm, encl)
    evict_all(epc)
    page2 = encl.page_array[BASE + 2 * P].va_slot
    assert page2 is not None and page2.offset == 16  # the first free slot
    assert encl.secs_va_slot is not None and encl.secs_va_slot.offset == 40
    check_accounting(vm, encl)


def test_secs_eviction_and_reload(vm: vsgx.Machine, user: User) -> None:
    epc = allocator(vm)
    builder, contents = build(user, 4, size=0x10000)
    encl, cpu = builder.enclave, vm.processor
    assert cpu is not None
    secs_idx = cpu.epc.index_of(encl.secs_pa)
    assert secs_idx is not None
    eid = cpu.enclaves[secs_idx].eid
    free = epc.nr_free_pages
    evict_all(epc)
    assert epc.nr_free_pages == free + 5 + 1  # the pages, then the SECS
    assert encl.secs is None and secs_idx not in cpu.enclaves and eid in cpu.evicted_secs
    pcmd = encl.backing.read(encl.backing.pcmd_offset(0x10000 // P), 128)
    assert int.from_bytes(pcmd[:8], "little") >> 8 == PageType.PT_SECS
    assert int.from_bytes(pcmd[64:72], "little") == eid  # PCMD.ENCLAVEID
    assert builder.proc.read_memory(BASE + 3 * P, P) == contents[BASE + 3 * P]
    assert encl.secs is not None and encl.secs_va_slot is None
    assert eid not in cpu.evicted_secs and encl.secs_child_cnt == 1
    check_accounting(vm, encl)
    evict_all(epc)
    assert encl.secs is None
    assert builder.proc.mm.handle_fault(BASE + 0xF000, write=True)  # EAUG: SECS first
    assert encl.secs is not None and encl.page_array[BASE + 0xF000].resident is not None
    check_accounting(vm, encl)


def test_uninitialized_enclave_keeps_its_secs(vm: vsgx.Machine, user: User) -> None:
    builder, contents = build(user, 4, size=0x10000, init=False)
    evict_all(allocator(vm))
    encl = builder.enclave
    assert len(evicted(encl)) == 5 and encl.secs is not None
    builder.init()
    read_back(builder, contents, sorted(contents))


# -- threads inside the enclave (ETRACK) --------------------------------------------------------

def test_ewb_waits_for_threads_inside(vm: vsgx.Machine, user: User) -> None:
    epc = allocator(vm)
    builder, contents = build(user, 8, size=0x10000)
    encl, cpu = builder.enclave, vm.processor
    assert cpu is not None
    secs = cpu.epc.index_of(encl.secs_pa) or 0
    cpu.thread_entered(secs, 1)
    assert epc.reclaimer.reclaim_pages() == 0  # SGX_NOT_TRACKED, and nobody to kick
    assert len(resident(encl)) == 9 and epc.reclaimer.nr_reclaimable == 9
    pages = [encl.page_array[a].epc_page.pa for a in resident(encl)]
    assert all(cpu.epcm.entry(cpu.epc.index_of(pa) or 0).blocked for pa in pages)
    check_accounting(vm, encl)
    kicked: list[Enclave] = []

    def kick(target: Enclave) -> None:  # what the engine does: AEX every thread inside
        kicked.append(target)
        cpu.thread_exited(secs, 1)

    epc.reclaimer.kick_enclave_threads = kick
    assert epc.reclaimer.reclaim_pages() == 9 + 1  # and the SECS
    assert kicked == [encl]
    read_back(builder, contents, sorted(contents))
    check_accounting(vm, encl)


def test_threads_that_leave_need_no_kick(vm: vsgx.Machine, user: User) -> None:
    epc = allocator(vm)
    builder, _ = build(user, 2, size=0x10000)
    cpu = vm.processor
    assert cpu is not None
    secs = cpu.epc.index_of(builder.enclave.secs_pa) or 0
    cpu.thread_entered(secs, 1)
    assert epc.reclaimer.reclaim_pages() == 0
    cpu.thread_exited(secs, 1)
    epc.reclaimer.kick_enclave_threads = lambda encl: pytest.fail("kicked")
    assert epc.reclaimer.reclaim_pages() == 3 + 1


# -- several enclaves, release ------------------------------------------------------------------

def test_two_enclaves_compete(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    start = epc.nr_free_pages
    user = User(small_vm.guest.spawn())
    one, first = build(user, 180, size=0x10_0000, tag=1)
    two, second = build(user, 180, base=2 * BASE, size=0x10_0000, tag=2)
    check_accounting(small_vm, one.enclave, two.enclave)
    for a, b in zip(sorted(first), sorted(second), strict=True):
        read_back(one, first, [a])
        read_back(two, second, [b])
    assert evicted(one.enclave) and evicted(two.enclave)
    check_accounting(small_vm, one.enclave, two.enclave)
    for builder in (one, two):
        user.proc.close(builder.fd)
        user.proc.munmap(builder.base, builder.size)
    assert epc.nr_free_pages == start and epc.reclaimer.nr_reclaimable == 0
    assert small_vm.processor is not None and small_vm.processor.enclaves == {}


def test_release_frees_everything(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    start = epc.nr_free_pages
    user = User(small_vm.guest.spawn())
    builder, contents = build(user, 400)
    read_back(builder, contents, sorted(contents)[::7])
    encl = builder.enclave
    evict_all(epc)  # the SECS too
    assert encl.secs is None
    user.proc.exit()
    assert epc.nr_free_pages == start and epc.reclaimer.nr_reclaimable == 0
    assert encl.page_array == {} and encl.va_pages == [] and encl.secs_va_slot is None
    assert small_vm.processor is not None and small_vm.processor.enclaves == {}


# -- what eviction keeps: protections, types, debug access -------------------------------------

def test_page_bookkeeping_survives_eviction(vm: vsgx.Machine, user: User) -> None:
    epc = allocator(vm)
    builder = EnclaveBuilder(user).open().create()
    builder.add(0, tcs_page(), SGX_SECINFO_TCS)
    builder.add(0x1000, page_data(3, 1), REG_R)
    builder.add(0x2000, page_data(3, 2), REG_RX)
    builder.add(0x3000, page_data(3, 3), REG_RW)
    builder.init()
    encl = builder.enclave
    before = {a: (e.vm_max_prot_bits, e.type) for a, e in encl.page_array.items()}
    evict_all(epc)
    assert {a: (e.vm_max_prot_bits, e.type) for a, e in encl.page_array.items()} == before
    with raises(errno.EACCES):  # checked against the evicted page's maximum protection
        builder.map(RW, offset=0x1000, length=P)
    builder.map(PROT_READ, offset=0x1000, length=P)
    builder.map(PROT_READ | PROT_EXEC, offset=0x2000, length=P)
    builder.map(RW, offset=0x3000, length=P)
    assert user.proc.read_memory(BASE + 0x2000, P) == page_data(3, 2)
    assert encl.page_array[BASE + 0x1000].resident is None  # only what is used comes back
    evict_all(epc)
    params = SgxEnclaveRestrictPermissions(offset=0x3000, length=P, permissions=SGX_SECINFO_R)
    assert user.ioctl(builder.fd, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, params).count == P
    cpu = vm.processor
    assert cpu is not None
    epcm = cpu.epcm.entry(cpu.epc.index_of(encl.page_array[BASE + 0x3000].epc_page.pa) or 0)
    assert (epcm.r, epcm.w, epcm.pr) == (True, False, True)
    check_accounting(vm, encl)


def test_debug_write_to_an_evicted_page(small_vm: vsgx.Machine) -> None:
    epc = allocator(small_vm)
    builder, contents = build(User(small_vm.guest.spawn()), 8, size=0x10000)
    evict_all(epc)
    assert builder.proc.write_memory(BASE + P + 5, b"written while evicted") == 21
    evict_all(epc)
    data = bytearray(contents[BASE + P])
    data[5:26] = b"written while evicted"
    assert builder.proc.read_memory(BASE + P, P) == bytes(data)


# -- EAUG under pressure ------------------------------------------------------------------------

def test_eaug_when_the_epc_is_exhausted(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    epc = allocator(vm)
    builder.build().map_standard()
    mm, encl = builder.proc.mm, builder.enclave
    held = hold_all(epc, errno.EBUSY)
    assert mm.handle_fault(BASE + 0x9000, write=True)  # EBUSY, ksgxd reclaims, EAUG again
    assert BASE + 0x9000 in encl.page_array and evicted(encl)
    evict_all(epc)
    held += hold_all(epc, errno.ENOMEM)
    assert not mm.handle_fault(BASE + 0xA000, write=True)  # nothing to reclaim: SIGBUS
    for page in held:
        epc.free(page)
    assert mm.handle_fault(BASE + 0xA000, write=True)
    check_accounting(vm, encl)


# -- an untrusted backing store -----------------------------------------------------------------

@pytest.mark.parametrize("where", ["contents", "pcmd-mac", "pcmd-flags"])
def test_tampered_backing_fails_eldu(small_vm: vsgx.Machine, monkeypatch: pytest.MonkeyPatch,
                                     where: str) -> None:
    builder, contents = build(User(small_vm.guest.spawn()), 300)
    encl, mm = builder.enclave, builder.proc.mm
    victim, other = evicted(encl)[1:3]
    backing, index = encl.backing, (victim - BASE) // P
    offset = {"contents": backing.contents_offset(index) + 100,
              "pcmd-mac": backing.pcmd_offset(index) + 112,
              "pcmd-flags": backing.pcmd_offset(index)}[where]  # PCMD.SECINFO.FLAGS.R
    backing.write(offset, bytes([backing.read(offset, 1)[0] ^ 1]))
    results = spy_eldu(monkeypatch, encl)
    assert not mm.handle_fault(victim)  # SIGBUS
    assert results == [MAC_COMPARE_FAIL]
    assert encl.page_array[victim].resident is None
    with raises(errno.EIO):
        builder.proc.read_memory(victim, 8)
    assert mm.handle_fault(other)
    assert builder.proc.read_memory(other, P) == contents[other]
    assert results[-1] == 0


# -- random access sequences against a model ----------------------------------------------------

MODEL_PAGES = 288
pages_st = st.integers(1, MODEL_PAGES)


class ReclaimModel(RuleBasedStateMachine):
    """Debugger reads and writes, faults and reclaim passes over a DEBUG enclave of 289 pages
    on a 256-page EPC; every byte read must be the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.vm = machine(SMALL)
        self.epc = allocator(self.vm)
        self.builder, contents = build(User(self.vm.guest.spawn()), MODEL_PAGES,
                                       size=0x20_0000)
        self.model = {a: bytearray(d) for a, d in contents.items()}

    def teardown(self) -> None:
        self.vm.close()

    @rule(page=st.integers(0, MODEL_PAGES), offset=st.integers(0, P - 1),
          length=st.integers(1, 64))
    def read(self, page: int, offset: int, length: int) -> None:
        addr = BASE + page * P
        n = min(length, P - offset)
        assert self.builder.proc.read_memory(addr + offset, n) == \
            self.model[addr][offset:offset + n]

    @rule(page=pages_st, offset=st.integers(0, P - 1), data=st.binary(min_size=1, max_size=32))
    def write(self, page: int, offset: int, data: bytes) -> None:
        addr = BASE + page * P
        data = data[:P - offset]
        assert self.builder.proc.write_memory(addr + offset, data) == len(data)
        self.model[addr][offset:offset + len(data)] = data

    @rule(page=pages_st)
    def fault(self, page: int) -> None:
        addr = BASE + page * P
        mm = self.builder.proc.mm
        assert mm.handle_fault(addr, write=True)
        pte = mm.translate(addr)
        assert pte is not None and pte[0] == self.builder.enclave.page_array[addr].epc_page.pa

    @rule()
    def reclaim(self) -> None:
        self.epc.reclaimer.reclaim_pages()

    @invariant()
    def accounted(self) -> None:
        check_accounting(self.vm, self.builder.enclave)


ReclaimModel.TestCase.settings = settings(max_examples=8, stateful_step_count=40,
                                          deadline=None)
test_reclaim_model = ReclaimModel.TestCase
