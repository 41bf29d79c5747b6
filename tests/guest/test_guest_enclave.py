"""Enclaves built by a guest process through ``/dev/sgx_enclave``: the measurement EINIT
accepts, mapping rules (``sgx_encl_may_map``, MAP_SHARED only, mprotect), page faults (mapping
EPC pages, EAUG on SGX2), debugger access through /proc/PID/mem, EPC placement per NUMA node,
and the release of every EPC page."""

from __future__ import annotations

import errno

import pytest
from sgx_user import (
    BASE,
    REG_R,
    REG_RW,
    REG_RWX,
    REG_RX,
    SIZE,
    EnclaveBuilder,
    User,
    machine,
    pattern,
    tcs_page,
)

import vsgx
from vsgx.arch import ATTRIBUTES, PAGE_SIZE, AttributesFlags, PageType
from vsgx.crypto import MeasurementBuilder, mrsigner
from vsgx.guest import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDONLY,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    SGX_SECINFO_TCS,
)

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE
PRODUCTION = int(AttributesFlags.MODE64BIT)


def free_epc(vm: vsgx.Machine) -> int:
    assert vm.guest.epc is not None
    return vm.guest.epc.nr_free_pages


def raises(err: int) -> pytest.RaisesExc[OSError]:
    return pytest.raises(OSError, check=lambda exc: exc.errno == err)


# -- measurement --------------------------------------------------------------------------------

def test_mrenclave_is_what_a_signer_computes(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    builder.open().create()
    builder.add(0, tcs_page(), SGX_SECINFO_TCS)
    builder.add(0x1000, None, REG_RW, count=2)
    builder.add(0x3000, pattern(1), REG_RX)
    builder.add(0x4000, pattern(2), REG_RW, measure=False)
    builder.add(0x5000, pattern(3), REG_R)
    # The expected MRENCLAVE, computed here from the page list alone.
    expected = MeasurementBuilder()
    expected.ecreate(1, SIZE)
    expected.eadd(0, SGX_SECINFO_TCS)
    for chunk in range(0, P, 256):
        expected.eextend(chunk, tcs_page()[chunk:chunk + 256])
    expected.add_pages([0x1000, 0x2000], REG_RW, bytes(2 * P), True)
    expected.add_pages([0x3000], REG_RX, pattern(1), True)
    expected.add_pages([0x4000], REG_RW, pattern(2), False)
    expected.add_pages([0x5000], REG_R, pattern(3), True)
    assert builder.measurement.digest() == expected.digest()
    sig = builder.sigstruct(enclavehash=expected.digest())
    builder.init(sig)
    assert vm.processor is not None
    state = vm.processor.enclaves[vm.processor.epc.index_of(builder.enclave.secs_pa) or 0]
    assert state.initialized
    assert state.secs.mrenclave == expected.digest()
    assert state.secs.mrsigner == mrsigner(sig.modulus)


def test_unmeasured_contents_do_not_change_mrenclave(user: User) -> None:
    one = EnclaveBuilder(user).open().create()
    two = EnclaveBuilder(user, base=2 * BASE).open().create()
    one.add(0x1000, pattern(4), REG_RW, measure=False)
    two.add(0x1000, pattern(5), REG_RW, measure=False)
    one.init(one.sigstruct())
    two.init(one.sigstruct())  # the same SIGSTRUCT fits the other enclave
    three = EnclaveBuilder(user, base=3 * BASE).open().create()
    three.add(0x1000, pattern(5), REG_RW)
    with raises(errno.EPERM):
        three.init(one.sigstruct())


# -- mmap and mprotect --------------------------------------------------------------------------

def test_mmap_of_an_enclave(builder: EnclaveBuilder) -> None:
    proc = builder.build().proc
    fd = builder.fd
    with raises(errno.EINVAL):
        proc.mmap(BASE, P, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd)
    with raises(errno.EACCES):  # outside ELRANGE once initialized
        proc.mmap(BASE - P, 2 * P, PROT_READ, MAP_SHARED | MAP_FIXED, fd)
    with raises(errno.EACCES):  # the kernel picks an address: outside ELRANGE
        proc.mmap(0, P, PROT_NONE, MAP_SHARED, fd)
    with raises(errno.EACCES):  # more than the TCS's RW
        proc.mmap(BASE, P, RW | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd)
    with raises(errno.EACCES):  # the RX page in the range cannot be written
        proc.mmap(BASE + 0x1000, 2 * P, RW, MAP_SHARED | MAP_FIXED, fd)
    assert [v for v in proc.mm.vmas() if v.ops is not None] == []
    assert proc.mmap(BASE, SIZE, PROT_READ, MAP_SHARED | MAP_FIXED, fd) == BASE
    assert proc.mmap(BASE + 0x8000, 0x8000, RW | PROT_EXEC, MAP_SHARED | MAP_FIXED,
                     fd) == BASE + 0x8000  # no pages there yet: anything goes
    (vma,) = [v for v in proc.mm.vmas() if v.start == BASE]
    assert vma.flags & 0x4000 and vma.flags & 0x400  # VM_IO | VM_PFNMAP
    with raises(errno.EACCES):  # mprotect asks sgx_encl_may_map again
        proc.mprotect(BASE + 0x2000, P, RW)
    proc.mprotect(BASE + 0x2000, P, PROT_READ | PROT_EXEC)
    proc.mprotect(BASE + 0x3000, P, RW)
    assert [(v.start - BASE, v.prot) for v in proc.mm.vmas() if v.ops is not None] == [
        (0, PROT_READ), (0x2000, PROT_READ | PROT_EXEC), (0x3000, RW), (0x4000, PROT_READ),
        (0x8000, RW | PROT_EXEC)]


def test_mapping_before_init_is_not_limited_to_elrange(builder: EnclaveBuilder) -> None:
    proc = builder.open().proc
    assert proc.mmap(0, 4 * P, RW | PROT_EXEC, MAP_SHARED, builder.fd) != 0  # not created yet
    builder.create()
    assert proc.mmap(BASE - P, 2 * P, RW, MAP_SHARED | MAP_FIXED, builder.fd) == BASE - P


def test_read_only_descriptor(user: User) -> None:
    """An enclave built through an O_RDONLY descriptor (ioctls do not check the mode) can be
    mapped read-only only, and never made writable: its VMAs lack VM_MAYWRITE."""
    builder = EnclaveBuilder(user)
    builder.open(O_RDONLY).create().standard().init()
    with raises(errno.EACCES):
        user.proc.mmap(BASE + 0x3000, P, RW, MAP_SHARED | MAP_FIXED, builder.fd)
    assert user.proc.mmap(BASE + 0x3000, P, PROT_READ, MAP_SHARED | MAP_FIXED, builder.fd)
    with raises(errno.EACCES):
        user.proc.mprotect(BASE + 0x3000, P, RW)


# -- faults -------------------------------------------------------------------------------------

def test_faults_map_the_epc_pages(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    builder.build().map_standard()
    mm, encl = builder.proc.mm, builder.enclave
    assert mm.translate(BASE + 0x2000) is None  # mapped on demand
    assert mm.handle_fault(BASE + 0x2000 + 8, exec=True)
    assert mm.translate(BASE + 0x2000) == (encl.page_array[BASE + 0x2000].epc_page.pa, 1 | 4)
    assert not mm.handle_fault(BASE + 0x2000, write=True)  # the VMA is not writable
    assert mm.handle_fault(BASE)
    assert mm.translate(BASE) == (encl.page_array[BASE].epc_page.pa, 1 | 2)
    assert not mm.handle_fault(BASE - P)  # no VMA: SIGSEGV
    # Outside enclave mode the kernel reads EPC as abort pages.
    assert mm.copy_from_user(BASE + 0x2000, 4) == b"\xff" * 4
    builder.proc.munmap(BASE, P)
    assert mm.translate(BASE) is None


def test_eaug_on_fault(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    builder.build().map_standard()
    mm, encl = builder.proc.mm, builder.enclave
    free, children = free_epc(vm), encl.secs_child_cnt
    assert mm.handle_fault(BASE + 0x9000, write=True)
    entry = encl.page_array[BASE + 0x9000]
    assert (entry.type, entry.vm_max_prot_bits) == (PageType.PT_REG, 7)
    assert mm.translate(BASE + 0x9000) == (entry.epc_page.pa, 1 | 2)
    assert vm.processor is not None
    idx = vm.processor.epc.index_of(entry.epc_page.pa)
    assert idx is not None
    epcm = vm.processor.epcm.entry(idx)
    assert (epcm.page_type, epcm.r, epcm.w, epcm.x, epcm.pending) == (
        PageType.PT_REG, True, True, False, True)
    assert epcm.enclaveaddress == BASE + 0x9000
    assert free_epc(vm) == free - 1 and encl.secs_child_cnt == children + 1
    with raises(errno.EIO):  # a pending page is not debuggable
        builder.proc.read_memory(BASE + 0x9000, 8)


def test_eaug_needs_an_initialized_enclave(builder: EnclaveBuilder) -> None:
    builder.open().create().standard()
    builder.map(RW, offset=0x8000, length=0x8000)
    assert not builder.proc.mm.handle_fault(BASE + 0x8000, write=True)  # SIGBUS
    assert builder.enclave.page_array.keys().isdisjoint({BASE + 0x8000})


def test_no_eaug_without_sgx2() -> None:
    with machine(cpu="host,-sgx2") as vm:
        builder = EnclaveBuilder(User(vm.guest.spawn())).build()
        builder.map_standard()
        assert not builder.proc.mm.handle_fault(BASE + 0x9000, write=True)
        assert builder.proc.mm.handle_fault(BASE + 0x1000, write=True)


# -- /proc/PID/mem: EDBGRD and EDBGWR -----------------------------------------------------------

def test_debug_enclave_memory(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    proc = builder.build().proc
    builder.map_standard()
    assert proc.read_memory(BASE + 0x2000, P) == pattern(1)
    assert proc.read_memory(BASE + 0x2003, 13) == pattern(1)[3:16]  # partial words
    assert proc.read_memory(BASE, 16) == tcs_page()[:16]  # a TCS is readable too
    assert proc.write_memory(BASE + 0x3005, b"hello, enclave") == 14
    data = bytearray(pattern(2))
    data[5:19] = b"hello, enclave"
    assert proc.read_memory(BASE + 0x3000, P) == bytes(data)
    encl = builder.enclave
    assert vm.processor is not None
    idx = vm.processor.epc.index_of(encl.page_array[BASE + 0x3000].epc_page.pa)
    assert bytes(vm.processor.epc.page(idx or 0)[5:19]) == b"hello, enclave"
    assert proc.write_memory(BASE + 0x2000, b"ro") == 2  # EDBGWR ignores EPCM permissions
    assert proc.write_memory(BASE + 8, (1).to_bytes(8, "little")) == 8  # TCS.FLAGS
    with raises(errno.EIO):
        proc.write_memory(BASE + 16, b"x")  # other TCS fields: EDBGWR #GP
    with raises(errno.EIO):
        proc.read_memory(BASE + 0x6000, 8)  # no page there
    assert proc.read_memory(BASE + 0x4FFC, 8) == pattern(3)[-4:]  # stops at the missing page


def test_production_enclave_memory(builder: EnclaveBuilder) -> None:
    builder.flags = PRODUCTION
    proc = builder.build().proc
    builder.map_standard()
    with raises(errno.EIO):
        proc.read_memory(BASE + 0x2000, 8)
    with raises(errno.EIO):
        proc.write_memory(BASE + 0x3000, b"x")


def test_debugger_access_respects_the_maximum_protection(builder: EnclaveBuilder) -> None:
    builder.open().create()
    builder.map(PROT_READ | PROT_EXEC, offset=0x2000, length=P)  # before the page exists
    builder.add(0x2000, pattern(1), REG_R)
    with raises(errno.EIO):  # the VMA's exec exceeds the page's read-only maximum
        builder.proc.read_memory(BASE + 0x2000, 8)


# -- EPC allocation and release -----------------------------------------------------------------

def test_release_frees_every_epc_page(vm: vsgx.Machine, user: User) -> None:
    start = free_epc(vm)
    proc = user.proc
    one = EnclaveBuilder(user).build()
    one.map_standard()
    for offset in (0x9000, 0xA000, 0xF000):
        assert proc.mm.handle_fault(BASE + offset, write=True)
    assert free_epc(vm) == start - 1 - 1 - 5 - 3  # SECS, VA page, pages, EAUG pages
    proc.close(one.fd)
    assert free_epc(vm) == start - 10  # still mapped: the enclave lives
    proc.munmap(BASE, 0x8000)
    assert free_epc(vm) == start - 10
    proc.munmap(BASE + 0x8000, 0x8000)
    assert free_epc(vm) == start
    assert vm.processor is not None and vm.processor.enclaves == {}
    # Unmapped first, then closed.
    two = EnclaveBuilder(user).build()
    two.map_standard()
    proc.munmap(BASE, SIZE)
    assert free_epc(vm) == start - 7
    proc.close(two.fd)
    assert free_epc(vm) == start
    # Never initialized, and torn down by the process's exit.
    EnclaveBuilder(user, base=2 * BASE).open().create().standard()
    three = EnclaveBuilder(user).build()
    three.map_standard()
    proc.exit()
    assert free_epc(vm) == start and vm.processor.enclaves == {}


def test_va_pages_every_512_pages(vm: vsgx.Machine, user: User) -> None:
    start = free_epc(vm)
    builder = EnclaveBuilder(user, size=0x40_0000).open().create()
    builder.add(0, pattern(1), REG_RWX, measure=False, count=510)
    encl = builder.enclave
    assert (encl.page_cnt, len(encl.va_pages)) == (511, 1)
    builder.add(510 * P, pattern(1), REG_RWX, measure=False)
    assert (encl.page_cnt, len(encl.va_pages)) == (512, 1)
    builder.add(511 * P, pattern(1), REG_RWX, measure=False)
    assert (encl.page_cnt, len(encl.va_pages)) == (513, 2)
    assert free_epc(vm) == start - 1 - 512 - 2
    builder.init()
    user.proc.close(builder.fd)
    assert free_epc(vm) == start


NUMA = ["-machine", "q35", "-m", "256M", "-smp", "2", "-cpu", "host",
        "-object", "memory-backend-ram,size=128M,id=m0",
        "-object", "memory-backend-ram,size=128M,id=m1",
        "-numa", "node,nodeid=0,cpus=0,memdev=m0", "-numa", "node,nodeid=1,cpus=1,memdev=m1",
        "-object", "memory-backend-epc,id=e0,size=1M",
        "-object", "memory-backend-epc,id=e1,size=1M",
        "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0,sgx-epc.1.memdev=e1,sgx-epc.1.node=1"]


def test_epc_comes_from_the_process_node_first() -> None:
    with machine(NUMA) as vm:
        first, second = vm.guest.epc_sections
        assert (first.node, second.node) == (0, 1)
        epc = vm.guest.epc
        assert epc is not None and epc.nr_free_pages == 512
        on_one = EnclaveBuilder(User(vm.guest.spawn(node=1))).open().create()
        pages = [on_one.enclave.secs, *on_one.enclave.va_pages]
        assert all(p is not None and second.phys_addr <= p.pa < second.phys_addr + second.size
                   for p in pages)
        held = [epc.alloc(None, reclaim=True, node=1) for _ in range(254)]
        on_one.add(0, None, REG_RW, count=2)  # node 1 runs out: node 0's pages
        addrs = sorted(encl_page.epc_page.pa for encl_page in on_one.enclave.page_array.values())
        assert addrs == [first.phys_addr, first.phys_addr + P]  # lowest address first
        for page in held:
            epc.free(page)


def test_enclave_attributes_reach_the_secs(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    builder.flags = int(AttributesFlags.MODE64BIT | AttributesFlags.KSS)
    builder.build()
    assert vm.processor is not None
    state = vm.processor.enclaves[vm.processor.epc.index_of(builder.enclave.secs_pa) or 0]
    assert state.secs.attributes == ATTRIBUTES(builder.flags | int(AttributesFlags.INIT), 3)


def test_enclave_in_a_prot_none_reservation(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    """How loaders place an enclave: reserve twice its size PROT_NONE, align the base inside
    the reservation, build, then map the enclave over the reservation with MAP_FIXED."""
    proc = builder.open().proc
    area = proc.mmap(0, 2 * SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
    builder.base = -(-area // SIZE) * SIZE
    builder.create().standard().init()
    builder.map_standard()
    base, end = builder.base, area + 2 * SIZE
    expected = [(area, base, False)] if base > area else []
    expected += [(base + a, base + b, True) for a, b in ((0, 0x2000), (0x2000, 0x3000),
                                                        (0x3000, 0x4000), (0x4000, 0x5000),
                                                        (0x5000, SIZE))]
    expected += [(base + SIZE, end, False)] if base + SIZE < end else []
    assert [(v.start, v.end, v.ops is not None) for v in proc.mm.vmas()
            if area <= v.start < end] == expected
    assert proc.read_memory(builder.base + 0x2000, 4) == pattern(1)[:4]
