"""Migration of a VM's state, against raw file I/O of the same bytes.

A q35 machine with 4 GiB of RAM, 256 MiB of it written with non-zero data (the rest never
touched), 64 MiB of EPC. Timed, best of 3, each against its baseline in the same round:

1. **Outgoing**: ``vm.migrate_to_file(path)`` (scan RAM for non-zero pages, stream them with
   the vCPU state and the configuration, SHA-256 over the stream) against writing the same
   256 MiB to a file with one ``write`` and ``fsync``-free close. Reported as raw / migrate.
2. **Incoming**: a destination on another host started with ``-incoming file:PATH`` (check
   the whole stream, boot the platform, load the pages) against reading the 256 MiB back.
   Reported as raw / restore.

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

from vsgx.platform.host import open_host
from vsgx.platform.machine import VirtualMachine

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
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
