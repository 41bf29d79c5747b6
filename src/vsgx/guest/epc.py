"""The guest kernel's EPC page allocator (``arch/x86/kernel/cpu/sgx/main.c``:
``sgx_alloc_epc_page``, ``__sgx_alloc_epc_page``, ``sgx_free_epc_page``; ``encl.c``:
``sgx_encl_free_epc_page``, ``sgx_alloc_va_page``).

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
        self.total_pages = sum(len(pages) for pages in self._free.values())
        self.nr_free_pages = self.total_pages
        """``sgx_nr_free_pages``."""

    def alloc(self, owner: object | None, *, reclaim: bool, node: int) -> EpcPage:
        """``sgx_alloc_epc_page``: a free page for ``owner``, from ``node`` (the caller's)
        first. When none is free, Linux reclaims pages (``reclaim``) or fails with EBUSY so
        the caller retries; see :meth:`_out_of_pages`."""
        with self._lock:
            for nid in self._search_order(node):
                pages = self._free[nid]
                if pages:
                    page = pages.popleft()
                    page.owner = owner
                    self.nr_free_pages -= 1
                    return page
        raise self._out_of_pages(reclaim)

    def _search_order(self, node: int) -> list[int]:
        """``__sgx_alloc_epc_page``: the caller's node if it has EPC, then the others in
        ``next_node_in`` order."""
        later = [n for n in self._nodes if n > node]
        earlier = [n for n in self._nodes if n < node]
        own = [node] if node in self._free else []
        return own + later + earlier

    @staticmethod
    def _out_of_pages(reclaim: bool) -> OSError:
        """The error when no EPC page is free. Linux would run ``sgx_reclaim_pages`` (EWB of
        the least recently used enclave pages) when ``reclaim`` is set, or return EBUSY to make
        a page fault retry; reclaim is not implemented in vsgx's guest yet, so every enclave
        page stays resident and an exhausted EPC is ENOMEM, as Linux reports it when nothing
        is reclaimable."""
        return syscall_error(Errno.ENOMEM)

    def free(self, page: EpcPage) -> None:
        """``sgx_free_epc_page``: back to the tail of its node's list (the caller has made the
        page invalid)."""
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
