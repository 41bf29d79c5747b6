"""The guest kernel's NUMA view of the machine, built from the firmware's SRAT as Linux does:
ACPICA's checksum check at table install, then ``acpi_numa_init``
(``drivers/acpi/numa/srat.c``) with the x86 processor-affinity handlers (``arch/x86/mm/srat.c``)
and the generic subtable walk (``lib/fw_table.c`` ``acpi_parse_entries_array``), then what the
SGX driver asks of the result (``phys_to_target_node``, ``numa_nearest_node``, node states).

The byte layouts are Linux's own (``include/acpi/actbl3.h`` ``struct acpi_table_srat``,
``acpi_srat_cpu_affinity``, ``acpi_srat_x2apic_cpu_affinity``, ``acpi_srat_mem_affinity``),
written here independently of the builder in :mod:`vsgx.platform.acpi` so that each side checks
the other.

What Linux does with odd tables, and what this model does:

* a table whose signature is not ``SRAT`` is not an SRAT: Linux finds none (ACPICA installs it
  under its own signature without a word);
* a bad checksum gets ACPICA's ``ACPI BIOS Warning (bug): Incorrect checksum in table [SRAT]``
  and the table is still used (Linux builds ACPICA with ``ACPI_CHECKSUM_ABORT`` false). The
  warning's ``(version/module-line)`` suffix names the ACPICA release and source line, which
  this model cannot know, so it is left out;
* the header's length bounds the subtable walk; bytes the walk or a handler reads beyond the
  bytes the firmware supplied read as zero (Linux would read whatever memory follows);
* a processor entry of the wrong length, or a memory entry shorter than 40 bytes, makes Linux
  print ``ACPI: SRAT: SRAT not used.`` and ignore every later entry; a zero-length subtable
  ends the walk with ``[SRAT:0x..] Invalid zero length`` and fails NUMA setup;
* an enabled memory range of length 0 is logged but not registered, as ``numa_add_memblk``
  does; one whose end wraps past 2^64 is dropped too, without the warning Linux's
  ``numa_add_memblk_to`` prints (not modelled).

Processor-affinity lines (``SRAT: PXM %u -> APIC 0x%02x -> Node %u``) are ``pr_debug`` since
2017 and are not in the log at the default level, so they are not produced.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

_HEADER = struct.Struct("<4sIBB6s8sI4sI")  # struct acpi_table_header
_SRAT_SIZE = _HEADER.size + 12  # struct acpi_table_srat: header, table_revision, reserved[8]
_SUBTABLE = struct.Struct("<BB")  # struct acpi_subtable_header: type, length
_CPU = struct.Struct("<BBBBIB3sI")  # struct acpi_srat_cpu_affinity
_X2APIC = struct.Struct("<BBHIIIII")  # struct acpi_srat_x2apic_cpu_affinity
_MEM = struct.Struct("<BBIHQQIIQ")  # struct acpi_srat_mem_affinity

ACPI_SRAT_TYPE_CPU_AFFINITY = 0
ACPI_SRAT_TYPE_MEMORY_AFFINITY = 1
ACPI_SRAT_TYPE_X2APIC_CPU_AFFINITY = 2
ACPI_SRAT_CPU_ENABLED = 1
ACPI_SRAT_MEM_ENABLED = 1
ACPI_SRAT_MEM_HOT_PLUGGABLE = 2
ACPI_SRAT_MEM_NON_VOLATILE = 4
_U64 = (1 << 64) - 1


class NumaMemblk(NamedTuple):
    """One ``struct numa_memblk``: a physical range ``[start, end)`` (``end`` exclusive, as in
    Linux; the SRAT line prints ``end - 1``) and the Linux node id it belongs to."""

    start: int
    end: int
    node: int


@dataclass(frozen=True)
class SratMemory:
    """A memory range the SRAT registered: the memblock and whether it is hot-pluggable."""

    memblk: NumaMemblk
    hotplug: bool


@dataclass(frozen=True)
class SratNuma:
    """What ``acpi_numa_init`` leaves behind.

    ``lines`` are the log lines it printed; ``memory`` the ranges it registered (every enabled
    memory affinity, in table order); ``cpu_nodes`` the Linux node of each enabled processor
    entry in table order (``set_apicid_to_node``); ``usable`` whether ``x86_acpi_numa_init``
    succeeded. When it did not, x86 NUMA setup falls back to a single faked node and the
    ranges and CPU nodes are forgotten (``numa_init`` resets them before the next method).
    """

    lines: tuple[str, ...]
    memory: tuple[SratMemory, ...]
    cpu_nodes: tuple[int, ...]
    usable: bool


def checksum_warning(memory: bytes, length: int) -> str | None:
    """``acpi_ut_verify_checksum`` (``drivers/acpi/acpica/utcksum.c``) on the table at the start
    of ``memory`` whose header says it is ``length`` bytes long: the warning when those bytes
    do not sum to 0 mod 256, None otherwise. ACPICA prints the stored byte and
    ``table->checksum - checksum`` computed in C ``int`` and formatted ``%2.2X`` (so a negative
    difference shows as 32-bit two's complement)."""
    stored = _read(memory, 9, 1)[0]
    correct = -(sum(_read(memory, 0, length)) - stored) & 0xFF
    if correct == stored:
        return None
    signature = _read(memory, 0, 4).decode("latin-1")
    return (f"ACPI BIOS Warning (bug): Incorrect checksum in table [{signature}] - "
            f"0x{stored:02X}, should be 0x{(stored - correct) & 0xFFFF_FFFF:02X}")


def _read(memory: bytes, offset: int, size: int) -> bytes:
    """``size`` bytes of firmware memory at ``offset``; past the supplied bytes, zeros."""
    return memory[offset:offset + size].ljust(size, b"\0")


@dataclass
class _Parser:
    """The state ``acpi_numa_init`` keeps while it walks one SRAT."""

    memory: bytes
    table_end: int
    revision: int
    lines: list[str] = field(default_factory=list)
    pxm_to_node: dict[int, int] = field(default_factory=dict)
    disabled: bool = False
    cpu_nodes: list[int] = field(default_factory=list)
    registered: list[SratMemory] = field(default_factory=list)
    parsed: int = 0

    def walk(self) -> tuple[list[tuple[int, int, int]], bool]:
        """``acpi_parse_entries_array``'s loop: the (offset, type, length) of each subtable
        whose 2-byte header starts before the table's end, and False when a zero length
        stopped the walk (that subtable is still handed to its handler first)."""
        entries = []
        offset = _SRAT_SIZE
        while offset + _SUBTABLE.size < self.table_end:
            kind, length = _SUBTABLE.unpack(_read(self.memory, offset, _SUBTABLE.size))
            entries.append((offset, kind, length))
            if length == 0:
                return entries, False
            offset += length
        return entries, True

    def zero_length(self, proc_id: int) -> None:
        """The walk's complaint; ``proc_id`` is the pass's first handler's subtable type."""
        self.lines.append(f"[SRAT:0x{proc_id:02x}] Invalid zero length")

    def map_pxm(self, pxm: int) -> int:
        """``acpi_map_pxm_to_node``: nodes are handed out in order of first appearance."""
        return self.pxm_to_node.setdefault(pxm, len(self.pxm_to_node))

    def bad_srat(self) -> None:
        """``bad_srat``: log and disable the SRAT (``srat_disabled()`` becomes true)."""
        self.lines.append("ACPI: SRAT: SRAT not used.")
        self.disabled = True

    def cpu_affinity(self, offset: int, length: int) -> None:
        """``acpi_numa_processor_affinity_init`` (x86)."""
        if self.disabled:
            return
        if length != _CPU.size:
            self.bad_srat()
            return
        _, _, pxm_lo, _, flags, _, pxm_hi, _ = _CPU.unpack(_read(self.memory, offset, _CPU.size))
        if not flags & ACPI_SRAT_CPU_ENABLED:
            return
        pxm = pxm_lo
        if self.revision >= 2:
            pxm |= int.from_bytes(pxm_hi, "little") << 8
        self.cpu_nodes.append(self.map_pxm(pxm))

    def x2apic_affinity(self, offset: int, length: int) -> None:
        """``acpi_numa_x2apic_affinity_init`` (x86). x2APIC ids are taken as valid: a guest with
        that many vCPUs runs its APICs in x2APIC mode."""
        if self.disabled:
            return
        if length < _X2APIC.size:
            self.bad_srat()
            return
        _, _, _, pxm, _, flags, _, _ = _X2APIC.unpack(_read(self.memory, offset, _X2APIC.size))
        if flags & ACPI_SRAT_CPU_ENABLED:
            self.cpu_nodes.append(self.map_pxm(pxm))

    def memory_affinity(self, offset: int, length: int) -> None:
        """``acpi_numa_memory_affinity_init`` (Debian's CONFIG_MEMORY_HOTPLUG=y keeps
        hot-pluggable ranges)."""
        if self.disabled:
            return
        if length < _MEM.size:
            self.lines.append(f"ACPI: SRAT: Unexpected header length: {length}")
            self.bad_srat()
            return
        _, _, pxm, _, start, size, _, flags, _ = _MEM.unpack(
            _read(self.memory, offset, _MEM.size))
        if not flags & ACPI_SRAT_MEM_ENABLED:
            return
        if self.revision <= 1:
            pxm &= 0xFF
        node = self.map_pxm(pxm)
        end = (start + size) & _U64
        hotplug = bool(flags & ACPI_SRAT_MEM_HOT_PLUGGABLE)
        if start < end:  # numa_add_memblk skips empty ranges (and wrapped ones, with a warning)
            self.registered.append(SratMemory(NumaMemblk(start, end, node), hotplug))
        self.parsed += 1
        self.lines.append(
            f"ACPI: SRAT: Node {node} PXM {pxm} [mem {start:#010x}-{(end - 1) & _U64:#010x}]"
            f"{' hotplug' if hotplug else ''}"
            f"{' non-volatile' if flags & ACPI_SRAT_MEM_NON_VOLATILE else ''}")


def acpi_numa_init(table: bytes) -> SratNuma | None:
    """Read ``table`` (the firmware's ``SRAT`` bytes) as Linux does; None when it is not an
    SRAT. First pass: processor entries; second pass: memory entries."""
    if _read(table, 0, 4) != b"SRAT":
        return None
    _, length, revision, *_ = _HEADER.unpack(_read(table, 0, _HEADER.size))
    parser = _Parser(table, length, revision)
    warning = checksum_warning(table, length)
    if warning is not None:
        parser.lines.append(warning)
    entries, complete = parser.walk()
    for offset, kind, size in entries:
        if kind == ACPI_SRAT_TYPE_CPU_AFFINITY:
            parser.cpu_affinity(offset, size)
        elif kind == ACPI_SRAT_TYPE_X2APIC_CPU_AFFINITY:
            parser.x2apic_affinity(offset, size)
    if not complete:
        parser.zero_length(ACPI_SRAT_TYPE_CPU_AFFINITY)
    for offset, kind, size in entries:
        if kind == ACPI_SRAT_TYPE_MEMORY_AFFINITY:
            parser.memory_affinity(offset, size)
    if not complete:
        parser.zero_length(ACPI_SRAT_TYPE_MEMORY_AFFINITY)
    # acpi_numa_init fails on a walk error or when no memory entry was taken
    # (parsed_numa_memblks == 0); x86_acpi_numa_init also fails once the SRAT is disabled.
    usable = complete and parser.parsed > 0 and not parser.disabled
    return SratNuma(tuple(parser.lines), tuple(parser.registered), tuple(parser.cpu_nodes),
                    usable)


@dataclass(frozen=True)
class NumaView:
    """The NUMA facts the SGX driver uses once x86 NUMA setup is done.

    ``ranges`` are the SRAT's memory ranges (``numa_meminfo`` plus ``numa_reserved_meminfo``;
    empty when NUMA setup fell back to one faked node); ``online`` the online nodes, ascending;
    ``with_memory`` and ``with_cpus`` the nodes in state N_MEMORY and N_CPU.
    """

    ranges: tuple[NumaMemblk, ...]
    online: tuple[int, ...]
    with_memory: frozenset[int]
    with_cpus: frozenset[int]

    def target_node(self, addr: int) -> int | None:
        """``phys_to_target_node``: the node of the range holding ``addr``, None
        (NUMA_NO_NODE) when no range does. With a faked node there is no range: that node
        spans the RAM below ``max_pfn``, and EPC lies above all RAM."""
        for memblk in self.ranges:
            if memblk.start <= addr < memblk.end:
                return memblk.node
        return None

    def map_to_online_node(self, node: int) -> int:
        """``numa_nearest_node(node, N_ONLINE)``: an online node stays; otherwise the nearest
        online node. Without a SLIT (QEMU builds one only for ``-numa dist``) every other node
        is at the same distance, so that is the lowest-numbered online node."""
        if node in self.online or not self.online:
            return node
        return self.online[0]


FAKE_NODE = NumaView((), (0,), frozenset({0}), frozenset({0}))
"""``dummy_numa_init``: one node 0 with all memory and every CPU."""


def numa_view(srat: SratNuma | None, cpus: int, ram_end: int | None) -> NumaView:
    """The view after ``x86_numa_init``: from a usable SRAT, else :data:`FAKE_NODE`.

    The guest kernel learns which memory is RAM from the E820 map, which the platform does not
    hand this model; it takes as RAM every non-hot-pluggable range below ``ram_end`` (QEMU
    places the EPC right after all RAM, so the first EPC section's address; None when there is
    no EPC). A node is online when it has RAM or one of the first ``cpus`` processor entries
    (the vCPUs present at boot, which QEMU lists first)."""
    if srat is None or not srat.usable:
        return FAKE_NODE
    limit = float("inf") if ram_end is None else ram_end
    with_memory = frozenset(entry.memblk.node for entry in srat.memory
                            if not entry.hotplug and entry.memblk.start < limit)
    with_cpus = frozenset(srat.cpu_nodes[:cpus])
    return NumaView(tuple(entry.memblk for entry in srat.memory),
                    tuple(sorted(with_memory | with_cpus)), with_memory, with_cpus)
