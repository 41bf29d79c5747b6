"""The guest-physical address map of a ``pc`` or ``q35`` machine, computed as QEMU 7.2 computes
it: RAM split below and above 4 GiB, the virtual EPC packed right after above-4G RAM, the
memory-hotplug region 1 GiB aligned after the EPC, and the E820 map the firmware hands the guest.

Sources: ``hw/i386/pc_piix.c`` ``pc_init1`` and ``hw/i386/pc_q35.c`` ``pc_q35_init`` (the RAM
split), ``hw/i386/sgx.c`` ``pc_machine_init_sgx_epc`` (EPC base and packing),
``hw/i386/sgx-epc.c`` ``sgx_epc_realize`` (section addresses), ``hw/i386/pc.c``
``pc_memory_init`` (device memory and E820).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from vsgx.platform.config import MachineConfig, MachineType
from vsgx.platform.qemuopts import QemuOptionError

GiB = 1 << 30
ABOVE_4G_MEM_START = 4 * GiB
"""``x86_machine_initfn``: ``above_4g_mem_start = 4 * GiB`` (vsgx's vCPUs are Intel, so the
AMD 1 TiB hole relocation never applies)."""

PIIX_MAX_RAM_BELOW_4G = 0xE000_0000
"""``pc_init1``: the i440fx default for ``max-ram-below-4g``."""
PIIX_GIGABYTE_ALIGNED_LOWMEM = 0xC000_0000
"""``pc_init1`` with ``gigabyte_align`` (true for pc-i440fx-7.2): low RAM stops at 3 GiB once RAM
reaches ``max-ram-below-4g``, so that 1 GiB pages map cleanly."""
Q35_LOWMEM_SMALL = 0xB000_0000
Q35_LOWMEM_LARGE = 0x8000_0000
"""``pc_q35_init``: 2.75 GiB below 4G when RAM is smaller than that, else 2 GiB (the
MMCONFIG window takes the rest)."""

HOLE_640K_START = 640 << 10
HOLE_640K_END = 1 << 20


class E820Type(IntEnum):
    """E820 range types (ACPI 6.5 Table 15.312)."""

    RAM = 1
    RESERVED = 2


@dataclass(frozen=True)
class E820Entry:
    base: int
    length: int
    type: E820Type

    @property
    def end(self) -> int:
        """Last byte of the range (inclusive)."""
        return self.base + self.length - 1


@dataclass(frozen=True)
class EpcSectionLayout:
    """Where section ``index`` sits: ``addr`` (the ``sgx-epc`` device's ``addr`` property),
    its size, guest NUMA node and the id of its ``memory-backend-epc``."""

    index: int
    addr: int
    size: int
    node: int
    memdev: str

    @property
    def end(self) -> int:
        """Last byte of the section (inclusive), as Linux prints it."""
        return self.addr + self.size - 1


@dataclass(frozen=True)
class GuestLayout:
    """The guest-physical memory map."""

    below_4g_mem_size: int
    above_4g_mem_start: int
    above_4g_mem_size: int
    epc_base: int
    epc_size: int
    epc_sections: tuple[EpcSectionLayout, ...]
    device_memory_base: int | None
    device_memory_size: int

    @property
    def above_4g_end(self) -> int:
        """``pc_above_4g_end``: the end of the EPC when there is one, else of above-4G RAM."""
        if self.epc_size:
            return self.epc_base + self.epc_size
        return self.above_4g_mem_start + self.above_4g_mem_size

    def e820(self) -> tuple[E820Entry, ...]:
        """The E820 entries QEMU adds (``pc_memory_init``, ``pc_machine_init_sgx_epc``): low
        RAM, above-4G RAM, then one reserved range covering every EPC section. SeaBIOS later
        carves out the 640 KiB-1 MiB hole; that is firmware's business, not QEMU's."""
        entries = [E820Entry(0, self.below_4g_mem_size, E820Type.RAM)]
        if self.above_4g_mem_size:
            entries.append(E820Entry(self.above_4g_mem_start, self.above_4g_mem_size,
                                     E820Type.RAM))
        if self.epc_size:
            entries.append(E820Entry(self.epc_base, self.epc_size, E820Type.RESERVED))
        return tuple(entries)


def lowmem_size(machine: MachineType, ram_size: int) -> int:
    """How much RAM QEMU maps below 4 GiB for ``machine`` with ``ram_size`` bytes of RAM."""
    if machine is MachineType.Q35:
        lowmem = Q35_LOWMEM_LARGE if ram_size >= Q35_LOWMEM_SMALL else Q35_LOWMEM_SMALL
    else:
        lowmem = PIIX_MAX_RAM_BELOW_4G
        if ram_size >= PIIX_MAX_RAM_BELOW_4G:
            lowmem = PIIX_GIGABYTE_ALIGNED_LOWMEM
    return min(lowmem, ram_size)


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def guest_layout(config: MachineConfig) -> GuestLayout:
    """Lay out ``config``'s guest-physical memory.

    Raises :class:`QemuOptionError` with QEMU's message when the EPC sizes add up past the top
    of the 64-bit address space (``Size of all 'sgx-epc' =0x… causes EPC to wrap``).
    """
    ram = config.memory.size
    below = lowmem_size(config.machine, ram)
    above = ram - below
    epc_base = ABOVE_4G_MEM_START + above
    sections = []
    offset = 0
    for index, section in enumerate(config.sgx_epc):
        sections.append(EpcSectionLayout(index, epc_base + offset, section.size, section.node,
                                         section.backend.id))
        offset += section.size
    # QEMU's size counter is a uint64 and its wrap check compares base + size < base.
    if offset and (epc_base + offset >= 1 << 64 or offset >= 1 << 64):
        raise QemuOptionError(f"Size of all 'sgx-epc' =0x{offset % (1 << 64):x} causes EPC to "
                              "wrap")
    layout = GuestLayout(below, ABOVE_4G_MEM_START, above, epc_base, offset, tuple(sections),
                         None, 0)
    maxmem = config.memory.maxmem
    if maxmem is not None and maxmem > ram:
        # pc_memory_init: the hotplug region starts 1 GiB aligned after the EPC and holds the
        # unplugged RAM plus 1 GiB of alignment slack per slot.
        base = _round_up(layout.above_4g_end, GiB)
        size = (maxmem - ram) + GiB * config.memory.slots
        layout = GuestLayout(below, ABOVE_4G_MEM_START, above, epc_base, offset,
                             tuple(sections), base, size)
    return layout
