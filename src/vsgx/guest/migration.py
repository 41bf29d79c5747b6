"""The guest's part of a migration stream (the ``guest`` section of
:mod:`vsgx.platform.migration`): the guest kernel's state and every process, as JSON.

QEMU migrates a guest's kernel and processes without knowing them: they are in guest RAM. vsgx's
guest kernel keeps its state in Python objects instead, so the stream carries that state
explicitly — plain values, never live objects (no locks, mappings, engine handles or Python
callables). It holds, as one canonical JSON object::

    {"version": 1,
     "memory":    {"untouched": [[next, end], ...], "recycled": [pa, ...]},
     "epc":       null | {"free": [[node, [[pa, count], ...]], ...], "active": [pa, ...]},
     "next-pid":  n,
     "files":     [{"path": ..., "flags": n, "enclave": null | ENCLAVE}, ...],
     "processes": [{"pid": n, "node": n, "fds": [[fd, file], ...],
                    "vmas": [[start, end, vm_flags, file | null], ...],
                    "ptes": [[va, pa], ...],
                    "vdso": null | {"aep": va, "stacks": [top, ...], "handlers": n}}, ...]}

    ENCLAVE = {"created", "initialized", "debug": bool, "base", "size", "attributes",
               "attributes-mask", "secs-child-cnt", "page-cnt": n,
               "secs": pa | null, "secs-va-slot": SLOT | null,
               "va-pages": [[pa, slot bitmap], ...],
               "pages": [[addr, vm_max_prot_bits, page type, pa | null, SLOT | null], ...],
               "backing": null | [[file page index, base64 of 4096 bytes], ...]}
    SLOT = [index into va-pages, byte offset]

``memory`` is the RAM page allocator (:class:`~vsgx.guest.memory.PhysicalMemory`), so the pages
in use stay in use; ``files`` are the open files the processes reach through a descriptor or a
mapping (a file's reference count is rebuilt from them), an open ``/dev/sgx_enclave`` with its
driver bookkeeping (``struct sgx_encl``); ``epc`` the EPC free lists per node (head first,
as runs of consecutive pages) and the reclaimer's active list.

The EPC itself is not migrated (QEMU docs/system/i386/sgx.rst, "Migration"). Like a Linux
guest after a migration, the destination's kernel keeps believing its bookkeeping: the EPC
pages it names stay the kernel's (off the free lists, so never handed out twice) though the
destination's EPCM holds nothing valid there. The enclaves' PTEs still point at those pages,
so the next EENTER or ERESUME faults with PFEC.SGX (the TCS is not a valid EPC page); an
evicted page's ELDU fails (its VA page is no valid EPC page either, and the backing's MAC is
bound to the source's keys), so nothing stale is accepted. Closing the enclave or exiting the
process frees those pages as usual (EREMOVE of an invalid page succeeds), which is how they
return to the destination's free lists.

Loading is in two steps so that a refused stream changes nothing: :func:`parse_guest` checks
the whole section against the destination's RAM and EPC (before the machine is touched) and
:func:`load_guest` then rebuilds the objects in the destination's freshly booted guest.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vsgx.arch import PAGE_SIZE, VA_SLOTS_PER_PAGE, PageType
from vsgx.cpu.encls_paging import VA_SLOT_SIZE
from vsgx.guest.backing import Backing
from vsgx.guest.encl import Enclave, EnclPage, VaPage, VaSlot
from vsgx.guest.epc import EpcPage
from vsgx.guest.memory import allocatable
from vsgx.guest.mm import TASK_SIZE, Vma
from vsgx.guest.sgx_driver import SgxEnclaveDevice
from vsgx.guest.vfs import File

if TYPE_CHECKING:
    from vsgx.guest.system import GuestOS

VERSION = 1
_U64 = 1 << 64
_PAGE_TYPES = frozenset(int(t) for t in PageType)


class GuestStateError(ValueError):
    """The ``guest`` section cannot be loaded into this guest; the message says why."""


# -- the image: validated plain values ---------------------------------------------------------

@dataclass(frozen=True)
class PageImage:
    """An enclave page: address, maximum protection, type, EPC page (None while evicted), and
    while evicted its VA slot (VA page index, offset)."""

    addr: int
    max_prot: int
    type: int
    pa: int | None
    va_slot: tuple[int, int] | None


@dataclass(frozen=True)
class EnclaveImage:
    """The driver's ``struct sgx_encl`` of one open ``/dev/sgx_enclave``."""

    created: bool
    initialized: bool
    debug: bool
    base: int
    size: int
    attributes: int
    attributes_mask: int
    secs_child_cnt: int
    page_cnt: int
    secs: int | None
    secs_va_slot: tuple[int, int] | None
    va_pages: tuple[tuple[int, int], ...]
    pages: tuple[PageImage, ...]
    backing: dict[int, bytes] | None

    def epc_pages(self) -> list[int]:
        """Every EPC page the bookkeeping names: SECS, resident pages, VA pages."""
        named = [] if self.secs is None else [self.secs]
        named += [p.pa for p in self.pages if p.pa is not None]
        return named + [pa for pa, _ in self.va_pages]


@dataclass(frozen=True)
class FileImage:
    path: str
    flags: int
    enclave: EnclaveImage | None


@dataclass(frozen=True)
class VmaImage:
    start: int
    end: int
    flags: int
    file: int | None


@dataclass(frozen=True)
class ProcessImage:
    pid: int
    node: int
    fds: dict[int, int]
    vmas: tuple[VmaImage, ...]
    ptes: dict[int, int]
    vdso: tuple[int, tuple[int, ...], int] | None


@dataclass(frozen=True)
class GuestImage:
    """A whole ``guest`` section, checked against the destination by :func:`parse_guest`."""

    untouched: tuple[tuple[int, int], ...]
    recycled: tuple[int, ...]
    epc_free: dict[int, list[int]] | None
    epc_active: tuple[int, ...]
    next_pid: int
    files: tuple[FileImage, ...]
    processes: tuple[ProcessImage, ...]


# -- saving --------------------------------------------------------------------------------

def _slot(slot: VaSlot | None, va_index: dict[int, int]) -> list[int] | None:
    return None if slot is None else [va_index[id(slot.page)], slot.offset]


def _enclave_json(encl: Enclave) -> dict[str, Any]:
    with encl.lock:
        va_index = {id(page): i for i, page in enumerate(encl.va_pages)}
        backing = encl.backing_if_created
        return {
            "created": encl.created, "initialized": encl.initialized, "debug": encl.debug,
            "base": encl.base, "size": encl.size, "attributes": encl.attributes,
            "attributes-mask": encl.attributes_mask, "secs-child-cnt": encl.secs_child_cnt,
            "page-cnt": encl.page_cnt, "secs": None if encl.secs is None else encl.secs.pa,
            "secs-va-slot": _slot(encl.secs_va_slot, va_index),
            "va-pages": [[page.pa, page.slots] for page in encl.va_pages],
            "pages": [[e.addr, e.vm_max_prot_bits, int(e.type),
                       None if e.resident is None else e.resident.pa,
                       _slot(e.va_slot, va_index)]
                      for e in sorted(encl.page_array.values(), key=lambda e: e.addr)],
            "backing": None if backing is None else [
                [index, base64.b64encode(page).decode()]
                for index, page in sorted(backing.file_pages().items())],
        }


def _runs(pages: Sequence[int]) -> list[list[int]]:
    """``pages`` (addresses in list order) as [first, count] runs of consecutive pages."""
    runs: list[list[int]] = []
    for pa in pages:
        if runs and runs[-1][0] + runs[-1][1] * PAGE_SIZE == pa:
            runs[-1][1] += 1
        else:
            runs.append([pa, 1])
    return runs


def save_guest(guest: GuestOS) -> bytes:
    """The ``guest`` section of ``guest`` (its processes must not run meanwhile: QEMU stops
    the vCPUs first)."""
    untouched, recycled = guest.memory.allocator_state()
    files: dict[int, int] = {}
    file_list: list[File] = []

    def file_index(file: File) -> int:
        if id(file) not in files:
            files[id(file)] = len(file_list)
            file_list.append(file)
        return files[id(file)]

    processes = []
    for proc in guest.processes:
        fds, vdso = proc.migration_state()
        vmas = proc.mm.vmas()
        processes.append({
            "pid": proc.pid, "node": proc.node,
            "fds": [[fd, file_index(file)] for fd, file in sorted(fds.items())],
            "vmas": [[v.start, v.end, v.flags, None if v.file is None else file_index(v.file)]
                     for v in vmas],
            "ptes": [[va, pa] for va, pa in sorted(proc.mm.ptes().items())],
            "vdso": None if vdso is None else {"aep": vdso[0], "stacks": vdso[1],
                                               "handlers": vdso[2]}})
    epc = None
    if guest.epc is not None:
        epc = {"free": [[node, _runs(pages)]
                        for node, pages in sorted(guest.epc.free_lists().items())],
               "active": [page.pa for page, _ in guest.epc.reclaimer.active_pages()]}
    state = {
        "version": VERSION,
        "memory": {"untouched": [list(r) for r in untouched], "recycled": recycled},
        "epc": epc, "next-pid": guest.next_pid,
        "files": [{"path": f.path, "flags": f.flags,
                   "enclave": _enclave_json(f.private_data)
                   if isinstance(f.private_data, Enclave) else None} for f in file_list],
        "processes": processes,
    }
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


# -- parsing and checking -----------------------------------------------------------------

def _fail(message: str) -> GuestStateError:
    return GuestStateError(f"the guest section is inconsistent: {message}")


def _int(value: object, what: str, lo: int = 0, hi: int = _U64) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value < hi:
        raise _fail(f"{what} is not an integer in [{lo:#x}, {hi:#x})")
    return value


def _page(value: object, what: str) -> int:
    addr = _int(value, what)
    if addr % PAGE_SIZE:
        raise _fail(f"{what} {addr:#x} is not page-aligned")
    return addr


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"{what} is not a boolean")
    return value


def _list(value: object, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise _fail(f"{what} is not a list" + ("" if length is None else f" of {length}"))
    return value


def _obj(value: object, what: str, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(keys):
        raise _fail(f"{what} is not an object with the fields {', '.join(sorted(keys))}")
    return value


def _optional(value: object, parse: Callable[[object], Any]) -> Any:
    return None if value is None else parse(value)


def _unique(values: Sequence[int], what: str) -> None:
    if len(set(values)) != len(values):
        raise _fail(f"{what} repeat")


_ENCLAVE_KEYS = ("created", "initialized", "debug", "base", "size", "attributes",
                 "attributes-mask", "secs-child-cnt", "page-cnt", "secs", "secs-va-slot",
                 "va-pages", "pages", "backing")


def _parse_enclave(value: object, epc: Callable[[int, str], None]) -> EnclaveImage:
    raw = _obj(value, "an enclave", _ENCLAVE_KEYS)
    base, size = _page(raw["base"], "an enclave's base"), _int(raw["size"], "an enclave's size")
    va_pages = tuple((_page(pa, "a VA page"), _int(slots, "a VA bitmap", 0,
                                                   1 << VA_SLOTS_PER_PAGE))
                     for pa, slots in (_list(v, "a VA page", 2)
                                       for v in _list(raw["va-pages"], "va-pages")))

    def slot(value: object) -> tuple[int, int]:
        index, offset = _list(value, "a VA slot", 2)
        index = _int(index, "a VA slot's page", 0, len(va_pages))
        offset = _int(offset, "a VA slot's offset", 0, PAGE_SIZE)
        if offset % VA_SLOT_SIZE or not va_pages[index][1] >> offset // VA_SLOT_SIZE & 1:
            raise _fail(f"VA slot {offset:#x} of VA page {index} is not one in use")
        return index, offset

    pages = []
    for item in _list(raw["pages"], "pages"):
        addr, max_prot, kind, pa, va_slot = _list(item, "an enclave page", 5)
        page = PageImage(_page(addr, "an enclave page"), _int(max_prot, "vm_max_prot_bits",
                                                              0, 8),
                         _int(kind, "a page type", 0, 256), _optional(
                             pa, lambda v: _page(v, "an enclave page's EPC page")),
                         _optional(va_slot, slot))
        if not base <= page.addr < base + size or page.type not in _PAGE_TYPES:
            raise _fail(f"enclave page {page.addr:#x} is outside ELRANGE or of an unknown type")
        if (page.pa is None) == (page.va_slot is None):
            raise _fail(f"enclave page {page.addr:#x} is neither resident nor evicted")
        pages.append(page)
    _unique([p.addr for p in pages], "enclave pages")
    slots = [s for s in [*(p.va_slot for p in pages), _optional(raw["secs-va-slot"], slot)]
             if s is not None]
    if len(set(slots)) != len(slots):
        raise _fail("two evicted pages share a VA slot")
    backing = None
    if raw["backing"] is not None:
        backing = {}
        for item in _list(raw["backing"], "backing"):
            index, data = _list(item, "a backing page", 2)
            try:
                page_bytes = base64.b64decode(data, validate=True) if isinstance(data, str) \
                    else b""
            except binascii.Error:
                page_bytes = b""
            if len(page_bytes) != PAGE_SIZE:
                raise _fail("a backing page is not 4096 bytes of base64")
            backing[_int(index, "a backing page index", 0, 2 * size // PAGE_SIZE + 2)] = \
                page_bytes
    image = EnclaveImage(
        _bool(raw["created"], "created"), _bool(raw["initialized"], "initialized"),
        _bool(raw["debug"], "debug"), base, size, _int(raw["attributes"], "attributes"),
        _int(raw["attributes-mask"], "attributes-mask"),
        _int(raw["secs-child-cnt"], "secs-child-cnt", 0, len(pages) + 1),
        _int(raw["page-cnt"], "page-cnt", 0, 1 << 32),
        _optional(raw["secs"], lambda v: _page(v, "a SECS page")),
        _optional(raw["secs-va-slot"], slot), va_pages, tuple(pages), backing)
    for pa in image.epc_pages():
        epc(pa, "an enclave's EPC page")
    return image


def parse_guest(payload: bytes | memoryview, ram: Sequence[tuple[int, int]],
                epc: Sequence[tuple[int, int, int]]) -> GuestImage:
    """Check a ``guest`` section for a destination whose RAM is ``ram`` ((base, size)) and
    whose EPC sections are ``epc`` ((address, size, node)); nothing is changed. Every
    address must lie where the destination has that kind of memory, every page be named once
    (no RAM page both free and mapped, no EPC page both free and an enclave's), every
    descriptor and mapping name a file of the section."""
    try:
        raw = json.loads(bytes(payload))
    except ValueError:
        raise GuestStateError("the guest section is not valid JSON") from None
    raw = _obj(raw, "the guest section", ("version", "memory", "epc", "next-pid", "files",
                                          "processes"))
    if raw["version"] != VERSION:
        raise GuestStateError(f"guest section version {raw['version']!r} (vsgx reads "
                              f"version {VERSION})")
    memory = _obj(raw["memory"], "memory", ("untouched", "recycled"))
    regions = allocatable(ram)
    untouched = tuple((_page(a, "an allocator cursor"), _page(b, "a RAM region's end"))
                      for a, b in (_list(r, "an allocator region", 2)
                                   for r in _list(memory["untouched"], "untouched")))
    if len(untouched) != len(regions) or any(
            end != r_end or not r_start <= nxt <= end
            for (nxt, end), (r_start, r_end) in zip(untouched, regions, strict=False)):
        raise _fail("the RAM allocator's regions are not the destination's")
    recycled = tuple(_page(pa, "a free RAM page") for pa in _list(memory["recycled"],
                                                                   "recycled"))
    _unique(recycled, "free RAM pages")

    def handed_out(pa: int) -> bool:
        return any(start <= pa < nxt for (start, _), (nxt, _) in zip(regions, untouched,
                                                                    strict=True))

    if not all(map(handed_out, recycled)):
        raise _fail("a free RAM page was never handed out")
    free_ram = set(recycled)

    sections = [(addr, addr + size, node) for addr, size, node in epc]
    epc_owner: dict[int, str] = {}

    def epc_page(pa: int, what: str) -> None:
        if not any(start <= pa < end for start, end, _ in sections):
            raise _fail(f"{what} {pa:#x} is not in the destination's EPC")
        if pa in epc_owner:
            raise _fail(f"EPC page {pa:#x} is both {epc_owner[pa]} and {what}")
        epc_owner[pa] = what

    epc_free = None
    epc_active: tuple[int, ...] = ()
    if raw["epc"] is not None:
        if not sections:
            raise _fail("the source had EPC, the destination has none")
        epc_raw = _obj(raw["epc"], "epc", ("free", "active"))
        epc_free = {}
        for item in _list(epc_raw["free"], "the EPC free lists"):
            node, pages = _list(item, "an EPC free list", 2)
            node = _int(node, "a NUMA node", 0, 1 << 16)
            epc_free[node] = [first + i * PAGE_SIZE for first, count in (
                (_page(a, "a free EPC page"), _int(n, "a run length", 1, 1 << 32))
                for a, n in (_list(r, "a run", 2) for r in _list(pages, "runs")))
                for i in range(count)]
            for pa in epc_free[node]:
                epc_page(pa, "a free EPC page")
                if next(n for s, e, n in sections if s <= pa < e) != node:
                    raise _fail(f"free EPC page {pa:#x} is on the list of another node")
        epc_active = tuple(_page(pa, "an active EPC page")
                           for pa in _list(epc_raw["active"], "active"))

    files = []
    for item in _list(raw["files"], "files"):
        f = _obj(item, "a file", ("path", "flags", "enclave"))
        if not isinstance(f["path"], str):
            raise _fail("a file's path is not a string")
        enclave = None
        if f["enclave"] is not None:
            if epc_free is None:
                raise _fail("an enclave file on a guest without EPC")
            enclave = _parse_enclave(f["enclave"], epc_page)
        files.append(FileImage(f["path"], _int(f["flags"], "file flags", 0, 1 << 32), enclave))
    resident = {p.pa for f in files if f.enclave for p in f.enclave.pages if p.pa is not None}
    if not set(epc_active) <= resident or len(set(epc_active)) != len(epc_active):
        raise _fail("the reclaimer's active list names pages that are no resident enclave "
                    "pages")

    next_pid = _int(raw["next-pid"], "next-pid", 1, 1 << 31)
    processes = []
    referenced: set[int] = set()
    mapped_ram: set[int] = set()
    for item in _list(raw["processes"], "processes"):
        p = _obj(item, "a process", ("pid", "node", "fds", "vmas", "ptes", "vdso"))
        fds = {}
        for fd, index in (_list(e, "a descriptor", 2) for e in _list(p["fds"], "fds")):
            fds[_int(fd, "a descriptor", 0, 1 << 31)] = _int(index, "a file", 0, len(files))
        vmas: list[VmaImage] = []
        for v in (_list(e, "a VMA", 4) for e in _list(p["vmas"], "vmas")):
            vma = VmaImage(_page(v[0], "a VMA start"), _page(v[1], "a VMA end"),
                           _int(v[2], "vm_flags"),
                           _optional(v[3], lambda i: _int(i, "a file", 0, len(files))))
            if not (vmas[-1].end if vmas else 0) <= vma.start < vma.end <= TASK_SIZE:
                raise _fail(f"VMA {vma.start:#x}-{vma.end:#x} is empty, overlaps or is out "
                            "of order")
            vmas.append(vma)
        ptes = {}
        for va, pa in (_list(e, "a PTE", 2) for e in _list(p["ptes"], "ptes")):
            va, pa = _page(va, "a PTE's address"), _page(pa, "a PTE's page")
            vma_of = next((v for v in vmas if v.start <= va < v.end), None)
            if vma_of is None:
                raise _fail(f"PTE {va:#x} is outside every VMA")
            if vma_of.file is None or files[vma_of.file].enclave is None:
                if not handed_out(pa) or pa in free_ram or pa in mapped_ram:
                    raise _fail(f"PTE {va:#x} maps RAM page {pa:#x}, which is free, not "
                                "allocatable or mapped twice")
                mapped_ram.add(pa)
            elif not any(s <= pa < e for s, e, _ in sections):
                raise _fail(f"enclave PTE {va:#x} maps {pa:#x}, outside the EPC")
            ptes[va] = pa
        vdso = None
        if p["vdso"] is not None:
            d = _obj(p["vdso"], "a vDSO", ("aep", "stacks", "handlers"))
            vdso = (_page(d["aep"], "the vDSO"),
                    tuple(_page(s, "a stack top") for s in _list(d["stacks"], "stacks")),
                    _int(d["handlers"], "handlers", 0, 1 << 32))
        referenced |= set(fds.values()) | {v.file for v in vmas if v.file is not None}
        processes.append(ProcessImage(_int(p["pid"], "a pid", 1, next_pid),
                                      _int(p["node"], "a NUMA node", 0, 1 << 16), fds,
                                      tuple(vmas), ptes, vdso))
    _unique([p.pid for p in processes], "pids")
    if len(referenced) != len(files):
        raise _fail("a file is neither open nor mapped")
    return GuestImage(untouched, recycled, epc_free, epc_active, next_pid, tuple(files),
                      tuple(processes))


# -- loading ---------------------------------------------------------------------------------

def _enclave(image: EnclaveImage, driver: SgxEnclaveDevice, pages: dict[int, EpcPage]
             ) -> Enclave:
    encl = driver.new_enclave()
    encl.created, encl.initialized, encl.debug = image.created, image.initialized, image.debug
    encl.base, encl.size = image.base, image.size
    encl.attributes, encl.attributes_mask = image.attributes, image.attributes_mask
    encl.secs_child_cnt, encl.page_cnt = image.secs_child_cnt, image.page_cnt
    encl.va_pages = [VaPage(pages[pa], slots) for pa, slots in image.va_pages]

    def slot(value: tuple[int, int] | None) -> VaSlot | None:
        return None if value is None else VaSlot(encl.va_pages[value[0]], value[1])

    if image.secs is not None:
        encl.secs = pages[image.secs]
        encl.secs.owner = encl
    encl.secs_va_slot = slot(image.secs_va_slot)
    for p in image.pages:
        resident = None if p.pa is None else pages[p.pa]
        entry = EnclPage(p.addr, p.max_prot, PageType(p.type), resident, slot(p.va_slot))
        if resident is not None:
            resident.owner = entry
        encl.page_array[p.addr] = entry
    encl.adopt_backing(None if image.backing is None
                       else Backing.from_pages(image.size, image.backing))
    return encl


def load_guest(guest: GuestOS, image: GuestImage) -> None:
    """Rebuild ``image`` (from :func:`parse_guest`) in ``guest``, a guest freshly booted on
    the destination, without processes. Raises :class:`GuestStateError` before changing
    anything if the booted guest cannot hold it (a device or the EPC it lacks)."""
    if guest.processes:
        raise GuestStateError("the destination's guest already runs processes")
    if (image.epc_free is None) != (guest.epc is None):
        raise GuestStateError("the source's guest kernel set up EPC and the destination's "
                              "did not, or the reverse")
    for f in image.files:
        ops = guest.device_ops.get(f.path)
        if ops is None or (f.enclave is not None and not isinstance(ops, SgxEnclaveDevice)):
            raise GuestStateError(f"the destination's guest has no {f.path} driver")
    guest.memory.restore_allocator(image.untouched, image.recycled)
    pages: dict[int, EpcPage] = {}
    if guest.epc is not None:
        assert image.epc_free is not None
        guest.epc.restore(image.epc_free)
        for f in image.files:
            for pa in [] if f.enclave is None else f.enclave.epc_pages():
                section = next(s for s in guest.epc_sections
                               if s.phys_addr <= pa < s.phys_addr + s.size)
                pages[pa] = EpcPage(pa, section.node)
    files: list[File] = []
    enclaves: dict[int, Enclave] = {}
    refs = [0] * len(image.files)
    for proc_image in image.processes:
        for index in [*proc_image.fds.values(),
                      *(v.file for v in proc_image.vmas if v.file is not None)]:
            refs[index] += 1
    owner: dict[int, Enclave] = {}
    for index, f in enumerate(image.files):
        ops = guest.device_ops[f.path]
        file = File(f.path, ops, f.flags, refs=refs[index])
        if f.enclave is not None:
            assert isinstance(ops, SgxEnclaveDevice)
            encl = enclaves[index] = _enclave(f.enclave, ops, pages)
            file.private_data = encl
            owner.update((p.pa, encl) for p in f.enclave.pages if p.pa is not None)
        files.append(file)
    if guest.epc is not None:
        guest.epc.reclaimer.restore([(pages[pa], owner[pa]) for pa in image.epc_active])
    processes = []
    for p in image.processes:
        proc = guest.new_process(p.pid, p.node)
        vmas = []
        for v in p.vmas:
            mapped = None if v.file is None else enclaves.get(v.file)
            if mapped is not None:
                mapped.mms.add(proc.mm)
            vmas.append(Vma(v.start, v.end, v.flags, None if v.file is None else files[v.file],
                            mapped))
        proc.mm.restore(vmas, p.ptes)
        proc.restore({fd: files[index] for fd, index in p.fds.items()}, p.vdso)
        processes.append(proc)
    guest.adopt_processes(processes, image.next_pid)
