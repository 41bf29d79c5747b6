"""Address translation with SGX access control: what the page-miss handler does after the page
walk (SDM Vol. 3D 38.3 "Access-control requirements", 38.5 "Access control for accesses that
originate from non-SGX instructions"; Costan & Devadas, "Intel SGX Explained" 6.2.1 Fig. 86).

The page tables belong to the guest OS and are reached through the :class:`AddressSpace`
protocol. On top of the walk's result the processor applies, per access:

* **outside enclave mode**: a physical address in the EPC gets *abort-page semantics*
  (reads return all ones, writes are dropped). Fetching from it executes the all-ones bytes,
  ``FF FF``, an undefined opcode: #UD (what EEXIT's description calls "abort page semantics on
  the next destination").
* **in enclave mode, inside ELRANGE**: the page must be an EPC page whose EPCM entry is VALID,
  not BLOCKED, PENDING or MODIFIED, of type PT_REG, owned by the running enclave, and recorded
  at this linear address; the access needs the EPCM permission as well as the page-table one
  (the entry's permissions are the intersection). Any failure is a #PF with PFEC.SGX.
* **in enclave mode, outside ELRANGE**: data accesses go to ordinary memory (an EPC page there
  fails the EPCM address check: #PF with PFEC.SGX); code fetches are #GP(0) ("code fetches from
  inside an enclave to a linear address outside that enclave result in a #GP(0)").

Ordinary paging faults (no translation, or the page tables deny the access) come first and
carry no PFEC.SGX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vsgx.arch import PAGE_SIZE, PageType, Pfec, Vector
from vsgx.cpu import epcm as m
from vsgx.cpu.processor import SgxProcessor
from vsgx.engine.physical import ABORT_PAGE, PhysicalMemory

PERM_R = 1
PERM_W = 2
PERM_X = 4
"""Page permissions as the page tables grant them and as a TLB entry holds them
(equal to Unicorn's ``UC_PROT_*``)."""
PERM_RW = PERM_R | PERM_W
PAGE_MASK = ~(PAGE_SIZE - 1)
_PT_REG = int(PageType.PT_REG)
_EPCM_DENY = m.BLOCKED | m.PENDING | m.MODIFIED


class AddressSpace(Protocol):
    """The guest page tables of the process a logical processor runs (CR3, in effect).

    ``translate(va)`` takes a page-aligned linear address and returns the guest-physical
    address of the page and the user-mode permissions the page tables grant (:data:`PERM_R`,
    :data:`PERM_W`, :data:`PERM_X`), or None when the page is not present.
    """

    def translate(self, va: int) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class Fault:
    """An exception a memory access raises: vector and error code (the address is the
    access's, known where the access is)."""

    vector: int
    error_code: int = 0


def pfec(need: int, *, present: bool, sgx: bool = False) -> int:
    """A user-mode page-fault error code for an access needing ``need`` (SDM Vol. 3A 4.7)."""
    code = int(Pfec.U)
    if present:
        code |= int(Pfec.P)
    if need == PERM_W:
        code |= int(Pfec.W)
    elif need == PERM_X:
        code |= int(Pfec.I)
    if sgx:
        code |= int(Pfec.SGX)
    return code


Translation = tuple[int, int] | Fault
"""A TLB entry (physical page, permissions) or the fault the access raises."""

_FETCH_ABORT_PAGE = Fault(int(Vector.UD))
_FETCH_OUTSIDE_ELRANGE = Fault(int(Vector.GP))


class AccessControl:
    """The SGX rules above, for one processor's EPCM and one engine's physical memory."""

    def __init__(self, processor: SgxProcessor, memory: PhysicalMemory) -> None:
        self.processor = processor
        self.memory = memory

    @staticmethod
    def _walk(aspace: AddressSpace, va: int, need: int) -> Translation:
        walk = aspace.translate(va)
        if walk is None:
            return Fault(int(Vector.PF), pfec(need, present=False))
        if not walk[1] & need:
            return Fault(int(Vector.PF), pfec(need, present=True))
        return walk

    def outside(self, aspace: AddressSpace, va: int, need: int) -> Translation:
        """A non-enclave access to page ``va``."""
        walk = self._walk(aspace, va, need)
        if isinstance(walk, Fault) or not self.memory.is_epc(walk[0]):
            return walk
        if need == PERM_X:
            return _FETCH_ABORT_PAGE
        return ABORT_PAGE, walk[1] & PERM_RW

    def enclave(self, aspace: AddressSpace, secs: int, base: int, end: int, va: int,
                need: int) -> Translation:
        """An access to page ``va`` by a logical processor in enclave mode in the enclave
        whose SECS is EPC page ``secs`` and whose ELRANGE is ``[base, end)``."""
        inside = base <= va < end
        if need == PERM_X and not inside:
            return _FETCH_OUTSIDE_ELRANGE
        walk = self._walk(aspace, va, need)
        if isinstance(walk, Fault):
            return walk
        pa, perms = walk
        idx = self.processor.epc.index_of(pa)
        if not inside:
            if idx is not None:
                return Fault(int(Vector.PF), pfec(need, present=True, sgx=True))
            return pa, perms & PERM_RW
        e = self.processor.epcm
        bits = e.flags.item(idx) if idx is not None else 0
        if (idx is None or not bits & m.VALID or bits & _EPCM_DENY
                or e.pt.item(idx) != _PT_REG or e.owner.item(idx) != secs
                or e.linaddr.item(idx) != va or not bits & need):
            return Fault(int(Vector.PF), pfec(need, present=True, sgx=True))
        granted = perms & bits & (PERM_RW | PERM_X)
        if granted & PERM_X:
            e.executable[idx] = True  # code may get translated from it: see Epcm.executable
        return pa, granted
