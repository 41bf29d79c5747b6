"""The migration stream: the byte format in which a VM's state leaves for ``migrate`` (QMP,
``uri`` ``file:PATH``) and comes back through ``-incoming``/``migrate-incoming``, and the
machine state it carries.

QEMU's own stream (``migration/savevm.c``: the ``QEVM`` magic, then device sections, then
``QEMU_VM_EOF``) carries each device's VMState; vsgx's devices and guest are its own, so the
stream is its own too, with the same shape and a checksum QEMU's lacks::

    header    b"VSGXMIG\\0"  u32 version
    section   u8 1  u16 name length  name (UTF-8)  u64 payload length  payload
    ...       (one section per part of the state, in the order written; names unique)
    end       u8 0xFF  SHA-256 of every byte before this one (32 bytes)

Integers are little-endian. A reader checks the whole stream, its structure and its digest,
before it hands out a single section, so a truncated or corrupted stream is refused and
nothing of it is loaded. Errors use QEMU's loadvm wording where QEMU has one ("Not a
migration stream", "Unsupported migration stream version"); a stream that ends early is
QEMU's "load of migration failed: Input/output error".

A machine's stream has three or four sections:

``config``
    A canonical JSON fingerprint of what source and destination must agree on: machine type,
    RAM size and placement, NUMA nodes, vCPU topology, EPC sections (node, size, address) and
    the guest CPU's SGX CPUID (leaf 7's SGX and SGX_LC bits, every leaf 0x12 subleaf). QEMU
    finds such differences as sections or RAM blocks that do not fit (``savevm.c``
    "Unknown savevm section", ``ram.c`` "Length mismatch"); vsgx compares them up front and
    names the difference. The host's identity is not part of it: the destination may be
    another host, with other fused keys, as a real SGX migration goes to another CPU.
``cpu``
    Every vCPU's SGX MSRs as :meth:`VirtualMachine.save_vcpu_state` gives them, JSON
    (``target/i386/machine.c``: ``cpu/msr_ia32_feature_control``, and ``cpu/intel_sgx``, the
    LE public-key hash MSRs, when the guest CPU has ``sgxlc``).
``guest``
    Only from a machine with a guest OS (:class:`vsgx.Machine`): the guest kernel's state and
    its processes, JSON (:mod:`vsgx.guest.migration` describes it). QEMU has no such section
    (a guest's kernel lives in its RAM); vsgx's guest kernel keeps its state outside guest
    RAM, so it travels here. A destination without a guest OS refuses it as an unknown
    section.
``ram``
    The guest RAM pages that are not all zero, as runs: u64 guest-physical address, u32 page
    count, the pages. All-zero pages are left out, as QEMU sends them as a bare
    ``RAM_SAVE_FLAG_ZERO`` (``migration/ram.c``, counted in ``duplicate``); the destination's
    RAM starts zeroed.

The EPC is not in the stream: ``sgx-epc`` has no VMState and its RAM blocks are not
migratable, so a destination starts with an empty EPC (QEMU docs/system/i386/sgx.rst,
"Migration").
"""


from __future__ import annotations

import hashlib
import json
import mmap
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from vsgx.arch import PAGE_SIZE
from vsgx.platform.config import MachineConfig
from vsgx.platform.cpuid import GuestCpuid
from vsgx.platform.layout import GuestLayout

MAGIC = b"VSGXMIG\0"
VERSION = 1
_SECTION = 0x01
_END = 0xFF
_HEADER = struct.Struct("<8sI")
_NAME = struct.Struct("<BH")
_LENGTH = struct.Struct("<Q")
_DIGEST_SIZE = 32
MAX_NAME = 255


class MigrationStreamError(Exception):
    """The stream cannot be loaded; the message says why (QEMU's words where it has them)."""


class StreamWriter:
    """Writes a stream to a binary file object, section by section, hashing as it goes."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._names: set[str] = set()
        self._closed = False
        self._write(_HEADER.pack(MAGIC, VERSION))

    def _write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self._out.write(data)

    def section(self, name: str, payload: bytes | memoryview | Iterable[bytes | memoryview],
                length: int | None = None) -> None:
        """Add section ``name``: ``payload`` is bytes, or an iterable of chunks whose total
        is ``length`` (so large state, guest RAM, streams without being joined)."""
        if self._closed:
            raise ValueError("the stream is already finished")
        raw = name.encode()
        if not 0 < len(raw) <= MAX_NAME or name in self._names:
            raise ValueError(f"section name {name!r} is empty, too long or repeated")
        self._names.add(name)
        chunks: Iterable[bytes | memoryview]
        if isinstance(payload, bytes | memoryview):
            chunks, length = (payload,), len(payload)
        elif length is None:
            raise ValueError("a chunked payload needs its length")
        else:
            chunks = payload
        self._write(_NAME.pack(_SECTION, len(raw)) + raw + _LENGTH.pack(length))
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > length:
                raise ValueError(f"section {name!r}: more than the {length} bytes announced")
            self._write(chunk)
        if written != length:
            raise ValueError(f"section {name!r}: {written} bytes, {length} announced")

    def finish(self) -> None:
        """Write the end marker and the digest."""
        if not self._closed:
            self._write(bytes([_END]))
            self._out.write(self._hash.digest())
            self._closed = True


def _take(data: memoryview, pos: int, size: int) -> memoryview:
    if pos + size > len(data):
        raise MigrationStreamError("load of migration failed: Input/output error (the stream "
                                   "ends early: truncated)")
    return data[pos:pos + size]


def read_stream(data: bytes | memoryview) -> dict[str, memoryview]:
    """Every section of a complete stream, by name, after checking its structure and digest.
    The views point into ``data``."""
    view = memoryview(data).cast("B")
    magic, version = _HEADER.unpack(_take(view, 0, _HEADER.size))
    if magic != MAGIC:
        raise MigrationStreamError("Not a migration stream")
    if version != VERSION:
        raise MigrationStreamError(f"Unsupported migration stream version {version} (vsgx "
                                   f"reads version {VERSION})")
    sections: dict[str, memoryview] = {}
    pos = _HEADER.size
    while True:
        kind = _take(view, pos, 1)[0]
        if kind == _END:
            end = pos + 1
            digest = _take(view, end, _DIGEST_SIZE)
            if len(view) != end + _DIGEST_SIZE:
                raise MigrationStreamError(f"{len(view) - end - _DIGEST_SIZE} bytes after the "
                                           "end of the migration stream")
            if hashlib.sha256(view[:end]).digest() != bytes(digest):
                raise MigrationStreamError("load of migration failed: the stream's checksum "
                                           "does not match (corrupted)")
            return sections
        if kind != _SECTION:
            raise MigrationStreamError(f"Unknown savevm section type {kind}")
        _, size = _NAME.unpack(_take(view, pos, _NAME.size))
        pos += _NAME.size
        try:
            name = bytes(_take(view, pos, size)).decode()
        except UnicodeDecodeError:
            raise MigrationStreamError("load of migration failed: a section name is not "
                                       "UTF-8 (corrupted)") from None
        pos += size
        (length,) = _LENGTH.unpack(_take(view, pos, _LENGTH.size))
        pos += _LENGTH.size
        if not name or name in sections:
            raise MigrationStreamError(f"load of migration failed: section {name!r} is empty "
                                       "or repeated (corrupted)")
        sections[name] = _take(view, pos, length)
        pos += length


# -- URIs ------------------------------------------------------------------------------------

_QEMU_PROTOCOLS = ("tcp:", "rdma:", "exec:", "unix:", "fd:")
"""The URI schemes QEMU 7.2 knows (``migration/migration.c`` ``qmp_migrate``,
``qemu_start_incoming_migration``); vsgx migrates through ``file:`` only (QEMU 8.2's)."""


def file_uri_path(uri: str, *, incoming: bool) -> str:
    """The path of a ``file:PATH`` URI. Other URIs are refused with QEMU 7.2's words for an
    unknown scheme (``qmp_migrate``: "Parameter 'uri' expects a valid migration protocol";
    ``qemu_start_incoming_migration``: "unknown migration protocol: URI"), or, for a scheme
    QEMU has but vsgx does not, with a message that says so."""
    if uri.startswith("file:") and len(uri) > len("file:"):
        return uri[len("file:"):]
    scheme = next((p for p in _QEMU_PROTOCOLS if uri.startswith(p)), None)
    if scheme is not None:
        raise MigrationStreamError(f"vsgx migrates only to and from 'file:PATH', not "
                                   f"'{scheme}' URIs")
    if incoming:
        raise MigrationStreamError(f"unknown migration protocol: {uri}")
    raise MigrationStreamError("Parameter 'uri' expects a valid migration protocol")


# -- the machine state ---------------------------------------------------------------------

_RUN = struct.Struct("<QI")
_SCAN_CHUNK = 64 << 20
"""Bytes of guest RAM looked at in one numpy pass (the scan never copies RAM)."""
_LOAD_FAILED = "load of migration failed: Invalid argument"


def fingerprint(config: MachineConfig, layout: GuestLayout,
                cpuid: GuestCpuid) -> dict[str, Any]:
    """What a destination must share with the source (the ``config`` section), as JSON-ready
    values. Leaf 7 contributes only its SGX (EBX bit 2) and SGX_LC (ECX bit 30) bits: the
    rest of it describes the host CPU, which may differ."""
    smp = config.smp
    _, ebx7, ecx7, _ = cpuid(0x7, 0)
    return {
        "machine": config.machine.versioned_name,
        "ram": {"size": config.memory.size, "below-4g": layout.below_4g_mem_size,
                "above-4g": layout.above_4g_mem_size},
        "numa": [{"node": n.nodeid, "cpus": list(n.cpus), "size": n.size}
                 for n in config.numa_nodes],
        "smp": {"cpus": smp.cpus, "sockets": smp.sockets, "dies": smp.dies,
                "cores": smp.cores, "threads": smp.threads, "maxcpus": smp.maxcpus},
        "sgx-epc": [{"node": s.node, "size": s.size, "addr": s.addr}
                    for s in layout.epc_sections],
        "cpuid": {"leaf7-sgx": ebx7 >> 2 & 1, "leaf7-sgx-lc": ecx7 >> 30 & 1,
                  "leaf12": [[subleaf, *regs] for (leaf, subleaf), regs
                             in sorted(cpuid.leaves.items()) if leaf == 0x12]},
    }


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def config_mismatch(source: dict[str, Any], destination: dict[str, Any]) -> str | None:
    """None when the two fingerprints agree, else the message naming each difference."""
    keys = sorted(set(source) | set(destination))
    diffs = [f"{key}: source {json.dumps(source.get(key))}, destination "
             f"{json.dumps(destination.get(key))}"
             for key in keys if source.get(key) != destination.get(key)]
    if not diffs:
        return None
    return (f"{_LOAD_FAILED} (the destination's configuration differs from the source's: "
            + "; ".join(diffs) + ")")


@dataclass(frozen=True)
class RamStats:
    """What the ``ram`` section held, in QEMU's ``MigrationStats`` terms: ``normal`` pages
    sent, ``duplicate`` all-zero pages not sent, ``total`` bytes of guest RAM."""

    total: int
    normal: int
    duplicate: int


def _nonzero_pages(region: mmap.mmap) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """One flag per page of ``region``: does it hold a non-zero byte."""
    words = np.frombuffer(region, dtype=np.uint64)
    step = _SCAN_CHUNK // 8
    flags = [words[pos:pos + step].reshape(-1, PAGE_SIZE // 8).any(axis=1)
             for pos in range(0, len(words), step)]
    del words
    return np.concatenate(flags) if flags else np.zeros(0, dtype=np.bool_)


def _runs(flags: np.ndarray[Any, np.dtype[np.bool_]]) -> list[tuple[int, int]]:
    """The (first page, page count) of each run of set flags."""
    edges = np.diff(np.concatenate(([0], flags.view(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]


def _ram_chunks(regions: Sequence[tuple[int, mmap.mmap]],
                runs: Sequence[tuple[int, int, int]]) -> Iterator[bytes | memoryview]:
    """The ``ram`` payload, run by run, in slices of at most ``_SCAN_CHUNK`` bytes taken
    straight from guest memory."""
    for index, first, count in runs:
        base, region = regions[index]
        yield _RUN.pack(base + first * PAGE_SIZE, count)
        with memoryview(region) as view:
            for pos in range(first * PAGE_SIZE, (first + count) * PAGE_SIZE, _SCAN_CHUNK):
                with view[pos:min(pos + _SCAN_CHUNK, (first + count) * PAGE_SIZE)] as chunk:
                    yield chunk


def save_machine(out: BinaryIO, config: dict[str, Any], vcpus: list[dict[str, Any]],
                 regions: Sequence[tuple[int, mmap.mmap]], guest: bytes | None = None
                 ) -> RamStats:
    """Write a whole machine stream to ``out``: the ``config`` fingerprint, the ``cpu``
    state, the ``guest`` section when ``guest`` is given, and the non-zero pages of
    ``regions`` (guest RAM: (base address, memory)).
    The machine must not change while this runs (QEMU stops the vCPUs first)."""
    runs: list[tuple[int, int, int]] = []
    total = normal = 0
    for index, (_, region) in enumerate(regions):
        total += len(region)
        for first, count in _runs(_nonzero_pages(region)):
            runs.append((index, first, count))
            normal += count
    writer = StreamWriter(out)
    writer.section("config", _canonical(config))
    writer.section("cpu", _canonical(vcpus))
    if guest is not None:
        writer.section("guest", guest)
    writer.section("ram", _ram_chunks(regions, runs),
                   length=len(runs) * _RUN.size + normal * PAGE_SIZE)
    writer.finish()
    return RamStats(total, normal, total // PAGE_SIZE - normal)


@dataclass(frozen=True)
class MachineState:
    """A validated machine stream: the source's fingerprint and vCPU state, the RAM runs
    (guest-physical address, pages) and the ``guest`` section (None when absent) as views
    into the stream."""

    config: dict[str, Any]
    vcpus: list[dict[str, Any]]
    ram: list[tuple[int, memoryview]]
    guest: memoryview | None = None


def _json_section(sections: dict[str, memoryview], name: str) -> Any:
    if name not in sections:
        raise MigrationStreamError(f"{_LOAD_FAILED} (the stream has no '{name}' section)")
    try:
        return json.loads(bytes(sections[name]))
    except ValueError:
        raise MigrationStreamError(f"{_LOAD_FAILED} (section '{name}' is not valid "
                                   "JSON)") from None


def read_machine(data: bytes | memoryview, ram: Sequence[tuple[int, int]]) -> MachineState:
    """Check a whole machine stream for a destination whose RAM is ``ram`` ((base, size)
    ranges) and return its state; nothing is changed, so a refused stream loads nothing.
    Section checks follow ``qemu_loadvm_state``: an unknown section is refused (QEMU:
    "Unknown savevm section or instance"), RAM outside the destination's is refused
    (``ram_load_precopy``: "Unknown ramblock"). The ``guest`` section is left to the
    machine to check (:meth:`VirtualMachine.check_guest_state`)."""
    sections = read_stream(data)
    extra = sorted(set(sections) - {"config", "cpu", "guest", "ram"})
    if extra:
        raise MigrationStreamError(f"Unknown savevm section or instance '{extra[0]}' 0. "
                                   "Make sure that your current VM setup matches your "
                                   "saved VM setup, including any hotplugged devices")
    config, vcpus = _json_section(sections, "config"), _json_section(sections, "cpu")
    if not isinstance(config, dict) or not isinstance(vcpus, list) or not all(
            isinstance(v, dict) for v in vcpus):
        raise MigrationStreamError(f"{_LOAD_FAILED} (malformed 'config' or 'cpu' section)")
    if "ram" not in sections:
        raise MigrationStreamError(f"{_LOAD_FAILED} (the stream has no 'ram' section)")
    payload, pos, runs = sections["ram"], 0, []
    while pos < len(payload):
        if pos + _RUN.size > len(payload):
            raise MigrationStreamError(f"{_LOAD_FAILED} (a RAM run is cut short)")
        addr, count = _RUN.unpack_from(payload, pos)
        size = count * PAGE_SIZE
        pos += _RUN.size
        if pos + size > len(payload):
            raise MigrationStreamError(f"{_LOAD_FAILED} (a RAM run is cut short)")
        if addr % PAGE_SIZE or not any(base <= addr and addr + size <= base + length
                                       for base, length in ram):
            raise MigrationStreamError(
                f"{_LOAD_FAILED} (RAM at {addr:#x}+{size:#x} is not in the destination's "
                "guest RAM)")
        runs.append((addr, payload[pos:pos + size]))
        pos += size
    return MachineState(config, vcpus, runs, sections.get("guest"))
