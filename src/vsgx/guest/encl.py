"""One enclave as the guest kernel tracks it (``arch/x86/kernel/cpu/sgx/encl.c``): its pages
(``page_array``), version-array pages and slots, backing store, mappings, and the VMA operations
of its mappings (``sgx_vm_ops``: fault, mprotect, debugger access), ``sgx_encl_may_map`` and
``sgx_encl_release``.

Pages may be evicted by the reclaimer (:mod:`vsgx.guest.reclaim`). An evicted page keeps its
``page_array`` entry — address, maximum protection, type — with no EPC page and the VA slot
holding its version; its encrypted contents and PCMD are in the enclave's :class:`Backing`.
Whatever needs the page loads it back first (``__sgx_encl_load_page``: ELDU of the SECS if it
was evicted too, then of the page): the fault handler, the debugger access and the SGX2 ioctls
(through :meth:`Enclave.load_page`). Those load without reclaim while holding the enclave lock;
when no EPC page is free they drop the lock, run ``ksgxd`` (:meth:`Reclaimer.ksgxd`) and retry,
as Linux's fault returns VM_FAULT_NOPAGE and faults again once ``ksgxd`` has freed pages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from vsgx.arch import PAGE_SIZE, VA_SLOTS_PER_PAGE, PageType
from vsgx.cpu.encls_paging import VA_SLOT_SIZE
from vsgx.guest.backing import Backing
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
_ALL_SLOTS = (1 << VA_SLOTS_PER_PAGE) - 1


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
class VaPage:
    """``struct sgx_va_page``: a version-array EPC page and a bitmap of its slots in use."""

    epc_page: EpcPage
    slots: int = 0

    @property
    def pa(self) -> int:
        return self.epc_page.pa

    @property
    def full(self) -> bool:
        """``sgx_va_page_full``."""
        return self.slots == _ALL_SLOTS

    @property
    def nr_used(self) -> int:
        """How many slots hold the version of an evicted page."""
        return self.slots.bit_count()

    def alloc_slot(self) -> int:
        """``sgx_alloc_va_slot``: take the first free slot; its byte offset in the page."""
        slot = (~self.slots & (self.slots + 1)).bit_length() - 1
        assert slot < VA_SLOTS_PER_PAGE, "sgx_encl_grow keeps a slot for every page"
        self.slots |= 1 << slot
        return slot * VA_SLOT_SIZE

    def free_slot(self, offset: int) -> None:
        """``sgx_free_va_slot``."""
        self.slots &= ~(1 << offset // VA_SLOT_SIZE)


class VaSlot(NamedTuple):
    """Where an evicted page's version is: a VA page and the slot's offset in it (Linux keeps
    the VA page in ``encl_page->va_page`` and the offset in ``desc`` bits 11:3)."""

    page: VaPage
    offset: int

    @property
    def pa(self) -> int:
        return self.page.pa + self.offset


@dataclass(eq=False)
class EnclPage:
    """``struct sgx_encl_page``: an enclave page's address, the strongest protection it may be
    mapped with, its page type (as the kernel last set it), its EPC page while resident
    (``resident``, Linux's ``epc_page``) and, while evicted, the VA slot of its version."""

    addr: int
    vm_max_prot_bits: int
    type: PageType
    resident: EpcPage | None
    va_slot: VaSlot | None = None

    @property
    def epc_page(self) -> EpcPage:
        """The resident EPC page. Holding the enclave lock, a page obtained from
        :meth:`Enclave.load_page` (or just added) is resident."""
        assert self.resident is not None, "the enclave page is evicted"
        return self.resident


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
        """The SECS's EPC page; None before ECREATE and while the SECS is evicted."""
        self.secs_va_slot: VaSlot | None = None
        """The VA slot of the evicted SECS's version."""
        self.secs_child_cnt = 0
        """How many of the enclave's pages are resident."""
        self.page_cnt = 0
        self.va_pages: list[VaPage] = []
        """``encl->va_pages``: VA pages with a free slot first, full ones at the tail."""
        self.page_array: dict[int, EnclPage] = {}
        self.mms: set[AddressSpace] = set()
        """``mm_list``: the address spaces that have mapped the enclave."""
        self._backing: Backing | None = None

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
        """The SECS page's physical address (the enclave must have been created, and the SECS
        be resident: it is while any of its pages is)."""
        assert self.secs is not None
        return self.secs.pa

    @property
    def backing(self) -> Backing:
        """The backing store, created on first use (Linux creates its shmem file at ECREATE;
        it takes no memory until written)."""
        if self._backing is None:
            self._backing = Backing(self.size)
        return self._backing

    @property
    def backing_if_created(self) -> Backing | None:
        """The backing store if :attr:`backing` has created it (what a migration carries)."""
        return self._backing

    def adopt_backing(self, backing: Backing | None) -> None:
        """Take over a migrated enclave's backing store."""
        self._backing = backing

    def grow(self, *, reclaim: bool, node: int) -> VaPage | None:
        """``sgx_encl_grow``: count one more page and, every 512 pages, add a VA page (EPA) at
        the head of the list, which is returned so that :meth:`shrink` can undo it."""
        va_page = None
        if self.page_cnt % VA_SLOTS_PER_PAGE == 0:
            va_page = VaPage(self.epc.alloc_va_page(reclaim=reclaim, node=node))
            self.va_pages.insert(0, va_page)
        self.page_cnt += 1
        return va_page

    def shrink(self, va_page: VaPage | None) -> None:
        """``sgx_encl_shrink``: undo :meth:`grow`."""
        self.page_cnt -= 1
        if va_page is not None:
            self.va_pages.remove(va_page)
            self.epc.encl_free(va_page.epc_page)

    def alloc_va_slot(self) -> VaSlot:
        """The slot ``sgx_encl_ewb`` takes: the first free one of the first VA page, which
        moves to the tail once full. :meth:`grow` keeps a slot for every page."""
        va_page = self.va_pages[0]
        slot = VaSlot(va_page, va_page.alloc_slot())
        if va_page.full:
            self.va_pages.append(self.va_pages.pop(0))
        return slot

    def free_va_slot(self, slot: VaSlot) -> None:
        """``sgx_free_va_slot``; the VA page, no longer full, moves to the head."""
        slot.page.free_slot(slot.offset)
        self.va_pages.remove(slot.page)
        self.va_pages.insert(0, slot.page)

    def resident_entry(self, page: EpcPage) -> EnclPage | None:
        """The enclave page whose EPC page ``page`` is, if it is still one of this enclave's
        resident pages (the reclaimer's check, under the lock, of a page it took off its
        list)."""
        entry = page.owner
        if (isinstance(entry, EnclPage) and entry.resident is page
                and self.page_array.get(entry.addr) is entry):
            return entry
        return None

    def zap_ptes(self, addr: int) -> None:
        """``sgx_zap_enclave_ptes``: drop the PTEs mapping ``addr`` in every address space."""
        for mm in list(self.mms):
            mm.zap_pte(addr, self)

    # -- loading pages (ELDU) ------------------------------------------------------------------

    def load_page(self, addr: int, *, node: int = 0) -> EnclPage:
        """``sgx_encl_load_page``: the page at ``addr``, loaded back if evicted (EPC from
        ``node`` first; the SGX2 ioctls leave it at node 0). EFAULT if the enclave has no page
        there or ELDU fails, EBUSY if no EPC page is free. Hold the lock."""
        entry = self.page_array.get(addr)
        if entry is None:
            raise syscall_error(Errno.EFAULT)
        self._load(entry, node)
        return entry

    def _load_page_in_vma(self, addr: int, vm_flags: int, node: int) -> EnclPage:
        """``sgx_encl_load_page_in_vma``: :meth:`load_page`, EFAULT before loading anything
        when the VMA's protection exceeds the page's maximum."""
        entry = self.page_array.get(addr)
        prot = vm_flags & VM_ACCESS_FLAGS
        if entry is None or entry.vm_max_prot_bits & prot != prot:
            raise syscall_error(Errno.EFAULT)
        self._load(entry, node)
        return entry

    def _load(self, entry: EnclPage, node: int) -> None:
        """``__sgx_encl_load_page``: if ``entry`` is evicted, load the SECS if it is evicted
        too, then ELDU the page, which becomes resident and reclaimable again."""
        if entry.resident is not None:
            return
        self._load_secs(node)
        assert entry.va_slot is not None
        page = self._eldu(entry.va_slot, (entry.addr - self.base) // PAGE_SIZE, entry.addr,
                          self.secs_pa, entry, node)
        entry.resident, entry.va_slot = page, None
        self.secs_child_cnt += 1
        self.epc.reclaimer.mark_page_reclaimable(page, self)

    def _load_secs(self, node: int) -> None:
        """``sgx_encl_load_secs``: ELDU of an evicted SECS from backing index size / 4096."""
        if self.secs is None:
            assert self.secs_va_slot is not None
            self.secs = self._eldu(self.secs_va_slot, self.size // PAGE_SIZE, 0, 0, self, node)
            self.secs_va_slot = None

    def _eldu(self, slot: VaSlot, index: int, addr: int, secs_pa: int, owner: object,
              node: int) -> EpcPage:
        """``sgx_encl_eldu`` + ``__sgx_encl_eldu``: a new EPC page for ``owner`` (without
        reclaim: EBUSY), ELDU of backing page ``index`` into it, and the backing discarded
        either way. On success the VA slot is freed; otherwise (EFAULT) the page is lost, its
        slot stays taken, and the EPC page goes back."""
        epc_page = self.epc.alloc(owner, reclaim=False, node=node)
        contents, pcmd = self.backing.load(index)
        ret = self.encls.eldu(epc_page.pa, slot.pa, secs_pa, addr, pcmd, contents)
        self.backing.discard(index)
        if ret:
            self.epc.encl_free(epc_page)
            raise syscall_error(Errno.EFAULT)
        self.free_va_slot(slot)
        return epc_page

    def _retry_reclaiming(self, op: Callable[[], None]) -> bool:
        """Run ``op``, which takes the lock and allocates EPC without reclaim; False if it
        fails. When no EPC page was free (EBUSY) run ``ksgxd`` now that the lock is dropped,
        and retry while it frees pages (Linux: VM_FAULT_NOPAGE, the access faults again once
        ``ksgxd`` has run). An allocation that woke ``ksgxd`` has it run before returning."""
        ksgxd = self.epc.reclaimer.ksgxd
        while True:
            try:
                op()
            except OSError as exc:
                if exc.errno != Errno.EBUSY or not ksgxd():
                    return False
            else:
                ksgxd()
                return True

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
        """``sgx_vma_fault``: map the enclave page at ``addr``, loading it back if evicted.
        With SGX2 an address that has no page gets one by EAUG (:meth:`_eaug_page`);
        otherwise the page must exist and allow the VMA's protection. False is SIGBUS."""
        if self.sgx2 and addr not in self.page_array:
            return self._eaug_page(mm, addr)
        return self._retry_reclaiming(lambda: self._map_page(mm, vma, addr))

    def _map_page(self, mm: AddressSpace, vma: Vma, addr: int) -> None:
        with self.lock:
            entry = self._load_page_in_vma(addr, vma.flags, mm.node)
            mm.insert_pfn(addr, entry.epc_page.pa)

    def _eaug_page(self, mm: AddressSpace, addr: int) -> bool:
        """``sgx_encl_eaug_page``: add a pending page to an initialized enclave with EAUG and
        map it, loading the SECS first if evicted and allocating EPC without reclaim. Its
        maximum protection is RWX: the enclave sets the real permissions with EACCEPT,
        EACCEPTCOPY and EMODPE."""
        if not self.initialized:
            return False
        return self._retry_reclaiming(lambda: self._eaug(mm, addr))

    def _eaug(self, mm: AddressSpace, addr: int) -> None:
        with self.lock:
            self._load_secs(mm.node)
            epc_page = self.epc.alloc(None, reclaim=False, node=mm.node)
            try:
                va_page = self.grow(reclaim=False, node=mm.node)
            except OSError:
                self.epc.encl_free(epc_page)
                raise
            if addr in self.page_array or self.encls.eaug(self.secs_pa, addr, epc_page.pa):
                self.shrink(va_page)
                self.epc.encl_free(epc_page)
                raise syscall_error(Errno.EFAULT)
            entry = EnclPage(addr, VM_ACCESS_FLAGS, PageType.PT_REG, epc_page)
            epc_page.owner = entry
            self.page_array[addr] = entry
            self.secs_child_cnt += 1
            self.epc.reclaimer.mark_page_reclaimable(epc_page, self)
            mm.insert_pfn(addr, epc_page.pa)

    def mprotect(self, vma: Vma, start: int, end: int, newflags: int) -> None:
        """``sgx_vma_mprotect``: the new protection must pass :meth:`may_map`."""
        self.may_map(start, end, newflags)

    def access(self, vma: Vma, addr: int, buf: memoryview, write: bool) -> bool:
        """``sgx_vma_access`` (ptrace, ``/proc/PID/mem``): only a DEBUG enclave, the page
        loaded back if evicted, 8 bytes at a time with EDBGRD (and EDBGWR for a write, after
        merging the new bytes into the word). Fails if the page is missing, exceeds the VMA's
        protection, cannot be loaded, or a leaf fails."""
        return self.debug and self._retry_reclaiming(
            lambda: self._access_page(vma, addr, buf, write))

    def _access_page(self, vma: Vma, addr: int, buf: memoryview, write: bool) -> None:
        with self.lock:
            page_pa = self._load_page_in_vma(addr & _PAGE_MASK, vma.flags, 0).epc_page.pa
            i = 0
            while i < len(buf):
                va = addr + i
                offset = va & (_WORD - 1)
                cnt = min(_WORD - offset, len(buf) - i)
                self._access_word(page_pa + (va & ~_PAGE_MASK & ~(_WORD - 1)),
                                  buf[i:i + cnt], offset, write)
                i += cnt

    def _access_word(self, epc_addr: int, chunk: memoryview, offset: int, write: bool) -> None:
        """EDBGRD of the word at ``epc_addr``; copy ``chunk`` (at ``offset`` in it) out, or in
        and EDBGWR it back. EIO if a leaf fails."""
        ret, value = self.encls.edbgrd(epc_addr)
        if ret:
            raise syscall_error(Errno.EIO)
        word = bytearray(value.to_bytes(_WORD, "little"))
        if not write:
            chunk[:] = word[offset:offset + len(chunk)]
            return
        word[offset:offset + len(chunk)] = chunk
        if self.encls.edbgwr(epc_addr, int.from_bytes(word, "little")):
            raise syscall_error(Errno.EIO)

    # -- teardown -----------------------------------------------------------------------------

    def release(self) -> None:
        """``sgx_encl_release``, once no file or mapping refers to the enclave: EREMOVE every
        resident enclave page, then the SECS (only if no child is left: a page EREMOVE refused
        keeps it), then the VA pages; drop the backing store and the evicted pages' slots."""
        with self.lock:
            for entry in self.page_array.values():
                if entry.resident is not None:
                    self.epc.encl_free(entry.resident)
                    self.secs_child_cnt -= 1
            self.page_array.clear()
            if not self.secs_child_cnt and self.secs is not None:
                self.epc.encl_free(self.secs)
                self.secs = None
            for va_page in self.va_pages:
                self.epc.encl_free(va_page.epc_page)
            self.va_pages.clear()
            self.secs_va_slot = None
            self._backing = None
            self.mms.clear()
