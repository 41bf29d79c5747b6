"""mmap, mprotect and munmap of anonymous memory in a guest process, with Linux's checks and
errnos; the page table an execution engine reads (translate) and the fault entry; and
/proc/PID/mem access to ordinary pages."""

from __future__ import annotations

import errno

import pytest
from sgx_user import MACHINE, machine

import vsgx
from vsgx.guest import (
    KERNEL_RESERVED,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MMAP_BASE,
    MMAP_MIN_ADDR,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_NONE,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    TASK_SIZE,
    Process,
)

P = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
A = 0x5555_0000_0000
"""A free area for MAP_FIXED mappings."""


def fails(err: int, call: object, *args: object) -> None:
    assert callable(call)
    with pytest.raises(OSError) as info:
        call(*args)
    assert info.value.errno == err, info.value


def spans(proc: Process) -> list[tuple[int, int, int]]:
    return [(v.start, v.end, v.prot) for v in proc.mm.vmas()]


# -- mmap ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("addr", "length", "prot", "flags", "offset", "err"), [
    (0, 0, RW, ANON, 0, errno.EINVAL),  # length 0
    (0, P, RW, ANON, 1, errno.EINVAL),  # unaligned offset (checked even for anonymous)
    (A + 1, P, RW, ANON | MAP_FIXED, 0, errno.EINVAL),  # unaligned fixed address
    (0x1000, P, RW, ANON | MAP_FIXED, 0, errno.EPERM),  # below vm.mmap_min_addr
    (TASK_SIZE - P, 2 * P, RW, ANON | MAP_FIXED, 0, errno.ENOMEM),  # past TASK_SIZE
    (0, (1 << 64) - 1, RW, ANON, 0, errno.ENOMEM),  # PAGE_ALIGN wraps to 0
    (0, TASK_SIZE + P, RW, ANON, 0, errno.ENOMEM),  # longer than the address space
    (0, P, RW, MAP_ANONYMOUS, 0, errno.EINVAL),  # neither shared nor private
    (0, P, RW, MAP_ANONYMOUS | MAP_SHARED | MAP_PRIVATE, 0, errno.EINVAL),
    (0, P, RW, MAP_PRIVATE, 0, errno.EBADF),  # a file mapping without a file
], ids=["length-0", "offset", "fixed-unaligned", "below-min", "past-task-size", "wraps",
        "too-long", "no-type", "shared-validate", "no-fd"])
def test_mmap_errors(proc: Process, addr: int, length: int, prot: int, flags: int, offset: int,
                     err: int) -> None:
    fails(err, proc.mmap, addr, length, prot, flags, -1, offset)
    assert proc.mm.vmas() == []


def test_mmap_places_top_down_below_mmap_base_and_honours_free_hints(proc: Process) -> None:
    first = proc.mmap(0, 3 * P, RW, ANON)
    assert first == MMAP_BASE - 3 * P
    second = proc.mmap(0, P, PROT_READ, ANON)
    assert second == first - P
    assert proc.mmap(A + 123, P, RW, ANON) == A  # round_hint_to_min truncates a hint
    assert proc.mmap(A, P, RW, ANON) == second - P  # taken: placed top-down instead
    assert proc.mmap(0x1000, P, RW, ANON) == MMAP_MIN_ADDR  # raised to mmap_min_addr


def test_anonymous_memory_is_zero_filled_on_first_touch(vm: vsgx.Machine, proc: Process) -> None:
    addr = proc.mmap(A, 2 * P, RW, ANON | MAP_FIXED)
    assert proc.mm.translate(addr) is None  # nothing allocated yet
    free = vm.guest.memory.nr_free_pages
    assert proc.mm.handle_fault(addr + 5, write=True)
    pa, perms = proc.mm.translate(addr + 5) or (0, 0)
    assert perms == 1 | 2 and pa % P == 0 and pa >= KERNEL_RESERVED
    assert vm.ram.read(pa, P) == bytes(P)
    assert vm.guest.memory.nr_free_pages == free - 1
    assert proc.read_memory(addr + P, 8) == bytes(8)  # untouched: the zero page, no allocation
    assert vm.guest.memory.nr_free_pages == free - 1


def test_fixed_mapping_replaces_and_frees(vm: vsgx.Machine, proc: Process) -> None:
    proc.mmap(A, 4 * P, RW, ANON | MAP_FIXED)
    proc.write_memory(A, b"x" * (4 * P))
    free = vm.guest.memory.nr_free_pages
    assert proc.mmap(A + P, P, PROT_READ, ANON | MAP_FIXED) == A + P
    assert spans(proc) == [(A, A + P, RW), (A + P, A + 2 * P, PROT_READ),
                           (A + 2 * P, A + 4 * P, RW)]
    assert vm.guest.memory.nr_free_pages == free + 1
    assert proc.read_memory(A, 3 * P) == b"x" * P + bytes(P) + b"x" * P


def test_fixed_noreplace(proc: Process) -> None:
    proc.mmap(A + P, P, RW, ANON | MAP_FIXED)
    fails(errno.EEXIST, proc.mmap, A, 2 * P, RW, ANON | MAP_FIXED_NOREPLACE)
    assert proc.mmap(A, P, RW, ANON | MAP_FIXED_NOREPLACE) == A
    assert spans(proc) == [(A, A + 2 * P, RW)]  # merged with its equal neighbour


def test_adjacent_shared_mappings_stay_separate(proc: Process) -> None:
    proc.mmap(A, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED)
    proc.mmap(A + P, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED)
    assert spans(proc) == [(A, A + P, RW), (A + P, A + 2 * P, RW)]


# -- mprotect -----------------------------------------------------------------------------------

def test_mprotect_errors(proc: Process) -> None:
    proc.mmap(A, 2 * P, RW, ANON | MAP_FIXED)
    proc.mmap(A + 3 * P, P, RW, ANON | MAP_FIXED)
    fails(errno.EINVAL, proc.mprotect, A + 1, P, PROT_READ)
    fails(errno.EINVAL, proc.mprotect, A, P, PROT_READ | 0x10)
    fails(errno.EINVAL, proc.mprotect, A, P, PROT_GROWSDOWN | PROT_GROWSUP)
    fails(errno.EINVAL, proc.mprotect, A, P, PROT_READ | PROT_GROWSDOWN)  # no VMA grows
    fails(errno.ENOMEM, proc.mprotect, A - P, 2 * P, PROT_READ)  # hole at the start
    fails(errno.ENOMEM, proc.mprotect, A + 0x10_0000, P, PROT_READ)  # nothing mapped
    fails(errno.ENOMEM, proc.mprotect, A, (1 << 64) - P, PROT_READ)  # wraps
    proc.mprotect(A + 0x10_0000, 0, PROT_READ)  # length 0: nothing to do, no error
    assert spans(proc) == [(A, A + 2 * P, RW), (A + 3 * P, A + 4 * P, RW)]
    # A hole in the middle: the VMAs before it are changed all the same.
    fails(errno.ENOMEM, proc.mprotect, A, 4 * P, PROT_READ | PROT_SEM)
    assert spans(proc) == [(A, A + 2 * P, PROT_READ), (A + 3 * P, A + 4 * P, RW)]


def test_mprotect_splits_merges_and_changes_ptes(proc: Process) -> None:
    proc.mmap(A, 3 * P, RW, ANON | MAP_FIXED)
    proc.write_memory(A, b"y" * 3 * P)
    assert proc.mm.handle_fault(A + P, write=True)
    generation = proc.mm.generation
    proc.mprotect(A + P, P, PROT_READ | PROT_EXEC)
    assert proc.mm.generation > generation
    assert spans(proc) == [(A, A + P, RW), (A + P, A + 2 * P, PROT_READ | PROT_EXEC),
                           (A + 2 * P, A + 3 * P, RW)]
    assert (proc.mm.translate(A + P) or (0, 0))[1] == 1 | 4
    assert not proc.mm.handle_fault(A + P, write=True)
    assert proc.mm.handle_fault(A + P, exec=True)
    assert not proc.mm.handle_fault(A, exec=True)
    proc.mprotect(A + P, P, PROT_NONE)
    assert proc.mm.translate(A + P) is None and not proc.mm.handle_fault(A + P)
    assert proc.read_memory(A + P, 4) == b"yyyy"  # /proc/PID/mem ignores PROT_NONE
    proc.mprotect(A, 3 * P, RW)
    assert spans(proc) == [(A, A + 3 * P, RW)]
    assert proc.read_memory(A, 3 * P) == b"y" * 3 * P


# -- munmap -------------------------------------------------------------------------------------

def test_munmap(vm: vsgx.Machine, proc: Process) -> None:
    fails(errno.EINVAL, proc.munmap, A + 1, P)
    fails(errno.EINVAL, proc.munmap, A, 0)
    fails(errno.EINVAL, proc.munmap, TASK_SIZE, P)
    proc.munmap(A, P)  # nothing mapped there: no error
    free = vm.guest.memory.nr_free_pages
    proc.mmap(A, 3 * P, RW, ANON | MAP_FIXED)
    proc.write_memory(A, b"z" * 3 * P)
    proc.munmap(A + P, 1)  # the length is rounded up to a page
    assert spans(proc) == [(A, A + P, RW), (A + 2 * P, A + 3 * P, RW)]
    assert proc.mm.translate(A + P) is None and not proc.mm.handle_fault(A + P)
    proc.munmap(A, 3 * P)
    assert proc.mm.vmas() == [] and vm.guest.memory.nr_free_pages == free


def test_exit_frees_everything(vm: vsgx.Machine, proc: Process) -> None:
    free = vm.guest.memory.nr_free_pages
    proc.mmap(A, 8 * P, RW, ANON | MAP_FIXED)
    proc.write_memory(A, bytes(8 * P))
    proc.exit()
    assert proc.mm.vmas() == [] and vm.guest.memory.nr_free_pages == free


# -- /proc/PID/mem and the kernel's accesses -------------------------------------------------

def test_proc_mem_access(proc: Process) -> None:
    fails(errno.EIO, proc.read_memory, A, 1)
    fails(errno.EIO, proc.write_memory, A, b"x")
    assert proc.read_memory(A, 0) == b"" and proc.write_memory(A, b"") == 0
    proc.mmap(A, P, PROT_READ, ANON | MAP_FIXED)
    assert proc.write_memory(A + P - 2, b"abcd") == 2  # stops at the unmapped page
    assert proc.read_memory(A + P - 2, 4) == b"ab"
    proc.mmap(A + P, P, PROT_READ, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED)
    fails(errno.EIO, proc.write_memory, A + P, b"x")  # read-only shared: no COW to force


def test_pinned_user_page_is_the_process_memory(proc: Process) -> None:
    fails(errno.EFAULT, proc.mm.pin_user_page, A)
    proc.mmap(A, 2 * P, RW, ANON | MAP_FIXED)
    page = proc.mm.pin_user_page(A + P + 5)  # faulted in, the whole page
    assert len(page) == P and bytes(page) == bytes(P)
    page[8:12] = b"pin!"
    assert proc.read_memory(A + P + 8, 4) == b"pin!"
    proc.write_memory(A + P, b"back")
    assert bytes(page[:4]) == b"back"
    proc.mmap(A + 2 * P, P, PROT_READ, ANON | MAP_FIXED)
    fails(errno.EFAULT, proc.mm.pin_user_page, A + 2 * P)  # not writable


def test_kernel_pages_and_ram_exhaustion() -> None:
    args = list(MACHINE)
    args[args.index("-m") + 1] = "20M"
    with machine(args) as vm:
        memory = vm.guest.memory
        assert memory.total_pages == (20 - 16) * 256
        assert memory.nr_free_pages == memory.total_pages - 3  # the ENCLS operand pages
        proc = vm.guest.spawn()
        proc.mmap(A, 8 << 20, RW, ANON | MAP_FIXED)
        assert proc.mm.handle_fault(A, write=True)
        assert proc.mm.translate(A) == (KERNEL_RESERVED + 3 * P, 1 | 2)  # after the kernel's
        touched = 1
        while proc.mm.handle_fault(A + touched * P, write=True):
            touched += 1
        assert touched == memory.total_pages - 3 and memory.nr_free_pages == 0
        assert proc.write_memory(A + touched * P - 1, b"ab") == 1
        proc.munmap(A, P)
        assert proc.mm.handle_fault(A + touched * P, write=True)  # the freed page, reused
        assert proc.read_memory(A + touched * P, P) == bytes(P)
