"""The ACPI pieces QEMU 7.2 builds for a machine's virtual EPC: the SRAT (binary, as the firmware
hands it to the guest) and the DSDT's ``\\_SB.EPC`` device (as structured data).

Sources: ``hw/i386/acpi-build.c`` (``build_srat``, and ``build_dsdt`` for the EPC device),
``hw/i386/sgx.c`` (``sgx_epc_build_srat``), ``hw/acpi/aml-build.c`` (``acpi_table_begin``,
``acpi_table_end``, ``build_srat_memory``), ``hw/core/machine.c``
(``machine_numa_finish_cpu_init``), ``hw/i386/x86.c`` (``x86_get_default_cpu_node_id``) and
``include/hw/i386/topology.h`` (APIC ids). Table layouts: ACPI 6.5 §5.2.6 (header) and §5.2.16
(SRAT).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntFlag

from vsgx.platform.config import MachineConfig, SmpConfig
from vsgx.platform.layout import ABOVE_4G_MEM_START, HOLE_640K_END, HOLE_640K_START, GuestLayout

ACPI_HEADER = struct.Struct("<4sIBB6s8sI4sI")
"""System Description Table Header: signature, length, revision, checksum, OEM id, OEM table
id, OEM revision, creator id, creator revision (36 bytes)."""
SRAT_RESERVED = struct.Struct("<IQ")
"""What follows the SRAT's header: a 4-byte field QEMU sets to 1, then 8 reserved bytes."""
LAPIC_AFFINITY = struct.Struct("<BBBBIB3sI")
"""Processor Local APIC/SAPIC Affinity (type 0, 16 bytes): type, length, proximity domain
[7:0], APIC id, flags, local SAPIC EID, proximity domain [31:8], clock domain."""
X2APIC_AFFINITY = struct.Struct("<BBHIIIII")
"""Processor Local x2APIC Affinity (type 2, 24 bytes): type, length, reserved, proximity
domain, x2APIC id, flags, clock domain, reserved."""
MEMORY_AFFINITY = struct.Struct("<BBIHQQIIQ")
"""Memory Affinity (type 1, 40 bytes): type, length, proximity domain, reserved, base, length,
reserved, flags, reserved."""

OEM_ID = b"BOCHS "
"""``ACPI_BUILD_APPNAME6``, the default of the machine's ``x86ms->oem_id``."""
OEM_TABLE_ID = b"BXPC    "
"""``ACPI_BUILD_APPNAME8``, the default ``oem_table_id``; its first four bytes are the creator
id."""
SRAT_REVISION = 1
CPU_AFFINITY_ENABLED = 1
X2APIC_FROM = 255
"""``build_srat`` describes an APIC id below 255 with a Local APIC entry, any other with an
x2APIC entry."""


class MemAffinityFlags(IntFlag):
    """``MemoryAffinityFlags`` (``include/hw/acpi/aml-build.h``; ACPI Table 5.62)."""

    NOFLAGS = 0
    ENABLED = 1
    HOTPLUGGABLE = 2
    NON_VOLATILE = 4


def acpi_table(signature: bytes, revision: int, body: bytes) -> bytes:
    """A whole table as ``acpi_table_begin``/``acpi_table_end`` write it: QEMU's header (OEM
    revision 1, creator ``BXPC`` revision 1) before ``body``, with the checksum byte set so
    that every byte of the table sums to 0 mod 256 (the BIOS linker's ``add_checksum``)."""
    length = ACPI_HEADER.size + len(body)
    header = ACPI_HEADER.pack(signature, length, revision, 0, OEM_ID, OEM_TABLE_ID, 1,
                              OEM_TABLE_ID[:4], 1)
    checksum = -sum(header + body) & 0xFF
    return header[:9] + bytes([checksum]) + header[10:] + body


def apic_id(smp: SmpConfig, index: int) -> int:
    """``x86_apicid_from_cpu_idx``: the APIC id of vCPU ``index``. Each topology level gets a
    bit field just wide enough for its count (``apicid_bitwidth_for_count``), so vCPU i has
    APIC id i whenever threads, cores and dies are powers of two."""
    smt_width = _bitwidth(smp.threads)
    core_width = _bitwidth(smp.cores)
    die_width = _bitwidth(smp.dies)
    smt = index % smp.threads
    core = index // smp.threads % smp.cores
    die = index // (smp.threads * smp.cores) % smp.dies
    pkg = index // (smp.threads * smp.cores * smp.dies)
    return (pkg << (die_width + core_width + smt_width) | die << (core_width + smt_width)
            | core << smt_width | smt)


def _bitwidth(count: int) -> int:
    return (count - 1).bit_length()


def cpu_nodes(config: MachineConfig) -> tuple[int, ...]:
    """The NUMA node of every possible vCPU (``machine_numa_finish_cpu_init``).

    A vCPU named in a ``-numa node,cpus=`` list is on that node. When no ``-numa`` option names
    any vCPU, each vCPU goes to its socket modulo the number of nodes
    (``x86_get_default_cpu_node_id``: ``pkg_id % num_nodes``); when some are named, the others
    go to node 0 (QEMU warns "CPU(s) not present in any NUMA nodes").
    """
    smp = config.smp
    named = {cpu: node.nodeid for node in config.numa_nodes for cpu in node.cpus}
    per_socket = smp.threads * smp.cores * smp.dies
    nodes = len(config.numa_nodes)
    return tuple(named.get(i, 0) if named else i // per_socket % nodes
                 for i in range(smp.maxcpus))


@dataclass(frozen=True)
class _MemoryAffinity:
    base: int
    length: int
    node: int
    flags: MemAffinityFlags

    def pack(self) -> bytes:
        """``build_srat_memory``."""
        return MEMORY_AFFINITY.pack(1, MEMORY_AFFINITY.size, self.node, 0, self.base,
                                    self.length, 0, self.flags, 0)


def build_srat(config: MachineConfig, layout: GuestLayout) -> bytes | None:
    """The SRAT QEMU 7.2 builds (``build_srat``), or None for a machine without NUMA nodes
    (``acpi_build`` adds the table only when ``numa_state->num_nodes`` is non-zero).

    Entries, in QEMU's order: one processor affinity per possible vCPU; RAM affinities node by
    node with the 640 KiB-1 MiB hole and the below-4G PCI hole cut out; one ENABLED entry per
    EPC section (``sgx_epc_build_srat``); disabled zero entries until there are
    ``num_nodes + 2`` memory entries; then, when the machine has a memory-hotplug region, an
    ENABLED|HOTPLUGGABLE entry for it on the last node.

    ``sgx_epc_build_srat`` walks the QOM tree for ``sgx-epc`` devices, whose children QEMU
    keeps in a hash table; the EPC entries here follow section order, which may differ from
    the real table's order when there are several sections.
    """
    if not config.numa_nodes:
        return None
    memory = [*_ram_affinities(config, layout), *_epc_affinities(layout)]
    memory += [_MemoryAffinity(0, 0, 0, MemAffinityFlags.NOFLAGS)] * max(
        0, len(config.numa_nodes) + 2 - len(memory))
    if layout.device_memory_base is not None:
        memory.append(_MemoryAffinity(layout.device_memory_base, layout.device_memory_size,
                                      len(config.numa_nodes) - 1,
                                      MemAffinityFlags.HOTPLUGGABLE | MemAffinityFlags.ENABLED))
    body = SRAT_RESERVED.pack(1, 0) + b"".join(_cpu_affinities(config)) + b"".join(
        entry.pack() for entry in memory)
    return acpi_table(b"SRAT", SRAT_REVISION, body)


def _cpu_affinities(config: MachineConfig) -> Iterator[bytes]:
    for index, node in enumerate(cpu_nodes(config)):
        apic = apic_id(config.smp, index)
        if apic < X2APIC_FROM:
            yield LAPIC_AFFINITY.pack(0, LAPIC_AFFINITY.size, node, apic, CPU_AFFINITY_ENABLED,
                                      0, bytes(3), 0)
        else:
            yield X2APIC_AFFINITY.pack(2, X2APIC_AFFINITY.size, 0, node, apic,
                                       CPU_AFFINITY_ENABLED, 0, 0)


def _ram_affinities(config: MachineConfig, layout: GuestLayout) -> Iterator[_MemoryAffinity]:
    """``build_srat``'s RAM loop: nodes are laid end to end from address 0; a node's range
    loses the 640 KiB-1 MiB hole, and the part above ``below_4g_mem_size`` moves to 4 GiB."""
    below_4g = layout.below_4g_mem_size
    next_base = 0
    for node in config.numa_nodes:
        mem_base, mem_len = next_base, node.size
        next_base = mem_base + mem_len
        if mem_base <= HOLE_640K_START < next_base:
            yield from _enabled(mem_base, HOLE_640K_START - mem_base, node.nodeid)
            if next_base <= HOLE_640K_END:
                next_base = HOLE_640K_END
                continue
            mem_base, mem_len = HOLE_640K_END, next_base - HOLE_640K_END
        if mem_base <= below_4g < next_base:
            yield from _enabled(mem_base, below_4g - mem_base, node.nodeid)
            mem_base, mem_len = ABOVE_4G_MEM_START, next_base - below_4g
            next_base = mem_base + mem_len
        yield from _enabled(mem_base, mem_len, node.nodeid)


def _enabled(base: int, length: int, node: int) -> Iterator[_MemoryAffinity]:
    """``build_srat_memory(..., MEM_AFFINITY_ENABLED)`` guarded by ``if (mem_len > 0)``."""
    if length > 0:
        yield _MemoryAffinity(base, length, node, MemAffinityFlags.ENABLED)


def _epc_affinities(layout: GuestLayout) -> Iterator[_MemoryAffinity]:
    """``sgx_epc_build_srat``: each section's range on the node its ``sgx-epc.N.node`` names
    (QEMU does not check that the node exists)."""
    for section in layout.epc_sections:
        yield _MemoryAffinity(section.addr, section.size, section.node, MemAffinityFlags.ENABLED)


@dataclass(frozen=True)
class QWordMemory:
    """A ``QWordMemory`` resource descriptor (``aml_qword_memory``) as ``build_dsdt`` writes it
    for the EPC: PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, granularity 0,
    translation offset 0."""

    minimum: int
    maximum: int
    length: int
    granularity: int = 0
    translation: int = 0


@dataclass(frozen=True)
class EpcAcpiDevice:
    """The DSDT's ``\\_SB.EPC`` device (``build_dsdt``): ``_HID EISAID("INT0E0C")``,
    ``_STR Unicode("Enclave Page Cache 1.0")``, a ``_STA`` method returning 0x0F and a
    ``_CRS`` with one QWordMemory range covering every EPC section."""

    crs: QWordMemory
    path: str = "\\_SB.EPC"
    hid: str = "INT0E0C"
    description: str = "Enclave Page Cache 1.0"
    sta: int = 0x0F


def build_epc_device(layout: GuestLayout) -> EpcAcpiDevice | None:
    """The EPC device, or None when the machine has no EPC (``sgx_epc.size == 0``)."""
    if not layout.epc_size:
        return None
    base, size = layout.epc_base, layout.epc_size
    return EpcAcpiDevice(QWordMemory(base, base + size - 1, size))
