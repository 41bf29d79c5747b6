"""The Enclave Page Cache Map: the processor's per-page security metadata (SDM 34.5.1,
Table 34-2 "Content of an Enclave Page Cache Map Entry").

Stored as parallel numpy arrays indexed by the global EPC page index, so that a 64 GiB EPC costs
nothing until pages are used (``numpy.zeros`` is lazily committed) and bulk operations (adding a
whole range of pages) are vectorised. An entry is valid when :data:`VALID` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vsgx.arch import PageType, SecinfoFlags

R = int(SecinfoFlags.R)
W = int(SecinfoFlags.W)
X = int(SecinfoFlags.X)
PENDING = int(SecinfoFlags.PENDING)
MODIFIED = int(SecinfoFlags.MODIFIED)
PR = int(SecinfoFlags.PR)
RWX = R | W | X
SECINFO_BITS = RWX | PENDING | MODIFIED | PR
"""EPCM bits that share their position with SECINFO.FLAGS bits 5:0."""
VALID = 1 << 8
BLOCKED = 1 << 9
CHILD_TYPES = frozenset({int(PageType.PT_REG), int(PageType.PT_TCS), int(PageType.PT_TRIM)})
"""Page types that belong to an enclave (ENCLAVESECS and ENCLAVEADDRESS are meaningful)."""
_CHILD_TYPE_LIST = sorted(CHILD_TYPES)


@dataclass(frozen=True, slots=True)
class EpcmEntry:
    """A snapshot of one EPCM entry (for inspection and tests)."""

    valid: bool
    page_type: PageType
    r: bool
    w: bool
    x: bool
    pending: bool
    modified: bool
    pr: bool
    blocked: bool
    enclavesecs: int
    enclaveaddress: int


class Epcm:
    """EPCM entries for ``pages`` EPC pages.

    ``owner`` holds the EPC index of the page's SECS (ENCLAVESECS); ``linaddr`` holds
    ENCLAVEADDRESS. ``bepoch`` and ``mepoch`` record the enclave's tracking epoch when the page
    was blocked (EBLOCK) or had its permissions or type changed (EMODPR/EMODT), which EWB and
    EACCEPT compare against ETRACK (SDM 38.5.x "tracking").

    ``generation`` counts changes to the entries, so a cache of access-control decisions
    (the execution engine's translations) can tell when it is stale.

    ``executable`` marks the pages an execution engine may have translated code from (it sets
    the flag when it maps a page with X). ``code_generation`` moves, with ``generation``,
    whenever such a page stops holding that code: the page is freed (EREMOVE, EWB), so its frame
    may come back with other contents at the same linear address, or a debugger writes into it
    (EDBGWR, :meth:`code_written`). Engines drop their translated code when it moves; nothing
    else tells a JIT's code cache that bytes changed behind its back.

    A reverse map from (owner, linear address) to page serves the "honest OS" address
    translation the ``vsgx isa`` runner uses. The EPCM itself does not forbid two pages of one
    enclave at the same address (EAUG twice); the newest is mapped and the others wait in
    ``_shadowed`` until it goes.
    """

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.flags: npt.NDArray[np.uint16] = np.zeros(pages, dtype=np.uint16)
        self.pt: npt.NDArray[np.uint8] = np.zeros(pages, dtype=np.uint8)
        self.owner: npt.NDArray[np.int64] = np.zeros(pages, dtype=np.int64)
        self.linaddr: npt.NDArray[np.uint64] = np.zeros(pages, dtype=np.uint64)
        self.bepoch: npt.NDArray[np.int64] = np.zeros(pages, dtype=np.int64)
        self.mepoch: npt.NDArray[np.int64] = np.zeros(pages, dtype=np.int64)
        self.by_address: dict[tuple[int, int], int] = {}
        self._shadowed: dict[tuple[int, int], list[int]] = {}
        self.valid_count = 0
        self.generation = 0
        self.executable: npt.NDArray[np.bool_] = np.zeros(pages, dtype=np.bool_)
        self.code_generation = 0

    # -- single entries ----------------------------------------------------------------------

    def valid(self, i: int) -> bool:
        return bool(self.flags.item(i) & VALID)

    def page_type(self, i: int) -> int:
        return int(self.pt.item(i))

    def bits(self, i: int) -> int:
        return int(self.flags.item(i))

    def set_valid(self, i: int, page_type: int, bits: int, owner: int = 0,
                  linaddr: int = 0) -> None:
        """Make entry ``i`` valid with the given type, SECINFO-style bits, owner and address."""
        self.flags[i] = VALID | (bits & (SECINFO_BITS | BLOCKED))
        self.pt[i] = page_type
        self.owner[i] = owner
        self.linaddr[i] = linaddr
        self.valid_count += 1
        self.generation += 1
        if page_type in CHILD_TYPES:
            self._map(owner, linaddr, i)

    def _map(self, owner: int, linaddr: int, i: int) -> None:
        key = (owner, linaddr)
        previous = self.by_address.get(key)
        if previous is not None:
            self._shadowed.setdefault(key, []).append(previous)
        self.by_address[key] = i

    def set_bits(self, i: int, bits: int) -> None:
        """Replace the permission/state bits of a valid entry (VALID is kept)."""
        self.flags[i] = VALID | (bits & (SECINFO_BITS | BLOCKED))
        self.generation += 1

    def set_type(self, i: int, page_type: PageType) -> None:
        self.pt[i] = int(page_type)
        self.generation += 1

    def invalidate(self, i: int) -> None:
        if not self.flags.item(i) & VALID:
            return
        self._unmap((int(self.owner.item(i)), int(self.linaddr.item(i))), i)
        self.code_written(i)
        self.flags[i] = 0
        self.pt[i] = 0
        self.owner[i] = 0
        self.linaddr[i] = 0
        self.valid_count -= 1
        self.generation += 1

    def code_written(self, i: int) -> None:
        """The contents of page ``i`` changed from outside any engine (or the page is going):
        translated code from it is stale."""
        if self.executable.item(i):
            self.executable[i] = False
            self.code_generation += 1
            self.generation += 1

    def _unmap(self, key: tuple[int, int], i: int) -> None:
        """Drop entry ``i`` from the reverse map; a page it shadowed is mapped again."""
        if key not in self._shadowed:  # the usual case: one page at this address
            if self.by_address.get(key) == i:
                del self.by_address[key]
            return
        shadowed = self._shadowed[key]
        if self.by_address.get(key) == i:
            self.by_address[key] = shadowed.pop()
        elif i in shadowed:
            shadowed.remove(i)
        if not shadowed:
            del self._shadowed[key]

    def entry(self, i: int) -> EpcmEntry:
        f = int(self.flags[i])
        return EpcmEntry(
            valid=bool(f & VALID), page_type=PageType(int(self.pt[i])), r=bool(f & R),
            w=bool(f & W), x=bool(f & X), pending=bool(f & PENDING),
            modified=bool(f & MODIFIED), pr=bool(f & PR), blocked=bool(f & BLOCKED),
            enclavesecs=int(self.owner[i]), enclaveaddress=int(self.linaddr[i]),
        )

    # -- bulk --------------------------------------------------------------------------------

    def set_valid_many(self, idx: npt.NDArray[np.int64], page_type: int | npt.NDArray[np.uint8],
                       bits: npt.NDArray[np.uint16], owner: int | npt.NDArray[np.int64],
                       linaddr: npt.NDArray[np.uint64]) -> None:
        """Vectorised :meth:`set_valid` for distinct entries that are all currently invalid.
        ``page_type`` and ``owner`` are one value for every entry or one per entry."""
        self.flags[idx] = VALID | (bits & (SECINFO_BITS | BLOCKED))
        self.pt[idx] = page_type
        self.owner[idx] = owner
        self.linaddr[idx] = linaddr
        self.valid_count += len(idx)
        self.generation += 1
        types = np.broadcast_to(np.asarray(page_type), idx.shape)
        owners = np.broadcast_to(np.asarray(owner), idx.shape)
        mapped = np.isin(types, _CHILD_TYPE_LIST)
        for o, a, i in zip(owners[mapped].tolist(), linaddr[mapped].tolist(),
                           idx[mapped].tolist(), strict=True):
            self._map(o, a, i)

    def invalidate_many(self, idx: npt.NDArray[np.int64]) -> None:
        """Vectorised :meth:`invalidate` for distinct entries that are all valid."""
        keys = zip(self.owner[idx].tolist(), self.linaddr[idx].tolist(), strict=True)
        for i, key in zip(idx.tolist(), keys, strict=True):
            self._unmap(key, i)
        if self.executable[idx].any():
            self.executable[idx] = False
            self.code_generation += 1
        self.flags[idx] = 0
        self.pt[idx] = 0
        self.owner[idx] = 0
        self.linaddr[idx] = 0
        self.valid_count -= len(idx)
        self.generation += 1
