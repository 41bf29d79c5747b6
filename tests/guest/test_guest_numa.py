"""The guest's SRAT reading on hand-made tables: what Linux logs for odd tables and whether NUMA
setup keeps the SRAT."""

from __future__ import annotations

import dataclasses
import struct

from guest_cases import ONE_EPC, platform

from vsgx.guest import NumaMemblk, NumaView, acpi_numa_init, boot, numa_view

NOT_USED = "ACPI: SRAT: SRAT not used."


def cpu(apic: int, pxm: int, flags: int = 1, length: int = 16, pxm_hi: int = 0) -> bytes:
    return struct.pack("<BBBBIB3sI", 0, length, pxm, apic, flags, 0,
                       pxm_hi.to_bytes(3, "little"), 0)[:length]


def mem(base: int, size: int, pxm: int, flags: int = 1, length: int = 40) -> bytes:
    return struct.pack("<BBIHQQIIQ", 1, length, pxm, 0, base, size, 0, flags, 0)[:length]


def srat(*entries: bytes, revision: int = 1, signature: bytes = b"SRAT") -> bytes:
    body = struct.pack("<IQ", 1, 0) + b"".join(entries)
    header = struct.pack("<4sIBB6s8sI4sI", signature, 36 + len(body), revision, 0, b"BOCHS ",
                         b"BXPC    ", 1, b"BXPC", 1)
    table = bytearray(header + body)
    table[9] = -sum(table) & 0xFF
    return bytes(table)


GOOD = srat(cpu(0, 0), cpu(1, 1), mem(0, 0xA_0000, 0), mem(0x10_0000, 0x3FF0_0000, 0),
            mem(0x1_0000_0000, 0x4000_0000, 1), mem(0, 0, 0, flags=0))
GOOD_LINES = ("ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0009ffff]",
              "ACPI: SRAT: Node 0 PXM 0 [mem 0x00100000-0x3fffffff]",
              "ACPI: SRAT: Node 1 PXM 1 [mem 0x100000000-0x13fffffff]")


def test_good_table() -> None:
    result = acpi_numa_init(GOOD)
    assert result is not None and result.usable
    assert result.lines == GOOD_LINES
    assert result.cpu_nodes == (0, 1)
    assert [entry.memblk for entry in result.memory] == [
        NumaMemblk(0, 0xA_0000, 0), NumaMemblk(0x10_0000, 0x4000_0000, 0),
        NumaMemblk(0x1_0000_0000, 0x1_4000_0000, 1)]


def test_bad_checksum_is_reported_and_the_table_still_used() -> None:
    table = bytearray(GOOD)
    table[9] = (table[9] + 1) & 0xFF
    result = acpi_numa_init(bytes(table))
    assert result is not None and result.usable
    # ACPICA prints table->checksum - checksum: here 1 (the stored byte is one too high).
    assert result.lines == (f"ACPI BIOS Warning (bug): Incorrect checksum in table [SRAT] - "
                            f"0x{table[9]:02X}, should be 0x01", *GOOD_LINES)
    table[9] = (table[9] - 2) & 0xFF
    result = acpi_numa_init(bytes(table))
    assert result is not None
    assert result.lines[0].endswith("should be 0xFFFFFFFF")


def test_other_signature_is_no_srat() -> None:
    assert acpi_numa_init(srat(mem(0, 0x1000_0000, 0), signature=b"SLIT")) is None
    machine = platform(ONE_EPC)
    kernel = boot(dataclasses.replace(machine, acpi_tables={"SRAT": b"XXXX" + GOOD[4:]}))
    assert kernel.numa_memory == () and kernel.dmesg[-1].startswith("sgx: [Firmware Bug]")


def test_short_memory_entry_disables_the_srat() -> None:
    result = acpi_numa_init(srat(cpu(0, 0), mem(0, 0xA_0000, 0), mem(0, 0, 0, length=32),
                                 mem(0x10_0000, 0x1000_0000, 0)))
    assert result is not None and not result.usable
    assert result.lines == ("ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0009ffff]",
                            "ACPI: SRAT: Unexpected header length: 32", NOT_USED)


def test_wrong_cpu_entry_length_disables_the_srat_silently_otherwise() -> None:
    result = acpi_numa_init(srat(cpu(0, 0, length=12), mem(0, 0x1000_0000, 0)))
    assert result is not None and not result.usable
    assert result.lines == (NOT_USED,)


def test_zero_length_subtable_fails_both_passes() -> None:
    result = acpi_numa_init(srat(mem(0, 0x1000_0000, 0), b"\x05\x00", mem(0, 0x1000, 0)))
    assert result is not None and not result.usable
    assert result.lines == ("[SRAT:0x00] Invalid zero length",
                            "ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0fffffff]",
                            "[SRAT:0x01] Invalid zero length")


def test_no_enabled_memory_means_no_numa() -> None:
    result = acpi_numa_init(srat(cpu(0, 0), mem(0, 0, 0, flags=0)))
    assert result is not None and result.lines == () and not result.usable
    assert numa_view(result, 1, None).ranges == ()


def test_header_length_bounds_the_walk() -> None:
    # Bytes after the table are not entries; nor is a subtable header ending at the table end
    # (acpi_parse_entries_array walks while entry + 2 < table_end).
    result = acpi_numa_init(srat(mem(0, 0x1000_0000, 0), b"\x01\x00") + mem(1 << 32, 1, 0))
    assert result is not None and result.usable
    assert result.lines == ("ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0fffffff]",)


def test_bytes_past_the_supplied_table_read_as_zero() -> None:
    table = srat(mem(0, 0x1000_0000, 0), mem(0x1000_0000, 0x1000_0000, 1))
    result = acpi_numa_init(table[:-8])  # the last entry's trailing reserved bytes
    assert result is not None and result.usable
    assert result.lines == ("ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0fffffff]",
                            "ACPI: SRAT: Node 1 PXM 1 [mem 0x10000000-0x1fffffff]")


def test_flags_revision_and_empty_ranges() -> None:
    result = acpi_numa_init(srat(
        cpu(0, 0x34, pxm_hi=0x12), mem(0, 0x1000, 0x1234, flags=1 | 4),
        mem(0x2000, 0, 0x1234), mem(0x1_0000_0000, 0x1000_0000, 0x1234, flags=1 | 2),
        revision=2))
    assert result is not None and result.usable
    assert result.cpu_nodes == (0,)
    assert result.lines == (
        "ACPI: SRAT: Node 0 PXM 4660 [mem 0x00000000-0x00000fff] non-volatile",
        "ACPI: SRAT: Node 0 PXM 4660 [mem 0x00002000-0x00001fff]",
        "ACPI: SRAT: Node 0 PXM 4660 [mem 0x100000000-0x10fffffff] hotplug")
    assert len(result.memory) == 2  # the empty range is logged, not registered
    # Revision 1 keeps only the low byte of a memory entry's proximity domain.
    result = acpi_numa_init(srat(mem(0, 0x1000, 0x105)))
    assert result is not None and result.lines == (
        "ACPI: SRAT: Node 0 PXM 5 [mem 0x00000000-0x00000fff]",)


def test_x2apic_entries_give_cpu_nodes() -> None:
    x2apic = struct.pack("<BBHIIIII", 2, 24, 0, 3, 300, 1, 0, 0)
    result = acpi_numa_init(srat(cpu(0, 2), x2apic, mem(0, 0x1000_0000, 3)))
    assert result is not None and result.cpu_nodes == (0, 1)
    assert result.lines == ("ACPI: SRAT: Node 1 PXM 3 [mem 0x00000000-0x0fffffff]",)


def test_numa_view_states() -> None:
    result = acpi_numa_init(srat(
        cpu(0, 0), cpu(1, 1), cpu(2, 2), mem(0, 0x1000_0000, 0),
        mem(0x1000_0000, 0x1000_0000, 1), mem(0x2000_0000, 0x100_0000, 2),
        mem(0x4000_0000, 0x1000_0000, 3, flags=3)))
    # Two vCPUs present at boot; RAM ends where the EPC (at 0x20000000) starts.
    view = numa_view(result, 2, 0x2000_0000)
    assert view.online == (0, 1)
    assert view.with_memory == {0, 1} and view.with_cpus == {0, 1}
    assert view.target_node(0x2000_0000) == 2 and view.target_node(0x4000_0000) == 3
    assert view.target_node(0x3000_0000) is None
    assert view.map_to_online_node(2) == 0 and view.map_to_online_node(1) == 1
    assert NumaView((), (), frozenset(), frozenset()).map_to_online_node(4) == 4
