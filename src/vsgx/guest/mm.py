"""A process's address space: its VMAs with Linux's ``mmap``/``mprotect``/``munmap``
semantics (``mm/mmap.c``, ``mm/mprotect.c``, ``mm/vma.c``, x86 ``arch_get_unmapped_area_topdown``),
its page table, the page-fault entry (``do_user_addr_fault`` + ``handle_mm_fault``) and the
kernel's accesses to user memory (``copy_from_user``, ``get_user_pages``, and
``access_remote_vm``, the core of ``/proc/PID/mem``).

The page table maps virtual pages to guest-physical pages. Anonymous memory is allocated on
first touch, as Linux does (the only difference: a read fault also gets a private zeroed page
instead of the shared zero page); its pages are freed when unmapped. File mappings (the
enclave) get their pages from their VMA operations' ``fault``, which installs a page-frame
number (``vmf_insert_pfn``); unmapping drops those PTEs and leaves the page to its owner.
A PTE's permissions are its VMA's, as ``mprotect``'s ``change_protection`` keeps them: x86 has
no write-only or execute-only pages, so any accessible page is readable, and a ``PROT_NONE``
page is not present.

:meth:`AddressSpace.translate` and :meth:`AddressSpace.handle_fault` are what an execution
engine needs: the hardware's view of the page table, and the kernel's fault handler.
:attr:`AddressSpace.generation` moves whenever a translation may have changed (a PTE added or
removed, a VMA's protection changed), so an engine that caches translations knows when to
flush them, as the kernel's TLB shootdowns would make it.

Not modelled: ASLR (the layout is that of ``setarch -R``), the bottom-up fallback of the
top-down search, ``MAP_SHARED_VALIDATE`` (a ``MAP_TYPE`` other than shared or private is
EINVAL) and flag bits other than those in :mod:`vsgx.guest.uapi` (ignored), stack guard gaps,
``RLIMIT_AS`` and the ``vm.max_map_count`` limit. Adjacent private anonymous VMAs with the
same flags are merged, as ``vma_merge`` does; shared ones never are.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntFlag
from typing import Protocol

from vsgx.arch import PAGE_SIZE
from vsgx.guest.memory import PhysicalMemory
from vsgx.guest.uapi import (
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_TYPE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    Errno,
    syscall_error,
)
from vsgx.guest.vfs import File

PAGE_MASK = ~(PAGE_SIZE - 1)
TASK_SIZE = (1 << 47) - PAGE_SIZE
"""x86-64 with 4-level paging: the top of user space (``TASK_SIZE_MAX``)."""
MMAP_MIN_ADDR = 0x10000
"""``vm.mmap_min_addr`` (Debian's default): unprivileged processes cannot map below it."""
MMAP_BASE = TASK_SIZE - (128 << 20)
"""``mmap_base`` without randomisation: TASK_SIZE less the 128 MiB minimum stack gap."""
_U64 = 1 << 64


class VmFlags(IntFlag):
    """``vm_flags`` bits (``include/linux/mm.h``); VM_MAY* are VM_* shifted left by 4."""

    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4
    SHARED = 0x8
    MAYREAD = 0x10
    MAYWRITE = 0x20
    MAYEXEC = 0x40
    MAYSHARE = 0x80
    PFNMAP = 0x400
    IO = 0x4000
    DONTEXPAND = 0x40000
    DONTDUMP = 0x400_0000


VM_ACCESS_FLAGS = int(VmFlags.READ | VmFlags.WRITE | VmFlags.EXEC)
PTE_R, PTE_W, PTE_X = 1, 2, 4
"""Permission bits :meth:`AddressSpace.translate` reports."""


def calc_vm_prot_bits(prot: int) -> int:
    """``calc_vm_prot_bits``: PROT_READ/WRITE/EXEC to VM_READ/WRITE/EXEC (same bit values)."""
    return prot & (PROT_READ | PROT_WRITE | PROT_EXEC)


def page_align(length: int) -> int:
    """``PAGE_ALIGN`` on an unsigned long (wraps to 0 past 2^64)."""
    return (length + PAGE_SIZE - 1) % _U64 & PAGE_MASK


class VmOperations(Protocol):
    """What a file mapping's ``vm_operations_struct`` provides (the enclave's ``sgx_vm_ops``)."""

    def fault(self, mm: AddressSpace, vma: Vma, addr: int) -> bool:
        """Install the page at ``addr`` (``mm.insert_pfn``); False is SIGBUS."""

    def mprotect(self, vma: Vma, start: int, end: int, newflags: int) -> None:
        """Approve new ``vm_flags`` for ``[start, end)``; raise the errno otherwise."""

    def access(self, vma: Vma, addr: int, buf: memoryview, write: bool) -> bool:
        """Debugger access to ``len(buf)`` bytes at ``addr`` (within a page); False fails."""


@dataclass(eq=False)
class Vma:
    """One ``vm_area_struct``: ``[start, end)``, ``flags`` (:class:`VmFlags` bits), and for a
    file mapping the file it holds a reference to and the operations its ``mmap`` set."""

    start: int
    end: int
    flags: int
    file: File | None = None
    ops: VmOperations | None = None

    @property
    def prot(self) -> int:
        """The PROT_* bits the mapping was given (``mmap``/``mprotect``)."""
        return self.flags & VM_ACCESS_FLAGS


class AddressSpace:
    """One process's ``mm_struct``: VMAs sorted by address, PTEs, and the mmap lock.

    ``node`` is the NUMA node the process runs on (``numa_node_id()`` in its context).
    ``generation`` counts the changes to translations (see the module documentation).
    """

    def __init__(self, memory: PhysicalMemory, node: int = 0) -> None:
        self.memory = memory
        self.node = node
        self.lock = threading.RLock()
        self._vmas: list[Vma] = []
        self._starts: list[int] = []
        self._ptes: dict[int, int] = {}
        self.generation = 0

    # -- lookups ------------------------------------------------------------------------------

    def vmas(self) -> list[Vma]:
        """A snapshot of the VMAs in address order (``/proc/PID/maps``)."""
        with self.lock:
            return [dataclasses.replace(vma) for vma in self._vmas]

    def ptes(self) -> dict[int, int]:
        """A snapshot of the page table: virtual page address -> guest-physical page."""
        with self.lock:
            return dict(self._ptes)

    def restore(self, vmas: list[Vma], ptes: dict[int, int]) -> None:
        """Take over a migrated address space: its VMAs (sorted, not overlapping, holding
        their files' references) and PTEs, as checked by the caller. The pages the PTEs
        name are in guest RAM (the migration stream carries it) or, for an enclave, in EPC
        the destination never had: using them faults as the EPCM says."""
        with self.lock:
            self._vmas = list(vmas)
            self._starts = [vma.start for vma in vmas]
            self._ptes = dict(ptes)
            self.generation += 1

    def vma_at(self, addr: int) -> Vma | None:
        """``vma_lookup``: the VMA containing ``addr``."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._vmas[i].end:
            return self._vmas[i]
        return None

    def _overlapping(self, start: int, end: int) -> Iterator[Vma]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        for vma in self._vmas[i:]:
            if vma.start >= end:
                break
            if vma.end > start:
                yield vma

    def _is_free(self, start: int, end: int) -> bool:
        return next(self._overlapping(start, end), None) is None

    # -- the hardware's view and the fault handler -------------------------------------------

    def translate(self, va: int) -> tuple[int, int] | None:
        """The PTE for ``va``: (guest-physical page address, permissions R=1 W=2 X=4), or None
        when no present PTE maps it (never touched, unmapped, or PROT_NONE)."""
        page = va & PAGE_MASK
        pa = self._ptes.get(page)
        if pa is None:
            return None
        vma = self.vma_at(page)
        if vma is None or not vma.flags & VM_ACCESS_FLAGS:
            return None
        perms = PTE_R
        if vma.flags & VmFlags.WRITE:
            perms |= PTE_W
        if vma.flags & VmFlags.EXEC:
            perms |= PTE_X
        return pa, perms

    def handle_fault(self, va: int, write: bool = False, exec: bool = False) -> bool:
        """A user-mode page fault at ``va`` (``do_user_addr_fault``): True when the kernel
        resolved it and the access can be retried, False when it must go to user space
        (SIGSEGV: no VMA or the VMA forbids the access; SIGBUS: the mapping's fault handler
        failed; out of memory). EPCM-induced faults (PFEC.SGX) always go to user space, so
        do not pass them here."""
        with self.lock:
            vma = self.vma_at(va)
            if vma is None or not vma.flags & VM_ACCESS_FLAGS:
                return False
            if (write and not vma.flags & VmFlags.WRITE) or (
                    exec and not vma.flags & VmFlags.EXEC):
                return False
            page = va & PAGE_MASK
            if page in self._ptes:
                return True
            if vma.ops is not None:
                return vma.ops.fault(self, vma, page)
            try:
                self._ptes[page] = self.memory.alloc_page()
            except OSError:
                return False
            self.generation += 1
            return True

    def insert_pfn(self, addr: int, pa: int) -> None:
        """``vmf_insert_pfn``: map the page at ``addr`` to physical page ``pa``."""
        self._ptes.setdefault(addr & PAGE_MASK, pa)
        self.generation += 1

    def zap_pte(self, addr: int, ops: VmOperations) -> None:
        """``zap_vma_ptes`` for one page, if the VMA there is a mapping with ``ops``."""
        with self.lock:
            vma = self.vma_at(addr)
            if vma is not None and vma.ops is ops:
                self._ptes.pop(addr & PAGE_MASK, None)
                self.generation += 1

    # -- mmap ---------------------------------------------------------------------------------

    def mmap(self, addr: int, length: int, prot: int, flags: int, file: File | None,
             pgoff: int) -> int:
        """``do_mmap`` + ``mmap_region``: map ``length`` bytes of ``file`` (anonymous memory
        when None) at page offset ``pgoff``; returns the address. Checks in the kernel's order;
        with MAP_FIXED the old mappings in the range are replaced only once the new one is
        accepted (as since Linux 6.12)."""
        if length == 0:
            raise syscall_error(Errno.EINVAL)
        if flags & MAP_FIXED_NOREPLACE:
            flags |= MAP_FIXED
        if not flags & MAP_FIXED:
            addr = self._round_hint_to_min(addr)
        length = page_align(length)
        if length == 0:
            raise syscall_error(Errno.ENOMEM)
        if pgoff + (length >> 12) >= _U64:
            raise syscall_error(Errno.EOVERFLOW)
        vm_flags = calc_vm_prot_bits(prot) | int(VmFlags.MAYREAD | VmFlags.MAYWRITE
                                                 | VmFlags.MAYEXEC)
        with self.lock:
            addr = self._get_unmapped_area(file, addr, length, flags)
            if flags & MAP_FIXED_NOREPLACE and not self._is_free(addr, addr + length):
                raise syscall_error(Errno.EEXIST)
            vm_flags = self._mapping_type(file, prot, flags, vm_flags, pgoff, length)
            vma = Vma(addr, addr + length, vm_flags, file)
            if file is not None:
                file.ops.mmap(file, self, vma)
                file.get()
            self._unmap(addr, addr + length)
            self._insert(vma)
            self._merge_around(addr, addr + length)
        return addr

    @staticmethod
    def _round_hint_to_min(hint: int) -> int:
        """``round_hint_to_min``: a hint below mmap_min_addr is raised to it."""
        hint &= PAGE_MASK
        if hint and hint < MMAP_MIN_ADDR:
            return page_align(MMAP_MIN_ADDR)
        return hint

    def _get_unmapped_area(self, file: File | None, addr: int, length: int, flags: int) -> int:
        """``__get_unmapped_area``: the file's (or the default) placement, then the checks on
        its result, and ``security_mmap_addr`` (EPERM below mmap_min_addr)."""
        if length > TASK_SIZE:
            raise syscall_error(Errno.ENOMEM)
        if file is not None:
            addr = file.ops.get_unmapped_area(file, self, addr, length, flags)
        else:
            addr = self.arch_get_unmapped_area(addr, length, flags)
        if addr > TASK_SIZE - length:
            raise syscall_error(Errno.ENOMEM)
        if addr & ~PAGE_MASK:
            raise syscall_error(Errno.EINVAL)
        if addr < MMAP_MIN_ADDR:
            raise syscall_error(Errno.EPERM)
        return addr

    def arch_get_unmapped_area(self, addr: int, length: int, flags: int) -> int:
        """``arch_get_unmapped_area_topdown``: MAP_FIXED takes ``addr`` as is; a free hint is
        honoured; otherwise the highest gap below ``mmap_base`` that fits (ENOMEM if none)."""
        if length > TASK_SIZE - MMAP_MIN_ADDR:
            raise syscall_error(Errno.ENOMEM)
        if flags & MAP_FIXED:
            return addr
        if addr:
            addr = page_align(addr)
            if MMAP_MIN_ADDR <= addr <= TASK_SIZE - length and self._is_free(addr,
                                                                               addr + length):
                return addr
        top = MMAP_BASE
        for vma in reversed(self._vmas):
            if vma.start >= top:
                continue
            if vma.end <= top - length:
                break
            top = vma.start
        if top - length < MMAP_MIN_ADDR:
            raise syscall_error(Errno.ENOMEM)
        return top - length

    @staticmethod
    def _mapping_type(file: File | None, prot: int, flags: int, vm_flags: int, pgoff: int,
                      length: int) -> int:
        """``do_mmap``'s checks of the mapping type against the file's mode; the VMA flags."""
        kind = flags & MAP_TYPE
        if file is None:
            if kind == MAP_SHARED:
                return vm_flags | int(VmFlags.SHARED | VmFlags.MAYSHARE)
            if kind != MAP_PRIVATE:
                raise syscall_error(Errno.EINVAL)
            return vm_flags
        max_size = (1 << 63) - 1  # file_mmap_ok: MAX_LFS_FILESIZE
        if pgoff > max_size >> 12 or length > max_size - (pgoff << 12):
            raise syscall_error(Errno.EOVERFLOW)
        if kind == MAP_SHARED:
            if prot & PROT_WRITE and not file.writable:
                raise syscall_error(Errno.EACCES)
            vm_flags |= int(VmFlags.SHARED | VmFlags.MAYSHARE)
            if not file.writable:
                vm_flags &= ~int(VmFlags.MAYWRITE | VmFlags.SHARED)
        elif kind != MAP_PRIVATE:
            raise syscall_error(Errno.EINVAL)
        if not file.readable:
            raise syscall_error(Errno.EACCES)
        return vm_flags

    # -- munmap -------------------------------------------------------------------------------

    def munmap(self, addr: int, length: int) -> None:
        """``do_vmi_munmap``: unmap ``[addr, addr + PAGE_ALIGN(length))``; unmapped parts of the
        range are no error."""
        if addr & ~PAGE_MASK or addr > TASK_SIZE or length > TASK_SIZE - addr:
            raise syscall_error(Errno.EINVAL)
        end = addr + page_align(length)
        if end == addr:
            raise syscall_error(Errno.EINVAL)
        with self.lock:
            self._unmap(addr, end)

    def exit_mmap(self) -> None:
        """Tear the address space down (process exit)."""
        with self.lock:
            self._unmap(0, TASK_SIZE)

    def _unmap(self, start: int, end: int) -> None:
        """Remove ``[start, end)`` from every VMA, splitting the ones that straddle an edge;
        anonymous pages are freed, file PTEs dropped and file references put."""
        removed = []
        self.generation += 1
        for vma in list(self._overlapping(start, end)):
            self._split(self._split(vma, start), end)
        for vma in list(self._overlapping(start, end)):
            self._remove(vma)
            removed.append(vma)
        for vma in removed:
            for page, pa in self._pages_in(vma.start, vma.end):
                del self._ptes[page]
                if vma.ops is None:
                    self.memory.free_page(pa)
            if vma.file is not None:
                vma.file.put()

    def _pages_in(self, start: int, end: int) -> list[tuple[int, int]]:
        """The PTEs in ``[start, end)``, walking whichever of the range and the table is
        smaller."""
        if (end - start) // PAGE_SIZE <= len(self._ptes):
            return [(page, self._ptes[page]) for page in range(start, end, PAGE_SIZE)
                    if page in self._ptes]
        return [(page, pa) for page, pa in self._ptes.items() if start <= page < end]

    # -- mprotect -----------------------------------------------------------------------------

    def mprotect(self, start: int, length: int, prot: int) -> None:
        """``do_mprotect_pkey``: VMA by VMA from ``start``, with the kernel's checks and its
        partial effect (VMAs changed before a hole or a refusal stay changed)."""
        grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
        prot &= ~grows
        if grows == PROT_GROWSDOWN | PROT_GROWSUP:
            raise syscall_error(Errno.EINVAL)
        if start & ~PAGE_MASK:
            raise syscall_error(Errno.EINVAL)
        if length == 0:
            return
        end = start + page_align(length)
        if end <= start or end >= _U64:
            raise syscall_error(Errno.ENOMEM)
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
            raise syscall_error(Errno.EINVAL)
        with self.lock:
            first = next(self._overlapping(start, end), None)
            if first is None:
                raise syscall_error(Errno.ENOMEM)
            if grows:  # no VMA here grows down or up (VM_GROWSDOWN / VM_GROWSUP)
                if grows & PROT_GROWSUP and first.start > start:
                    raise syscall_error(Errno.ENOMEM)
                raise syscall_error(Errno.EINVAL)
            if first.start > start:
                raise syscall_error(Errno.ENOMEM)
            try:
                self._mprotect_vmas(start, end, prot, first.start)
            finally:
                self._merge_around(start, end)

    def _mprotect_vmas(self, start: int, end: int, prot: int, tmp: int) -> None:
        """``do_mprotect_pkey``'s loop from the first VMA (which starts at ``tmp``): per VMA the
        VM_MAY* check (EACCES), the mapping's own ``mprotect``, ``mprotect_fixup``."""
        nstart = start
        for vma in list(self._overlapping(start, end)):
            if vma.start != tmp:
                raise syscall_error(Errno.ENOMEM)
            newflags = calc_vm_prot_bits(prot) | (vma.flags & ~VM_ACCESS_FLAGS)
            if newflags & ~(newflags >> 4) & VM_ACCESS_FLAGS:
                raise syscall_error(Errno.EACCES)
            tmp = min(vma.end, end)
            if vma.ops is not None:
                vma.ops.mprotect(vma, nstart, tmp, newflags)
            if newflags != vma.flags:  # mprotect_fixup
                piece = self._split(vma, nstart)
                self._split(piece, tmp)
                piece.flags = newflags
                self.generation += 1
            nstart = tmp
        if tmp < end:
            raise syscall_error(Errno.ENOMEM)

    # -- VMA list maintenance ----------------------------------------------------------------

    def _insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def _remove(self, vma: Vma) -> None:
        i = self._vmas.index(vma)
        del self._vmas[i]
        del self._starts[i]

    def _split(self, vma: Vma, at: int) -> Vma:
        """``split_vma``: cut ``vma`` at ``at`` when it lies strictly inside; ``vma`` keeps the
        lower part and the upper part is returned (``vma`` itself when there is no cut)."""
        if not vma.start < at < vma.end:
            return vma
        upper = Vma(at, vma.end, vma.flags, vma.file, vma.ops)
        if vma.file is not None:
            vma.file.get()
        vma.end = at
        self._insert(upper)
        return upper

    def _merge_around(self, start: int, end: int) -> None:
        """Merge private anonymous VMAs in and around ``[start, end)`` with equal neighbours."""
        i = max(bisect.bisect_right(self._starts, start) - 2, 0)
        while i + 1 < len(self._vmas) and self._vmas[i].start <= end:
            a, b = self._vmas[i], self._vmas[i + 1]
            if (a.end == b.start and a.flags == b.flags and a.ops is None and b.ops is None
                    and not a.flags & VmFlags.MAYSHARE):
                a.end = b.end
                del self._vmas[i + 1]
                del self._starts[i + 1]
            else:
                i += 1

    # -- kernel accesses to user memory ------------------------------------------------------

    def copy_from_user(self, addr: int, size: int) -> bytes:
        """``copy_from_user``: read user memory as the kernel does, faulting pages in through
        the page-fault path; EFAULT when a page cannot be read."""
        out = bytearray()
        for va, n in _chunks(addr, size):
            pa = self._user_page(va, write=False)
            out += self.memory.read(pa + (va & ~PAGE_MASK), n)
        return bytes(out)

    def copy_to_user(self, addr: int, data: bytes) -> None:
        """``copy_to_user``: the write counterpart of :meth:`copy_from_user`."""
        pos = 0
        for va, n in _chunks(addr, len(data)):
            pa = self._user_page(va, write=True)
            self.memory.write(pa + (va & ~PAGE_MASK), data[pos:pos + n])
            pos += n

    def _user_page(self, va: int, write: bool) -> int:
        """The physical page behind ``va`` for a kernel access, faulted in as needed."""
        if va >= TASK_SIZE:
            raise syscall_error(Errno.EFAULT)
        pte = self.translate(va)
        if pte is None or (write and not pte[1] & PTE_W):
            if not self.handle_fault(va, write=write):
                raise syscall_error(Errno.EFAULT)
            pte = self.translate(va)
            assert pte is not None
        return pte[0]

    def get_user_page(self, addr: int) -> bytes:
        """``get_user_pages(addr, 1, 0)`` and a copy of the page: EFAULT unless ``addr`` is in
        a readable VMA of ordinary memory (not VM_IO/VM_PFNMAP) whose page can be faulted in."""
        with self.lock:
            vma = self.vma_at(addr)
            if (vma is None or vma.flags & (VmFlags.IO | VmFlags.PFNMAP)
                    or not vma.flags & VmFlags.READ):
                raise syscall_error(Errno.EFAULT)
            return self.copy_from_user(addr & PAGE_MASK, PAGE_SIZE)

    def pin_user_page(self, addr: int) -> memoryview:
        """``get_user_pages(addr, 1, FOLL_WRITE)`` and ``kmap``: the page of ordinary,
        writable memory holding ``addr``, faulted in, as a view the caller reads and writes
        directly (what a user program's own loads and stores do). EFAULT unless ``addr`` is
        in a writable VMA of ordinary memory. The view stays valid until the page is unmapped
        (vsgx never swaps ordinary memory out)."""
        with self.lock:
            vma = self.vma_at(addr)
            if (vma is None or vma.flags & (VmFlags.IO | VmFlags.PFNMAP)
                    or not vma.flags & VmFlags.WRITE):
                raise syscall_error(Errno.EFAULT)
            return self.memory.kmap(self._user_page(addr & PAGE_MASK, write=True))

    def access_remote(self, addr: int, buf: memoryview, write: bool) -> int:
        """``access_remote_vm`` with FOLL_FORCE, as ``/proc/PID/mem`` uses it: copy between
        ``buf`` and the process, page by page, ignoring the VMAs' permissions (except that a
        read-only shared mapping cannot be written); VM_IO/VM_PFNMAP mappings go through their
        operations' ``access``. Returns how many bytes were done before the first failure."""
        done = 0
        with self.lock:
            for va, n in _chunks(addr, len(buf)):
                chunk = buf[done:done + n]
                vma = self.vma_at(va)
                if vma is None or not self._access_page(vma, va, chunk, write):
                    break
                done += n
        return done

    def _access_page(self, vma: Vma, va: int, chunk: memoryview, write: bool) -> bool:
        """One page of :meth:`access_remote` (``get_user_pages_remote`` with FOLL_FORCE, or the
        VMA's ``access`` when there is no page to pin)."""
        if vma.flags & (VmFlags.IO | VmFlags.PFNMAP):
            return vma.ops is not None and vma.ops.access(vma, va, chunk, write)
        page = va & PAGE_MASK
        pa = self._ptes.get(page)
        if write:
            cow = vma.flags & (VmFlags.SHARED | VmFlags.MAYWRITE) == VmFlags.MAYWRITE
            if not vma.flags & VmFlags.WRITE and not cow:
                return False
            if pa is None:
                try:
                    pa = self._ptes[page] = self.memory.alloc_page()
                except OSError:
                    return False
                self.generation += 1
            self.memory.write(pa + (va & ~PAGE_MASK), bytes(chunk))
        elif pa is None:  # an untouched anonymous page reads as the zero page
            chunk[:] = bytes(len(chunk))
        else:
            chunk[:] = self.memory.read(pa + (va & ~PAGE_MASK), len(chunk))
        return True


def _chunks(addr: int, size: int) -> Iterator[tuple[int, int]]:
    """``[addr, addr + size)`` cut at page boundaries: (address, length) pieces."""
    end = addr + size
    while addr < end:
        n = min(end, (addr & PAGE_MASK) + PAGE_SIZE) - addr
        yield addr, n
        addr += n
