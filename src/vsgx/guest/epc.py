"""The guest kernel's EPC page allocator (``arch/x86/kernel/cpu/sgx/main.c``:
``sgx_alloc_epc_page``, ``__sgx_alloc_epc_page``, ``sgx_free_epc_page``; ``encl.c``:
``sgx_encl_free_epc_page``, ``sgx_alloc_va_page``) and its reclaimer
(:class:`~vsgx.guest.reclaim.Reclaimer`, :attr:`EpcAllocator.reclaimer`).

Free pages live on one list per NUMA node, filled at boot in address order from the EPC
sections the driver set up (the sanitizing EREMOVE ``ksgxd`` runs first has nothing to do on
a freshly booted guest, whose EPC holds no valid page). Allocation prefers the caller's node
and falls back to the other nodes with EPC in ascending order after it (``next_node_in``);
pages are taken from the head of a list and freed to its tail.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from vsgx.arch import PAGE_SIZE
from vsgx.guest.encls import Encls
from vsgx.guest.reclaim import SGX_NR_LOW_PAGES, Reclaimer
from vsgx.guest.sgx import GuestEpcSection
from vsgx.guest.uapi import Errno, syscall_error


@dataclass(eq=False)
class EpcPage:
    """``struct sgx_epc_page``: an EPC page's physical address, node and current owner."""

    pa: int
    node: int
    owner: object | None = None


class EpcAllocator:
    """The free EPC pages of the guest, per node."""

    def __init__(self, sections: Sequence[GuestEpcSection], encls: Encls) -> None:
        self.encls = encls
        self._lock = threading.Lock()
        self._free: dict[int, deque[EpcPage]] = {}
        for section in sections:
            pages = self._free.setdefault(section.node, deque())
            pages.extend(EpcPage(section.phys_addr + off, section.node)
                         for off in range(0, section.size, PAGE_SIZE))
        self._nodes = sorted(self._free)
        self._node_pages = {node: len(pages) for node, pages in self._free.items()}
        self.total_pages = sum(len(pages) for pages in self._free.values())
        self.nr_free_pages = self.total_pages
        """``sgx_nr_free_pages``."""
        self.reclaimer = Reclaimer(self)

    def node_usage(self) -> dict[int, tuple[int, int]]:
        """Per NUMA node with EPC: (its EPC pages, how many are free). The first is what
        ``/sys/devices/system/node/nodeN/x86/sgx_total_bytes`` reports in bytes."""
        with self._lock:
            return {node: (self._node_pages[node], len(self._free[node]))
                    for node in self._nodes}

    def free_lists(self) -> dict[int, list[int]]:
        """Per node with EPC, the free pages' addresses in list order (head first)."""
        with self._lock:
            return {node: [page.pa for page in pages] for node, pages in self._free.items()}

    def restore(self, free: dict[int, list[int]]) -> None:
        """Take over a migrated kernel's free lists (per node, head first; checked by the
        caller): the pages not on them stay the kernel's, owned by the enclave bookkeeping
        that names them, whatever the EPC now holds there."""
        with self._lock:
            for node, pages in self._free.items():
                pages.clear()
                pages.extend(EpcPage(pa, node) for pa in free.get(node, ()))
            self.nr_free_pages = sum(len(pages) for pages in self._free.values())

    def alloc(self, owner: object | None, *, reclaim: bool, node: int) -> EpcPage:
        """``sgx_alloc_epc_page``: a free page for ``owner``, from ``node`` (the caller's)
        first. When none is free: ENOMEM if no page is reclaimable, EBUSY if the caller may not
        reclaim (it holds an enclave lock; it retries once :meth:`Reclaimer.ksgxd` has run),
        else reclaim a batch (``sgx_reclaim_pages``) and try again — EBUSY if a batch frees
        nothing, where Linux would keep trying. Leaving fewer than SGX_NR_LOW_PAGES free wakes
        ``ksgxd``, which a caller that may reclaim runs before returning."""
        try:
            page = self._alloc(owner, reclaim, node)
        finally:
            if self.nr_free_pages < SGX_NR_LOW_PAGES:
                self.reclaimer.wake()
        if reclaim:
            self.reclaimer.ksgxd()
        return page

    def _alloc(self, owner: object | None, reclaim: bool, node: int) -> EpcPage:
        """The loop of ``sgx_alloc_epc_page``."""
        while (page := self._take(owner, node)) is None:
            if not self.reclaimer.nr_reclaimable:
                raise syscall_error(Errno.ENOMEM)
            if not reclaim or not self.reclaimer.reclaim_pages():
                raise syscall_error(Errno.EBUSY)
        return page

    def _take(self, owner: object | None, node: int) -> EpcPage | None:
        """``__sgx_alloc_epc_page``: the head of the first non-empty list, or None."""
        with self._lock:
            for nid in self._search_order(node):
                pages = self._free[nid]
                if pages:
                    page = pages.popleft()
                    page.owner = owner
                    self.nr_free_pages -= 1
                    return page
        return None

    def _search_order(self, node: int) -> list[int]:
        """The caller's node if it has EPC, then the others in ``next_node_in`` order."""
        later = [n for n in self._nodes if n > node]
        earlier = [n for n in self._nodes if n < node]
        own = [node] if node in self._free else []
        return own + later + earlier

    def free(self, page: EpcPage) -> None:
        """``sgx_free_epc_page``: back to the tail of its node's list (the caller has made the
        page invalid), off the reclaimer's list (Linux's callers unmark it first)."""
        self.reclaimer.unmark_page_reclaimable(page)
        with self._lock:
            page.owner = None
            self._free[page.node].append(page)
            self.nr_free_pages += 1

    def encl_free(self, page: EpcPage) -> None:
        """``sgx_encl_free_epc_page``: EREMOVE the page, then free it. A page EREMOVE refuses
        (an SGX error or a fault) is leaked, as Linux leaks it after its warning."""
        if self.encls.eremove(page.pa) == 0:
            self.free(page)

    def alloc_va_page(self, *, reclaim: bool, node: int) -> EpcPage:
        """``sgx_alloc_va_page``: an EPC page turned into a version array by EPA; EFAULT if EPA
        fails."""
        page = self.alloc(None, reclaim=reclaim, node=node)
        if self.encls.epa(page.pa):
            self.encl_free(page)
            raise syscall_error(Errno.EFAULT)
        return page
