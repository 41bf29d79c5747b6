"""One enclave as the guest kernel tracks it (``arch/x86/kernel/cpu/sgx/encl.c``): its pages
(``page_array``), version-array pages, mappings, and the VMA operations of its mappings
(``sgx_vm_ops``: fault, mprotect, debugger access), ``sgx_encl_may_map`` and
``sgx_encl_release``.

Every enclave page stays resident: there is no reclaimer yet, so ``page_array`` entries always
have their EPC page and the eviction paths of ``__sgx_encl_load_page`` (ELDU of the page and
of an evicted SECS) never run. VA pages are allocated as Linux allocates them (one per 512
enclave pages, the SECS included) so that a reclaimer finds them in place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from vsgx.arch import PAGE_SIZE, VA_SLOTS_PER_PAGE, PageType
from vsgx.guest.epc import EpcAllocator, EpcPage
from vsgx.guest.mm import VM_ACCESS_FLAGS, AddressSpace, Vma, VmFlags
from vsgx.guest.uapi import (
    SGX_SECINFO_PAGE_TYPE_MASK,
    SGX_SECINFO_R,
    SGX_SECINFO_TCS,
    SGX_SECINFO_W,
    SGX_SECINFO_X,
    Errno,
    syscall_error,
)

_PAGE_MASK = ~(PAGE_SIZE - 1)
_WORD = 8


def vm_max_prot_bits(secinfo_flags: int) -> int:
    """``sgx_encl_page_alloc``'s maximum protection: the SECINFO permissions as VM_READ/
    VM_WRITE/VM_EXEC, and read/write for a TCS (whose EPCM permissions the CPU zeroes)."""
    prot = 0
    if secinfo_flags & SGX_SECINFO_R:
        prot |= VmFlags.READ
    if secinfo_flags & SGX_SECINFO_W:
        prot |= VmFlags.WRITE
    if secinfo_flags & SGX_SECINFO_X:
        prot |= VmFlags.EXEC
    if secinfo_flags & SGX_SECINFO_PAGE_TYPE_MASK == SGX_SECINFO_TCS:
        prot |= VmFlags.READ | VmFlags.WRITE
    return int(prot)


@dataclass(eq=False)
class EnclPage:
    """``struct sgx_encl_page``: an enclave page's address, the strongest protection it may be
    mapped with, its page type (as the kernel last set it) and its EPC page."""

    addr: int
    vm_max_prot_bits: int
    type: PageType
    epc_page: EpcPage


class Enclave:
    """``struct sgx_encl``. ``lock`` is ``encl->lock``; take an address space's lock before it,
    never after (``mmap_lock`` comes first in Linux too)."""

    def __init__(self, epc: EpcAllocator, *, sgx2: bool) -> None:
        self.epc = epc
        self.encls = epc.encls
        self.sgx2 = sgx2
        self.lock = threading.Lock()
        self._ioctl_lock = threading.Lock()
        self._in_ioctl = False
        self.created = False
        self.initialized = False
        self.debug = False
        self.base = 0
        self.size = 0
        self.attributes = 0
        self.attributes_mask = 0
        self.secs: EpcPage | None = None
        self.secs_child_cnt = 0
        self.page_cnt = 0
        self.va_pages: list[EpcPage] = []
        self.page_array: dict[int, EnclPage] = {}
        self.mms: set[AddressSpace] = set()
        """``mm_list``: the address spaces that have mapped the enclave."""

    # -- the per-fd ioctl flag (SGX_ENCL_IOCTL) -------------------------------------------------

    def begin_ioctl(self) -> bool:
        """``test_and_set_bit(SGX_ENCL_IOCTL)``: False when an ioctl is already running."""
        with self._ioctl_lock:
            busy = self._in_ioctl
            self._in_ioctl = True
            return not busy

    def end_ioctl(self) -> None:
        with self._ioctl_lock:
            self._in_ioctl = False

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def secs_pa(self) -> int:
        """The SECS page's physical address (the enclave must have been created)."""
        assert self.secs is not None
        return self.secs.pa

    def grow(self, *, reclaim: bool, node: int) -> EpcPage | None:
        """``sgx_encl_grow``: count one more page and, every 512 pages, add a VA page (EPA),
        which is returned so that :meth:`shrink` can undo it."""
        va_page = None
        if self.page_cnt % VA_SLOTS_PER_PAGE == 0:
            va_page = self.epc.alloc_va_page(reclaim=reclaim, node=node)
            self.va_pages.insert(0, va_page)
        self.page_cnt += 1
        return va_page

    def shrink(self, va_page: EpcPage | None) -> None:
        """``sgx_encl_shrink``: undo :meth:`grow`."""
        self.page_cnt -= 1
        if va_page is not None:
            self.va_pages.remove(va_page)
            self.epc.encl_free(va_page)

    def load_page(self, addr: int) -> EnclPage:
        """``sgx_encl_load_page``: the page at ``addr``; EFAULT if the enclave has none."""
        entry = self.page_array.get(addr)
        if entry is None:
            raise syscall_error(Errno.EFAULT)
        return entry

    def _load_page_in_vma(self, addr: int, vm_flags: int) -> EnclPage:
        """``sgx_encl_load_page_in_vma``: also EFAULT when the VMA's protection exceeds the
        page's maximum."""
        entry = self.load_page(addr)
        prot = vm_flags & VM_ACCESS_FLAGS
        if entry.vm_max_prot_bits & prot != prot:
            raise syscall_error(Errno.EFAULT)
        return entry

    def zap_ptes(self, addr: int) -> None:
        """``sgx_zap_enclave_ptes``: drop the PTEs mapping ``addr`` in every address space."""
        for mm in list(self.mms):
            mm.zap_pte(addr, self)

    # -- mapping ------------------------------------------------------------------------------

    def may_map(self, start: int, end: int, vm_flags: int) -> None:
        """``sgx_encl_may_map``: EACCES when an initialized enclave is mapped outside ELRANGE,
        or when ``vm_flags`` ask for a protection some page in ``[start, end)`` does not allow.
        Ranges without pages are allowed (SGX2 fills them on fault). vsgx's processes never
        have the READ_IMPLIES_EXEC personality the kernel also refuses."""
        if self.initialized and (start < self.base or end > self.base + self.size):
            raise syscall_error(Errno.EACCES)
        prot = vm_flags & VM_ACCESS_FLAGS
        with self.lock:
            for addr in self._addresses_in(start, end):
                if ~self.page_array[addr].vm_max_prot_bits & prot:
                    raise syscall_error(Errno.EACCES)

    def _addresses_in(self, start: int, end: int) -> list[int]:
        if (end - start) // PAGE_SIZE <= len(self.page_array):
            return [a for a in range(start, end, PAGE_SIZE) if a in self.page_array]
        return sorted(a for a in self.page_array if start <= a < end)

    # -- sgx_vm_ops ---------------------------------------------------------------------------

    def fault(self, mm: AddressSpace, vma: Vma, addr: int) -> bool:
        """``sgx_vma_fault``: map the enclave page at ``addr``. With SGX2 an address that has
        no page gets one by EAUG (:meth:`_eaug_page`); otherwise the page must exist and allow
        the VMA's protection. False is SIGBUS."""
        if self.sgx2 and addr not in self.page_array:
            return self._eaug_page(mm, addr)
        with self.lock:
            try:
                entry = self._load_page_in_vma(addr, vma.flags)
            except OSError:
                return False
            mm.insert_pfn(addr, entry.epc_page.pa)
        return True

    def _eaug_page(self, mm: AddressSpace, addr: int) -> bool:
        """``sgx_encl_eaug_page``: add a pending page to an initialized enclave with EAUG,
        allocating EPC without reclaim, and map it. Its maximum protection is RWX: the
        enclave sets the real permissions with EACCEPT, EACCEPTCOPY and EMODPE."""
        if not self.initialized:
            return False
        with self.lock:
            try:
                epc_page = self.epc.alloc(None, reclaim=False, node=mm.node)
            except OSError:
                return False
            try:
                va_page = self.grow(reclaim=False, node=mm.node)
            except OSError:
                self.epc.encl_free(epc_page)
                return False
            if addr in self.page_array or self.encls.eaug(self.secs_pa, addr, epc_page.pa):
                self.shrink(va_page)
                self.epc.encl_free(epc_page)
                return False
            entry = EnclPage(addr, VM_ACCESS_FLAGS, PageType.PT_REG, epc_page)
            epc_page.owner = entry
            self.page_array[addr] = entry
            self.secs_child_cnt += 1
            mm.insert_pfn(addr, epc_page.pa)
        return True

    def mprotect(self, vma: Vma, start: int, end: int, newflags: int) -> None:
        """``sgx_vma_mprotect``: the new protection must pass :meth:`may_map`."""
        self.may_map(start, end, newflags)

    def access(self, vma: Vma, addr: int, buf: memoryview, write: bool) -> bool:
        """``sgx_vma_access`` (ptrace, ``/proc/PID/mem``): only a DEBUG enclave, 8 bytes at a
        time with EDBGRD (and EDBGWR for a write, after merging the new bytes into the word).
        Fails if the page is missing, exceeds the VMA's protection, or a leaf fails."""
        if not self.debug:
            return False
        i = 0
        while i < len(buf):
            va = addr + i
            offset = va & (_WORD - 1)
            cnt = min(_WORD - offset, len(buf) - i)
            with self.lock:
                try:
                    entry = self._load_page_in_vma(va & _PAGE_MASK, vma.flags)
                except OSError:
                    return False
                epc_addr = entry.epc_page.pa + (va & ~_PAGE_MASK & ~(_WORD - 1))
                ret, value = self.encls.edbgrd(epc_addr)
                if ret:
                    return False
                word = bytearray(value.to_bytes(_WORD, "little"))
                if write:
                    word[offset:offset + cnt] = buf[i:i + cnt]
                    if self.encls.edbgwr(epc_addr, int.from_bytes(word, "little")):
                        return False
                else:
                    buf[i:i + cnt] = word[offset:offset + cnt]
            i += cnt
        return True

    # -- teardown -----------------------------------------------------------------------------

    def release(self) -> None:
        """``sgx_encl_release``, once no file or mapping refers to the enclave: EREMOVE every
        enclave page, then the SECS (only if no child is left: a page EREMOVE refused keeps
        it), then the VA pages."""
        for entry in self.page_array.values():
            self.epc.encl_free(entry.epc_page)
            self.secs_child_cnt -= 1
        self.page_array.clear()
        if not self.secs_child_cnt and self.secs is not None:
            self.epc.encl_free(self.secs)
            self.secs = None
        for va_page in self.va_pages:
            self.epc.encl_free(va_page)
        self.va_pages.clear()
        self.mms.clear()

