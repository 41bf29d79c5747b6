"""Migration of a VM's state, against raw file I/O of the same bytes.

A q35 machine with 4 GiB of RAM, 256 MiB of it written with non-zero data (the rest never
touched), 64 MiB of EPC. Timed, best of 3, each against its baseline in the same round:

1. **Outgoing**: ``vm.migrate_to_file(path)`` (scan RAM for non-zero pages, stream them with
   the vCPU state and the configuration, SHA-256 over the stream) against writing the same
   256 MiB to a file with one ``write`` and ``fsync``-free close. Reported as raw / migrate.
2. **Incoming**: a destination on another host started with ``-incoming file:PATH`` (check
   the whole stream, boot the platform, load the pages) against reading the 256 MiB back.
   Reported as raw / restore.
3. **Recovering a 64 MiB enclave** after the VM with its process migrated to another host:
   ``enclave.migrated(...)`` and the first ecall, which finds the EPC gone, closes the lost
   enclave and rebuilds it through the ioctls (same MRENCLAVE); against writing and reading
   back 64 MiB raw. Needs gcc (the SDK test enclave is built with a 64 MiB heap).

Run: ``python benchmarks/bench_migration.py``
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

import vsgx
from vsgx.platform.host import open_host
from vsgx.platform.machine import VirtualMachine
from vsgx.sdk import Enclave, EnclaveConfig, EnclaveLost, build

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sgx_user import signing_key  # noqa: E402

ROUNDS = 3
TOUCHED = 256 << 20
MACHINE = ["-machine", "q35", "-m", "4G", "-cpu", "host", "-object",
           "memory-backend-epc,id=e0,size=64M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one_round(round_: int, payload: bytes, stream: Path, raw: Path
              ) -> tuple[tuple[float, float], tuple[float, float], int]:
    """(migrate, raw write), (restore, raw read) and the stream's size, for one round."""
    src = VirtualMachine.from_args(MACHINE, host=open_host(f"bench-a{round_}", persist=False))
    src.start()
    _, memory = src.ram.regions()[0]
    memory[16 << 20:(16 << 20) + TOUCHED] = payload  # above the legacy area
    outgoing = (timed(lambda: src.migrate_to_file(stream)),
                timed(lambda: raw.write_bytes(payload)))
    src.close()

    def restore() -> None:
        dest = VirtualMachine.from_args([*MACHINE, "-incoming", f"file:{stream}"],
                                        host=open_host(f"bench-b{round_}", persist=False))
        dest.start()
        dest.close()

    incoming = (timed(restore), timed(raw.read_bytes))
    size = stream.stat().st_size
    os.unlink(stream)
    return outgoing, incoming, size


ENCLAVE_MACHINE = ["-machine", "q35", "-m", "1G", "-cpu", "host", "-object",
                   "memory-backend-epc,id=e0,size=128M", "-M",
                   "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]


def enclave_recovery(round_: int, elf: Path, raw: Path) -> tuple[float, float]:
    """(recovery of the 64 MiB enclave after a migration, raw write + read of 64 MiB)."""
    hosts = [open_host(f"bench-ea{round_}", persist=False),
             open_host(f"bench-eb{round_}", persist=False)]
    src = vsgx.Machine.from_args(ENCLAVE_MACHINE, host=hosts[0])
    dst = vsgx.Machine.from_args([*ENCLAVE_MACHINE, "-incoming", "defer"], host=hosts[1])
    src.start()
    dst.start()
    proc = src.guest.spawn()
    enclave = Enclave.load(proc, elf, key=signing_key())
    src.migrate(dst)
    start = time.perf_counter()
    enclave.migrated(dst.guest.process(proc.pid))
    try:
        enclave.ecall("add", 1, 2)
    except EnclaveLost:
        pass
    recovery = time.perf_counter() - start
    size = enclave.image.layout.page_count * 4096
    assert enclave.ecall("add", 1, 2) == 3
    enclave.close()
    src.close()
    dst.close()
    data = os.urandom(size)
    raw_t = timed(lambda: (raw.write_bytes(data), raw.read_bytes()))
    return recovery, raw_t


def main() -> None:
    payload = (bytes(range(1, 256)) * (TOUCHED // 255 + 1))[:TOUCHED]
    out_times: list[tuple[float, float]] = []
    in_times: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(ROUNDS):
            outgoing, incoming, size = one_round(round_, payload, Path(tmp) / "vm.mig",
                                                 Path(tmp) / "raw.bin")
            out_times.append(outgoing)
            in_times.append(incoming)
        sources = ROOT / "tests" / "sdk" / "enclaves"
        config = EnclaveConfig.from_toml((sources / "basic.toml").read_text())
        elf = build([sources / "basic.c"], Path(tmp) / "big.elf",
                    config.with_changes(heap_size="64M"))
        recovery = min(enclave_recovery(r, elf, Path(tmp) / "raw64.bin")
                       for r in range(ROUNDS))
    best_out = min(out_times)
    best_in = min(in_times)
    table = Table(title=f"migration of a 4 GiB VM with {TOUCHED >> 20} MiB touched "
                        f"(stream {size >> 20} MiB, best of {ROUNDS})")
    for column in ("direction", "vsgx", "raw file I/O of the same bytes", "raw / vsgx"):
        table.add_column(column)
    table.add_row("outgoing: migrate to file:", f"{best_out[0]:.2f} s", f"{best_out[1]:.2f} s",
                  f"{best_out[1] / best_out[0]:.2f}")
    table.add_row("incoming: -incoming file:", f"{best_in[0]:.2f} s", f"{best_in[1]:.2f} s",
                  f"{best_in[1] / best_in[0]:.2f}")
    table.add_row("recover a 64 MiB enclave after the move", f"{recovery[0]:.2f} s",
                  f"{recovery[1]:.2f} s (write + read)", f"{recovery[1] / recovery[0]:.3f}")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
