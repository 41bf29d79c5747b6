"""The SRAT and EPC device QEMU 7.2 builds, checked byte by byte against ACPI 6.5 §5.2.16 and
QEMU's ``build_srat`` loop (offsets decoded here by hand, not with the builder's structs)."""

from __future__ import annotations

import shlex

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from seeds import SEED_NUMA

from vsgx.platform import MachineConfig, parse_qemu_args
from vsgx.platform.acpi import EpcAcpiDevice, QWordMemory, apic_id, build_epc_device, build_srat
from vsgx.platform.config import SmpConfig
from vsgx.platform.layout import guest_layout

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
NUMA_EXAMPLE = SEED_NUMA

ONE_NODE = "-object memory-backend-ram,id=r,size=1G -numa node,memdev=r"


def _config(args: str) -> MachineConfig:
    return parse_qemu_args(shlex.split(args))


def _srat(args: str) -> bytes:
    config = _config(args)
    table = build_srat(config, guest_layout(config))
    assert table is not None
    return table


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset:offset + size], "little")


def _entries(table: bytes) -> list[bytes]:
    """The subtables after the 48-byte SRAT header, split by their length bytes."""
    entries, offset = [], 48
    while offset < len(table):
        length = table[offset + 1]
        assert length
        entries.append(table[offset:offset + length])
        offset += length
    assert offset == len(table)
    return entries


def _memory(entry: bytes) -> tuple[int, int, int, int]:
    """(base, length, proximity domain, flags) of a type-1 entry."""
    assert entry[0] == 1 and len(entry) == 40
    assert entry[6:8] == bytes(2) and entry[24:28] == bytes(4) and entry[32:40] == bytes(8)
    return _le(entry, 8, 8), _le(entry, 16, 8), _le(entry, 2, 4), _le(entry, 28, 4)


def _cpus(table: bytes) -> list[tuple[int, int]]:
    """(APIC id, proximity domain) of each processor entry, checking each field's layout."""
    found = []
    for entry in _entries(table):
        if entry[0] == 0:
            assert len(entry) == 16 and _le(entry, 4, 4) == 1 and entry[8:16] == bytes(8)
            found.append((entry[3], entry[2]))
        elif entry[0] == 2:
            assert len(entry) == 24 and entry[2:4] == bytes(2) and _le(entry, 12, 4) == 1
            assert entry[16:24] == bytes(8)
            found.append((_le(entry, 8, 4), _le(entry, 4, 4)))
    return found


def _memories(table: bytes) -> list[tuple[int, int, int, int]]:
    return [_memory(entry) for entry in _entries(table) if entry[0] == 1]


def test_no_numa_no_srat() -> None:
    config = _config("-m 4G -cpu host -object memory-backend-epc,id=e,size=64M "
                     "-M sgx-epc.0.memdev=e,sgx-epc.0.node=0")
    assert build_srat(config, guest_layout(config)) is None


def test_header_is_qemus() -> None:
    table = _srat(NUMA_EXAMPLE)
    assert table[:4] == b"SRAT"
    assert _le(table, 4, 4) == len(table) == 48 + 4 * 16 + 5 * 40
    assert table[8] == 1  # revision
    assert sum(table) % 256 == 0
    assert table[10:16] == b"BOCHS " and table[16:24] == b"BXPC    "
    assert _le(table, 24, 4) == 1 and table[28:32] == b"BXPC" and _le(table, 32, 4) == 1
    assert _le(table, 36, 4) == 1 and table[40:48] == bytes(8)


def test_numa_example_entries() -> None:
    table = _srat(NUMA_EXAMPLE)
    assert _cpus(table) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert _memories(table) == [
        (0, 640 * KiB, 0, 1), (1 * MiB, 2 * GiB - 1 * MiB, 0, 1), (4 * GiB, 2 * GiB, 1, 1),
        (0x1_8000_0000, 64 * MiB, 0, 1), (0x1_8400_0000, 28 * MiB, 1, 1)]


def test_empty_slots_pad_to_nodes_plus_two() -> None:
    # Three nodes of 256M: RAM entries [0,640K) and [1M,256M) on node 0, then one per node;
    # four enabled entries, so one disabled zero entry brings the count to 3 + 2.
    objs = " ".join(f"-object memory-backend-ram,id=r{i},size=256M "
                    f"-numa node,nodeid={i},memdev=r{i}" for i in range(3))
    memory = _memories(_srat(f"-m 768M {objs}"))
    assert memory == [(0, 640 * KiB, 0, 1), (1 * MiB, 255 * MiB, 0, 1),
                      (256 * MiB, 256 * MiB, 1, 1), (512 * MiB, 256 * MiB, 2, 1), (0, 0, 0, 0)]


def test_epc_entries_count_towards_the_slots() -> None:
    # One node, two RAM entries, one EPC entry: already nodes + 2, so no padding.
    memory = _memories(_srat("-m 1G -cpu host -object memory-backend-ram,id=r,size=1G "
                             "-numa node,memdev=r -object memory-backend-epc,id=e,size=4M "
                             "-M sgx-epc.0.memdev=e,sgx-epc.0.node=0"))
    assert memory == [(0, 640 * KiB, 0, 1), (1 * MiB, 1023 * MiB, 0, 1),
                      (4 * GiB, 4 * MiB, 0, 1)]


def test_hotplug_region_entry_on_the_last_node() -> None:
    # -m with maxmem makes QEMU create node 0 by itself; the device-memory region starts 1 GiB
    # aligned after above-4G RAM (here at 4 GiB) and spans maxmem - size + 1 GiB per slot.
    config = _config("-m 1G,slots=2,maxmem=4G")
    layout = guest_layout(config)
    table = build_srat(config, layout)
    assert table is not None
    assert _memories(table) == [(0, 640 * KiB, 0, 1), (1 * MiB, 1023 * MiB, 0, 1),
                                (0, 0, 0, 0), (4 * GiB, 5 * GiB, 0, 3)]
    assert layout.device_memory_base == 4 * GiB


def test_pci_hole_split_within_one_node() -> None:
    # pc with 4G: 3G below the hole, 1G relocated to 4G, all on the one node.
    memory = _memories(_srat("-m 4G -object memory-backend-ram,id=r,size=4G -numa node,memdev=r"))
    assert memory == [(0, 640 * KiB, 0, 1), (1 * MiB, 3 * GiB - 1 * MiB, 0, 1),
                      (4 * GiB, 1 * GiB, 0, 1)]


def test_default_cpu_mapping_is_socket_modulo_nodes() -> None:
    # No -numa option names a CPU: x86_get_default_cpu_node_id puts socket s on node s % 2.
    objs = ("-object memory-backend-ram,id=a,size=1G -numa node,memdev=a "
            "-object memory-backend-ram,id=b,size=1G -numa node,memdev=b")
    table = _srat(f"-m 2G -smp 8,sockets=4,cores=2 {objs}")
    assert [node for _, node in _cpus(table)] == [0, 0, 1, 1, 0, 0, 1, 1]


def test_unnamed_cpus_fall_back_to_node_0() -> None:
    table = _srat("-m 2G -smp 4 -object memory-backend-ram,id=a,size=2G "
                  "-numa node,nodeid=0,cpus=0,memdev=a -numa node,nodeid=1,cpus=1")
    assert _cpus(table) == [(0, 0), (1, 1), (2, 0), (3, 0)]


def test_apic_ids_leave_gaps_for_non_power_of_two_counts() -> None:
    smp = SmpConfig(cpus=12, sockets=2, dies=1, cores=3, threads=2, maxcpus=12)
    # threads: 1 bit, cores: 2 bits -> socket 1 starts at APIC id 8.
    assert [apic_id(smp, i) for i in range(12)] == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]
    table = _srat(f"-m 1G -smp 6,sockets=2,cores=3 {ONE_NODE}")
    assert [apic for apic, _ in _cpus(table)] == [0, 1, 2, 4, 5, 6]


def test_x2apic_entries_from_apic_id_255() -> None:
    table = _srat(f"-machine q35 -m 1G -smp 1,maxcpus=288 {ONE_NODE}")
    kinds = [entry[0] for entry in _entries(table) if entry[0] != 1]
    assert kinds == [0] * 255 + [2] * 33
    assert _cpus(table)[254:256] == [(254, 0), (255, 0)]
    assert sum(table) % 256 == 0


def test_epc_device() -> None:
    assert build_epc_device(guest_layout(_config("-m 1G"))) is None
    device = build_epc_device(guest_layout(_config(NUMA_EXAMPLE)))
    assert device == EpcAcpiDevice(QWordMemory(0x1_8000_0000, 0x1_85BF_FFFF, 92 * MiB))
    assert (device.path, device.hid, device.description, device.sta) == (
        "\\_SB.EPC", "INT0E0C", "Enclave Page Cache 1.0", 0x0F)
    assert (device.crs.granularity, device.crs.translation) == (0, 0)


# -- property: the enabled RAM entries are exactly guest RAM, node by node ---------------------

_node_sizes = st.lists(
    st.one_of(st.integers(0, 160).map(lambda n: n * 8 * KiB),
              st.integers(0, 3072).map(lambda n: n * MiB)),
    min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(_node_sizes, st.sampled_from(["pc", "q35"]))
def test_ram_entries_cover_guest_ram(sizes: list[int], machine: str) -> None:
    total = sum(sizes)
    assume(total >= 1 * MiB)
    bounds = [sum(sizes[:i + 1]) for i in range(len(sizes))]
    # build_srat's "640K < RAM < 1M" case moves the next node up to 1 MiB, past RAM it never
    # describes: QEMU's own gap, kept out of this property.
    assume(not any(640 * KiB < b < 1 * MiB for b in bounds[:-1]))
    nodes = " ".join(
        (f"-object memory-backend-ram,id=r{i},size={size // KiB}K "
         f"-numa node,nodeid={i},memdev=r{i}" if size else f"-numa node,nodeid={i}")
        for i, size in enumerate(sizes))
    config = _config(f"-machine {machine} -m {total // KiB}K {nodes}")
    layout = guest_layout(config)
    table = build_srat(config, layout)
    assert table is not None and sum(table) % 256 == 0
    memory = _memories(table)
    enabled = [(base, length, node) for base, length, node, flags in memory if flags]
    assert all(flags == 1 for *_, flags in memory if flags)
    assert memory[len(enabled):] == [(0, 0, 0, 0)] * (len(memory) - len(enabled))
    assert len(memory) == max(len(enabled), len(sizes) + 2)

    below = layout.below_4g_mem_size

    def linear(phys: int) -> int:  # guest-physical -> offset in the nodes' end-to-end RAM
        return phys if phys < 4 * GiB else phys - 4 * GiB + below

    expected = [(0, min(640 * KiB, below)), (1 * MiB, below),
                (4 * GiB, 4 * GiB + layout.above_4g_mem_size)]
    expected = [(lo, hi) for lo, hi in expected if hi > lo]
    covered = sorted((base, base + length) for base, length, _ in enabled)
    merged: list[tuple[int, int]] = []
    for lo, hi in covered:
        assert not merged or lo >= merged[-1][1]  # no overlap
        if merged and lo == merged[-1][1]:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    assert merged == expected
    for base, length, node in enabled:
        start = bounds[node] - sizes[node]
        assert start <= linear(base) and linear(base + length - 1) < bounds[node]
