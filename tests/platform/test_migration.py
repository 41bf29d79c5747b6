"""Migration: the stream codec (round trip, truncation, corruption), and whole machines moved
between emulated hosts through it (RAM and vCPU state kept, EPC left behind, mismatched
destinations and damaged streams refused with nothing loaded)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vmhelpers import ecreate

from vsgx.arch import PAGE_SIZE
from vsgx.machine import Machine
from vsgx.platform.host import open_host
from vsgx.platform.machine import MachineError, RunState, VirtualMachine
from vsgx.platform.migration import (
    MigrationStreamError,
    StreamWriter,
    file_uri_path,
    read_stream,
)

MiB = 1 << 20
SMALL = ("-machine q35 -m 128M -smp 2 -cpu host,+sgxlc "
         "-object memory-backend-epc,id=mem1,size=8M -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0")
NUMA = ("-machine q35 -m 128M -smp 2 -cpu host "
        "-object memory-backend-ram,size=64M,id=r0 -numa node,nodeid=0,cpus=0,memdev=r0 "
        "-object memory-backend-ram,size=64M,id=r1 -numa node,nodeid=1,cpus=1,memdev=r1 "
        "-object memory-backend-epc,id=mem1,size=8M "
        "-M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0")


def machine(args: str, host: str, *extra: str, cls: type[VirtualMachine] = Machine
            ) -> VirtualMachine:
    return cls.from_args([*args.split(), *extra], host=open_host(host, persist=False))


def source(machines: list[VirtualMachine], args: str = SMALL) -> VirtualMachine:
    vm = machine(args, "a")
    machines.append(vm)
    vm.start()
    return vm


def destination(machines: list[VirtualMachine], args: str = SMALL, host: str = "b",
                incoming: str = "defer") -> VirtualMachine:
    vm = machine(args, host, "-incoming", incoming)
    machines.append(vm)
    return vm


def ram_digest(vm: VirtualMachine) -> str:
    digest = hashlib.sha256()
    for base, region in vm.ram.regions():
        digest.update(base.to_bytes(8, "little"))
        digest.update(region)
    return digest.hexdigest()


def same_ram(a: VirtualMachine, b: VirtualMachine) -> bool:
    """Both machines' RAM holds the same bytes at the same addresses (numpy, 64 MiB at a
    time: faster than hashing gigabytes)."""
    step = 64 * MiB // 8
    for (base_a, ra), (base_b, rb) in zip(a.ram.regions(), b.ram.regions(), strict=True):
        wa, wb = np.frombuffer(ra, dtype=np.uint64), np.frombuffer(rb, dtype=np.uint64)
        if base_a != base_b or len(wa) != len(wb) or not all(
                np.array_equal(wa[i:i + step], wb[i:i + step]) for i in range(0, len(wa), step)):
            return False
    return True


def msrs(vm: VirtualMachine) -> list[tuple[int, list[int]]]:
    return [(m.feature_control, list(m.lepubkeyhash)) for m in vm.vcpu_msrs]


def stream_bytes(sections: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    writer = StreamWriter(out)
    for name, payload in sections:
        writer.section(name, payload)
    writer.finish()
    return out.getvalue()


# -- the codec ----------------------------------------------------------------------------

_SECTIONS = st.dictionaries(st.text(min_size=1, max_size=20).filter(
    lambda n: len(n.encode()) <= 255), st.binary(max_size=300), max_size=6)


@given(_SECTIONS, st.integers(1, 64))
def test_codec_round_trip(sections: dict[str, bytes], chunk: int) -> None:
    out = io.BytesIO()
    writer = StreamWriter(out)
    for name, payload in sections.items():
        pieces = [payload[i:i + chunk] for i in range(0, len(payload), chunk)]
        writer.section(name, pieces, length=len(payload))
    writer.finish()
    assert {k: bytes(v) for k, v in read_stream(out.getvalue()).items()} == sections


SAMPLE = stream_bytes([("config", b'{"a":1}'), ("cpu", b"[]"), ("ram", bytes(range(90)))])


def test_every_truncation_is_refused() -> None:
    for end in range(len(SAMPLE)):
        with pytest.raises(MigrationStreamError):
            read_stream(SAMPLE[:end])
    with pytest.raises(MigrationStreamError, match="Input/output error"):
        read_stream(SAMPLE[:-1])
    with pytest.raises(MigrationStreamError, match="after the end"):
        read_stream(SAMPLE + b"\0")


def test_every_flipped_byte_is_refused() -> None:
    for pos in range(len(SAMPLE)):
        for mask in (0x01, 0x80):
            damaged = bytearray(SAMPLE)
            damaged[pos] ^= mask
            with pytest.raises(MigrationStreamError):
                read_stream(bytes(damaged))
    with pytest.raises(MigrationStreamError, match="Not a migration stream"):
        read_stream(b"QEVM" + SAMPLE[4:])


def test_uri_wording() -> None:
    assert file_uri_path("file:/tmp/x", incoming=False) == "/tmp/x"
    with pytest.raises(MigrationStreamError,
                       match=r"^Parameter 'uri' expects a valid migration protocol$"):
        file_uri_path("bogus", incoming=False)
    with pytest.raises(MigrationStreamError, match=r"^unknown migration protocol: bogus:x$"):
        file_uri_path("bogus:x", incoming=True)
    with pytest.raises(MigrationStreamError, match="not 'tcp:' URIs"):
        file_uri_path("tcp:localhost:4444", incoming=False)


# -- machines -----------------------------------------------------------------------------


def test_migrate_to_another_host_keeps_ram_and_vcpus_and_loses_the_epc(
        machines: list[VirtualMachine]) -> None:
    # q35 with 3 GiB: RAM below 4 GiB (2 GiB) and above it (1 GiB)
    args = SMALL.replace("-m 128M", "-m 3G")
    src = source(machines, args)
    src.ram.write(0x5000, b"below 4G" * 1000)
    src.ram.write(0x1_0000_0000 + 7 * PAGE_SIZE, b"above 4G")
    src.ram.write(0x7FFF_F000, b"\xff" * PAGE_SIZE)  # last page below 4G
    src.vcpu_msrs[1].lepubkeyhash = [1, 2, 3, 1 << 63]
    ecreate(src, src.layout.epc_base)
    assert src.processor is not None and src.processor.epcm.valid(0)
    dst = destination(machines, args)
    dst.start()
    assert dst.query_status() == {"status": "inmigrate", "singlestep": False, "running": False}
    assert dst.host.secrets != src.host.secrets

    src.migrate(dst)

    assert same_ram(dst, src)
    assert msrs(dst) == msrs(src) and dst.vcpu_msrs[1].lepubkeyhash[3] == 1 << 63
    assert dst.processor is not None and not dst.processor.epcm.valid(0)
    assert all(u["committed"] == 0 for u in dst.epc_usage())
    assert src.query_status()["status"] == "postmigrate"
    assert dst.query_status() == {"status": "running", "singlestep": False, "running": True}
    info = src.query_migrate()
    assert info["status"] == "completed"
    ram = info["ram"]
    # 0x5000+8000 bytes: 2 pages; the page above 4 GiB; the last page below 4 GiB; the
    # ECREATE operands at 0x0 and 0x1000 (pages 0 and 1)
    assert ram["normal"] == 6 and ram["total"] == 3 << 30
    assert ram["duplicate"] == (3 << 30) // PAGE_SIZE - 6
    assert ram["normal-bytes"] == 6 * PAGE_SIZE < ram["transferred"] < 7 * PAGE_SIZE
    assert dst.query_migrate() == {"status": "completed"}
    assert isinstance(dst, Machine) and dst.guest.dmesg  # the destination's guest booted
    src.cont()  # a source in postmigrate can run again, as in QEMU
    assert src.query_status()["running"]


def test_incoming_file_at_start_and_events(machines: list[VirtualMachine],
                                           tmp_path: Path) -> None:
    src = source(machines)
    src.ram.write(0x20000, b"snapshot")
    events: list[tuple[str, dict[str, Any]]] = []
    src.subscribe(lambda name, data: events.append((name, data)))
    src.set_migration_events(True)
    src.migrate_to_uri(f"file:{tmp_path / 'vm.mig'}")
    assert events == [("MIGRATION", {"status": "setup"}), ("MIGRATION", {"status": "active"}),
                      ("STOP", {}), ("MIGRATION", {"status": "completed"})]
    dst = destination(machines, incoming=f"file:{tmp_path / 'vm.mig'}")
    dst.start()  # -incoming file:PATH loads at start
    assert dst.ram.read(0x20000, 8) == b"snapshot" and dst.state is RunState.RUNNING
    again = destination(machines, host="a")
    seen: list[tuple[str, dict[str, Any]]] = []
    again.subscribe(lambda name, data: seen.append((name, data)))
    again.set_migration_events(True)
    again.start()
    again.migrate_incoming(f"file:{tmp_path / 'vm.mig'}")  # same host: also fine
    assert seen == [("MIGRATION", {"status": "setup"}), ("MIGRATION", {"status": "active"}),
                    ("RESUME", {}), ("MIGRATION", {"status": "completed"})]
    with pytest.raises(MachineError, match=r"^The incoming migration has already been started"):
        again.migrate_incoming(f"file:{tmp_path / 'vm.mig'}")
    with pytest.raises(MachineError, match=r"^'-incoming' was not specified"):
        src.migrate_incoming(f"file:{tmp_path / 'vm.mig'}")
    waiting = destination(machines)
    waiting.start()
    with pytest.raises(MachineError, match=r"^Guest is waiting for an incoming migration$"):
        waiting.migrate_to_uri(f"file:{tmp_path / 'other.mig'}")


def test_bad_uris(machines: list[VirtualMachine], tmp_path: Path) -> None:
    src = source(machines)
    with pytest.raises(MachineError, match=r"^Parameter 'uri' expects a valid migration"):
        src.migrate_to_uri("bogus")
    assert src.query_migrate() == {"status": "failed"}
    assert src.state is RunState.RUNNING
    with pytest.raises(MachineError, match=r"^Could not open .*No such file or directory"):
        src.migrate_to_uri(f"file:{tmp_path / 'missing' / 'x.mig'}")
    assert src.state is RunState.RUNNING
    dst = destination(machines, incoming="bogus:x")
    with pytest.raises(MachineError, match=r"^unknown migration protocol: bogus:x$"):
        dst.start()
    assert dst.state is RunState.INMIGRATE


@pytest.mark.parametrize(("args", "named"), [
    (SMALL.replace("size=8M", "size=16M"), "sgx-epc"),
    (SMALL.replace("+sgxlc", "-sgxlc"), "cpuid"),
    (SMALL.replace("host,+sgxlc", "host,+sgxlc,-sgx-provisionkey"), "cpuid"),
    (SMALL.replace("-smp 2", "-smp 1"), "smp"),
    (NUMA, "numa"),
])
def test_mismatched_destinations_are_refused(machines: list[VirtualMachine], tmp_path: Path,
                                             args: str, named: str) -> None:
    src = source(machines)
    dst = destination(machines, args)
    dst.start()
    with pytest.raises(MachineError, match=rf"^load of migration failed: Invalid argument "
                                           rf"\(the destination's configuration differs.*"
                                           rf"{named}: source .*, destination "):
        src.migrate(dst)
    assert src.state is RunState.RUNNING  # refused before the source stopped
    src.migrate_to_file(tmp_path / "vm.mig")  # and through a file, refused at load
    with pytest.raises(MachineError, match=rf"differs.*{named}: source"):
        dst.migrate_incoming(f"file:{tmp_path / 'vm.mig'}")
    assert dst.state is RunState.INMIGRATE and dst.query_migrate()["status"] == "failed"


def test_damaged_streams_load_nothing(machines: list[VirtualMachine], tmp_path: Path) -> None:
    src = source(machines)
    src.ram.write(0x3000, b"source data")
    src.vcpu_msrs[0].lepubkeyhash = [9, 9, 9, 9]
    good = tmp_path / "vm.mig"
    src.migrate_to_file(good)
    data = good.read_bytes()
    dst = destination(machines)
    dst.start()
    dst.ram.write(0x3000, b"destination")  # what must survive a refused load
    before_ram, before_msrs = ram_digest(dst), msrs(dst)
    bad = tmp_path / "bad.mig"
    cuts = [0, 1, 8, 12, 40, len(data) // 2, len(data) - 33, len(data) - 1]
    flips = [0, 9, 20, 60, len(data) // 2, len(data) - 40, len(data) - 1]
    damaged = [data[:n] for n in cuts] + [
        data[:n] + bytes([data[n] ^ 0x10]) + data[n + 1:] for n in flips]
    for stream in damaged:
        bad.write_bytes(stream)
        with pytest.raises(MachineError, match="migration"):
            dst.migrate_incoming(f"file:{bad}")
        assert dst.state is RunState.INMIGRATE
        assert dst.query_migrate()["status"] == "failed"
        assert "error-desc" in dst.query_migrate()
    assert ram_digest(dst) == before_ram and msrs(dst) == before_msrs
    assert isinstance(dst, Machine) and dst._guest is None  # not even booted
    dst.migrate_incoming(f"file:{good}")  # the good stream still loads afterwards
    assert dst.ram.read(0x3000, 11) == b"source data" and dst.vcpu_msrs[0].lepubkeyhash == [9] * 4


def test_the_bare_platform_migrates_too(machines: list[VirtualMachine]) -> None:
    src = machine(SMALL, "a", cls=VirtualMachine)
    dst = machine(SMALL, "b", "-incoming", "defer", cls=VirtualMachine)
    machines += [src, dst]
    src.start()
    dst.start()
    src.pause()
    src.ram.write(0x9000, b"x")
    src.migrate(dst)
    assert dst.ram.read(0x9000, 1) == b"x"
    with pytest.raises(MachineError, match="already been started"):
        src.migrate(dst)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (128 * MiB - 64) // 8), st.binary(min_size=1,
                                                                          max_size=64)),
                max_size=8))
def test_random_ram_round_trips(writes: list[tuple[int, bytes]]) -> None:
    src = machine(SMALL, "a", cls=VirtualMachine)
    dst = machine(SMALL, "b", "-incoming", "defer", cls=VirtualMachine)
    try:
        src.start()
        dst.start()
        for word, data in writes:
            src.ram.write(word * 8, data)
        src.migrate(dst)
        assert same_ram(dst, src)
    finally:
        src.close()
        dst.close()
