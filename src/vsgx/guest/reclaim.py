"""The EPC reclaimer (``arch/x86/kernel/cpu/sgx/main.c``: ``sgx_active_page_list``,
``sgx_mark_page_reclaimable``, ``sgx_unmark_page_reclaimable``, ``sgx_reclaim_pages``,
``sgx_reclaimer_block``, ``sgx_reclaimer_write``, ``sgx_encl_ewb``, ``ksgxd``).

Enclave pages join the tail of the active list once they hold data (after ADD_PAGES, EAUG and
ELDU) and leave it when freed. :meth:`Reclaimer.reclaim_pages` takes up to SGX_NR_TO_SCAN pages
from its head and, per enclave: zaps their PTEs in every address space mapping the enclave
(each such address space's ``generation`` moves, so vCPUs flush their cached translations),
EBLOCKs them, runs one ETRACK, takes a VA slot for each and EWBs them into the enclave's
backing store (:mod:`vsgx.guest.backing`). A page EWB refuses with SGX_NOT_TRACKED is retried
after another ETRACK, then after :attr:`Reclaimer.kick_enclave_threads` — Linux's IPI to the
enclave's CPUs. An initialized enclave left without resident children has its SECS evicted too
(to backing index ``size / 4096``). The fault path loads pages back (:mod:`vsgx.guest.encl`).

Linux reclaims from two places, both run synchronously here: ``sgx_alloc_epc_page`` reclaims
directly when no page is free and the caller may block (``reclaim=True``), and ``ksgxd``, which
an allocation wakes when fewer than SGX_NR_LOW_PAGES pages are left and which then reclaims
until SGX_NR_HIGH_PAGES are free. vsgx has no kernel thread: :meth:`Reclaimer.wake` records the
wake-up and :meth:`Reclaimer.ksgxd` does that work in the caller's thread, at the next point
where it holds no enclave lock — the end of an allocation that may reclaim, or the end of a
fault or debugger access, which allocate without reclaim.

Locking: the reclaimer runs in whatever thread allocated, which may hold an address space's
lock (a fault) — so it never waits for a lock. An enclave whose lock, or an address space whose
lock, another thread holds has its pages put back on the tail of the list for a later pass.

Not modelled: the accessed-bit check (``sgx_reclaimer_age`` skips pages whose PTE is young), as
vsgx's page tables have no accessed bits; pages are reclaimed in list (FIFO) order.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from vsgx.arch import PAGE_SIZE, SgxError
from vsgx.cpu import EvictedPage

if TYPE_CHECKING:
    from vsgx.guest.encl import Enclave, EnclPage, VaSlot
    from vsgx.guest.epc import EpcAllocator, EpcPage

SGX_NR_TO_SCAN = 16
SGX_NR_LOW_PAGES = 32
SGX_NR_HIGH_PAGES = 64

_EBLOCK_OK = (0, int(SgxError.SGX_BLKSTATE))
"""EBLOCK statuses after which EWB can proceed (BLKSTATE: a failed eviction left it blocked)."""


def _no_kick(encl: Enclave) -> None:
    """The default :attr:`Reclaimer.kick_enclave_threads`: nothing runs enclaves."""


class Reclaimer:
    """``sgx_active_page_list`` and the reclaimer of the EPC pages of ``epc``."""

    def __init__(self, epc: EpcAllocator) -> None:
        self._epc = epc
        self._lock = threading.Lock()
        self._active: dict[EpcPage, Enclave] = {}
        """The reclaimable pages and their enclaves, oldest (the list's head) first."""
        self._woken = False
        self.kick_enclave_threads: Callable[[Enclave], None] = _no_kick
        """Linux's IPI to the CPUs running ``encl`` (``sgx_encl_ewb``'s slow path): called
        when EWB still reports SGX_NOT_TRACKED after a second ETRACK. Whoever runs enclaves
        (the execution engine) must set it, and force an AEX on every thread inside the
        enclave (``SgxProcessor.thread_exited``) before it returns; EWB is then retried. By
        default nothing runs enclaves and it does nothing; a page whose EWB still fails is
        left resident, blocked, back on the tail of the list."""

    # -- the active list ----------------------------------------------------------------------

    @property
    def nr_reclaimable(self) -> int:
        """How many pages are on the active list."""
        return len(self._active)

    def active_pages(self) -> list[tuple[EpcPage, Enclave]]:
        """The active list, head first."""
        with self._lock:
            return list(self._active.items())

    def restore(self, active: list[tuple[EpcPage, Enclave]]) -> None:
        """Take over a migrated kernel's active list (head first)."""
        with self._lock:
            self._active = dict(active)

    def mark_page_reclaimable(self, page: EpcPage, encl: Enclave) -> None:
        """``sgx_mark_page_reclaimable``: ``page``, an enclave page of ``encl`` now holding
        data, goes to the tail of the active list."""
        with self._lock:
            self._active.pop(page, None)
            self._active[page] = encl

    def unmark_page_reclaimable(self, page: EpcPage) -> None:
        """``sgx_unmark_page_reclaimable``: ``page`` leaves the active list (it is being freed;
        a pass that has already taken it finds it gone from its enclave)."""
        with self._lock:
            self._active.pop(page, None)

    def _isolate(self) -> dict[Enclave, list[EpcPage]]:
        """Up to SGX_NR_TO_SCAN pages off the head of the list, by enclave, in list order."""
        with self._lock:
            batch = list(itertools.islice(self._active.items(), SGX_NR_TO_SCAN))
            for page, _ in batch:
                del self._active[page]
        groups: dict[Enclave, list[EpcPage]] = {}
        for page, encl in batch:
            groups.setdefault(encl, []).append(page)
        return groups

    def _put_back(self, encl: Enclave, pages: list[EpcPage]) -> None:
        """Pages a pass could not reclaim go back to the tail (unless marked again since)."""
        with self._lock:
            for page in pages:
                self._active.setdefault(page, encl)

    # -- ksgxd --------------------------------------------------------------------------------

    def wake(self) -> None:
        """``wake_up(&ksgxd_waitq)``: :meth:`ksgxd` has work."""
        self._woken = True

    def ksgxd(self) -> int:
        """One round of ``ksgxd``, if :meth:`wake` woke it: reclaim while fewer than
        SGX_NR_HIGH_PAGES pages are free and some are reclaimable (``sgx_should_reclaim``),
        stopping early when a pass frees nothing. Returns how many pages it freed. The caller
        must hold no enclave lock (its enclave's pages would be skipped)."""
        if not self._woken:
            return 0
        self._woken = False
        freed = 0
        while self._epc.nr_free_pages < SGX_NR_HIGH_PAGES and self._active:
            done = self.reclaim_pages()
            if not done:
                break
            freed += done
        return freed

    # -- sgx_reclaim_pages --------------------------------------------------------------------

    def reclaim_pages(self) -> int:
        """``sgx_reclaim_pages``: evict up to SGX_NR_TO_SCAN pages from the head of the active
        list (and the SECS of enclaves left without resident children) and free their EPC
        pages. Returns how many EPC pages were freed."""
        freed: list[EpcPage] = []
        for encl, pages in self._isolate().items():
            freed += self._reclaim_from(encl, pages)
        for page in freed:
            self._epc.free(page)
        return len(freed)

    def _reclaim_from(self, encl: Enclave, pages: list[EpcPage]) -> list[EpcPage]:
        """Evict those of ``pages`` that are still ``encl``'s resident pages, under its lock;
        the EPC pages EWB freed."""
        if not encl.lock.acquire(blocking=False):
            self._put_back(encl, pages)
            return []
        try:
            entries = [e for e in map(encl.resident_entry, pages) if e is not None]
            freed = self._write(encl, [e for e in entries if self._block(encl, e)])
            if freed and encl.initialized and not encl.secs_child_cnt:
                freed += self._evict_secs(encl)
            return freed
        finally:
            encl.lock.release()

    def _block(self, encl: Enclave, entry: EnclPage) -> bool:
        """``sgx_reclaimer_block``: zap the page's PTEs in every address space mapping the
        enclave, then EBLOCK it. A page whose address spaces are busy, or that EBLOCK refuses,
        goes back on the list."""
        page = entry.epc_page
        if not self._zap(encl, entry.addr) or self._epc.encls.eblock(page.pa) not in _EBLOCK_OK:
            self._put_back(encl, [page])
            return False
        return True

    @staticmethod
    def _zap(encl: Enclave, addr: int) -> bool:
        """``sgx_zap_enclave_ptes`` without waiting: False (nothing zapped) when another
        thread holds one of the address spaces' locks."""
        mms = list(encl.mms)
        locked = []
        try:
            for mm in mms:
                if not mm.lock.acquire(blocking=False):
                    return False
                locked.append(mm)
            for mm in mms:
                mm.zap_pte(addr, encl)
            return True
        finally:
            for mm in locked:
                mm.lock.release()

    def _write(self, encl: Enclave, entries: list[EnclPage]) -> list[EpcPage]:
        """``sgx_reclaimer_write`` + ``sgx_encl_ewb`` for the blocked ``entries``: one ETRACK,
        EWB of each into a fresh VA slot; the pages EWB refused (SGX_NOT_TRACKED: a thread
        that was inside at the ETRACK is still inside) again after another ETRACK, then after
        :attr:`kick_enclave_threads`. Pages still refused keep their EPC page and go back on
        the list. Returns the EPC pages written out."""
        if not entries:
            return []
        encls = self._epc.encls
        encls.etrack(encl.secs_pa)
        freed: list[EpcPage] = []
        todo = self._ewb(encl, [(e, encl.alloc_va_slot()) for e in entries], freed)
        if todo:
            encls.etrack(encl.secs_pa)
            todo = self._ewb(encl, todo, freed)
        if todo:
            self.kick_enclave_threads(encl)
            todo = self._ewb(encl, todo, freed)
        for entry, slot in todo:
            encl.free_va_slot(slot)
            self._put_back(encl, [entry.epc_page])
        return freed

    def _ewb(self, encl: Enclave, todo: list[tuple[EnclPage, VaSlot]],
             freed: list[EpcPage]) -> list[tuple[EnclPage, VaSlot]]:
        """``__sgx_encl_ewb`` of each (page, VA slot): a page written out goes to the backing
        store at its index and becomes evicted, its EPC page joins ``freed``; the pages EWB
        did not write out are returned."""
        results = self._epc.encls.ewb([e.epc_page.pa for e, _ in todo], [s.pa for _, s in todo])
        refused = []
        for (entry, slot), result in zip(todo, results, strict=True):
            if not isinstance(result, EvictedPage) or not result.ciphertext:
                refused.append((entry, slot))
                continue
            encl.backing.store((entry.addr - encl.base) // PAGE_SIZE, result.ciphertext,
                               result.pcmd)
            freed.append(entry.epc_page)
            entry.resident, entry.va_slot = None, slot
            encl.secs_child_cnt -= 1
        return refused

    def _evict_secs(self, encl: Enclave) -> list[EpcPage]:
        """``sgx_reclaimer_write``'s tail: EWB of the SECS (no resident child is left) to
        backing index ``size / 4096``; the freed SECS page, or nothing if EWB refused."""
        secs, slot = encl.secs, encl.alloc_va_slot()
        assert secs is not None
        [result] = self._epc.encls.ewb([secs.pa], [slot.pa])
        if not isinstance(result, EvictedPage) or not result.ciphertext:
            encl.free_va_slot(slot)
            return []
        encl.backing.store(encl.size // PAGE_SIZE, result.ciphertext, result.pcmd)
        encl.secs, encl.secs_va_slot = None, slot
        return [secs]
