"""An enclave's backing store for its evicted pages (Linux ``encl->backing``, the shmem file
``sgx_encl_create`` sets up; ``sgx_encl_get_backing``, ``sgx_encl_get_backing_page_pcmd_offset``
and ``sgx_encl_truncate_backing_page`` in ``arch/x86/kernel/cpu/sgx/encl.c``).

The layout is Linux's: the encrypted page with index ``i`` — ``(addr - base) / 4096`` for an
enclave page, ``size / 4096`` for the SECS — lives at byte ``i * 4096`` of the file, its 128-byte
PCMD at ``size + 4096 + i * 128``. Linux's file is shmem, i.e. guest RAM that can itself be
swapped; vsgx keeps it in kernel memory outside guest RAM, as a sparse set of 4 KiB file pages
that exist once written, so that evicting enclave pages never competes with processes for RAM.
Like Linux's, the file holds only ciphertext and MACs: it is untrusted, and ELDU's MAC check
catches any change to it.
"""

from __future__ import annotations

from vsgx.arch import PAGE_SIZE, PCMD


class Backing:
    """The backing file of an enclave whose ELRANGE is ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pages: dict[int, bytearray] = {}

    def file_pages(self) -> dict[int, bytes]:
        """The file's existing 4 KiB pages by index (what a migration carries)."""
        return {index: bytes(page) for index, page in self._pages.items()}

    @classmethod
    def from_pages(cls, size: int, pages: dict[int, bytes]) -> Backing:
        """A backing file holding ``pages`` (4 KiB each, by index), as :meth:`file_pages`
        gave them."""
        backing = cls(size)
        backing._pages = {index: bytearray(page) for index, page in pages.items()}
        return backing

    @property
    def nr_pages(self) -> int:
        """How many 4 KiB pages of the file exist (hold data or have not been truncated)."""
        return len(self._pages)

    @staticmethod
    def contents_offset(index: int) -> int:
        """Where the encrypted page with index ``index`` is."""
        return index * PAGE_SIZE

    def pcmd_offset(self, index: int) -> int:
        """``sgx_encl_get_backing_page_pcmd_offset``: where that page's PCMD is."""
        return self.size + PAGE_SIZE + index * PCMD.SIZE

    # -- file access --------------------------------------------------------------------------

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset``, within one file page; a hole reads as zeros."""
        page = self._pages.get(offset // PAGE_SIZE)
        start = offset % PAGE_SIZE
        return bytes(n) if page is None else bytes(page[start:start + n])

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``, within one file page."""
        page = self._pages.setdefault(offset // PAGE_SIZE, bytearray(PAGE_SIZE))
        start = offset % PAGE_SIZE
        page[start:start + len(data)] = data

    # -- what the reclaimer and ELDU do with it -------------------------------------------------

    def store(self, index: int, contents: bytes, pcmd: bytes) -> None:
        """What EWB writes through ``sgx_encl_get_backing``'s pages: the encrypted page and its
        PCMD."""
        self.write(self.contents_offset(index), contents)
        self.write(self.pcmd_offset(index), pcmd)

    def load(self, index: int) -> tuple[bytes, bytes]:
        """(encrypted page, PCMD) of page ``index``, as ELDU reads them."""
        return (self.read(self.contents_offset(index), PAGE_SIZE),
                self.read(self.pcmd_offset(index), PCMD.SIZE))

    def discard(self, index: int) -> None:
        """After ELDU (successful or not, as ``__sgx_encl_eldu``): truncate the contents page,
        zero the PCMD and truncate its page once every PCMD in it is zero."""
        self._pages.pop(self.contents_offset(index) // PAGE_SIZE, None)
        offset = self.pcmd_offset(index)
        self.write(offset, bytes(PCMD.SIZE))
        if not any(self._pages[offset // PAGE_SIZE]):
            del self._pages[offset // PAGE_SIZE]
