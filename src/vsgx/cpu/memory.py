"""Memory outside the EPC, as the processor model reads and writes its operands.

ENCLS leaves take effective addresses of ordinary memory (PAGEINFO, SECINFO, source pages,
SIGSTRUCT, PCMD, ...). The processor model sees that memory through the :class:`Memory`
protocol; the virtual machine supplies guest RAM, the ``vsgx isa`` runner a sparse scratch space.
"""

from __future__ import annotations

from typing import Protocol

from vsgx.arch import PAGE_SIZE
from vsgx.cpu.fault import pf


class Memory(Protocol):
    """Byte-addressed memory; unmapped addresses raise a #PF :class:`~vsgx.cpu.fault.SgxFault`."""

    def read(self, addr: int, size: int) -> bytes: ...

    def write(self, addr: int, data: bytes | memoryview) -> None: ...


class SparseMemory:
    """Memory mapped page by page on demand (``map``); reads of unmapped pages fault."""

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def map(self, addr: int, size: int) -> None:
        """Make ``[addr, addr+size)`` present (zero-filled where new)."""
        first = addr // PAGE_SIZE
        last = (addr + size - 1) // PAGE_SIZE
        for page in range(first, last + 1):
            self._pages.setdefault(page, bytearray(PAGE_SIZE))

    def _page(self, page: int, addr: int) -> bytearray:
        try:
            return self._pages[page]
        except KeyError:
            raise pf(addr, "operand is not mapped", epcm=False) from None

    def read(self, addr: int, size: int) -> bytes:
        page, off = divmod(addr, PAGE_SIZE)
        if 0 < size <= PAGE_SIZE - off:  # within one page: the common case
            return bytes(memoryview(self._page(page, addr))[off : off + size])
        out = bytearray()
        while size > 0:
            page, off = divmod(addr, PAGE_SIZE)
            n = min(size, PAGE_SIZE - off)
            out += self._page(page, addr)[off : off + n]
            addr += n
            size -= n
        return bytes(out)

    def write(self, addr: int, data: bytes | memoryview) -> None:
        page, off = divmod(addr, PAGE_SIZE)
        if type(data) is bytes and 0 < len(data) <= PAGE_SIZE - off:  # within one page
            self._page(page, addr)[off : off + len(data)] = data
            return
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            page, off = divmod(addr + pos, PAGE_SIZE)
            n = min(len(view) - pos, PAGE_SIZE - off)
            self._page(page, addr + pos)[off : off + n] = view[pos : pos + n]
            pos += n
