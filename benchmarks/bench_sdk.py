"""The SDK end to end, against baselines measured in the same run.

1. **Loading a 64 MiB enclave**: ``Enclave.load`` of the SDK test enclave with a 64 MiB heap
   (create, 16 K pages added and measured through the ioctls, EINIT, mmap) on a machine with
   128 MiB of EPC; against computing the same MRENCLAVE in Python (``EnclaveImage.measure``:
   SHA-256 over the same ECREATE/EADD/EEXTEND stream, the unavoidable part of the work).
   Reported as measure time / load time.
2. **Ecall round trip**: ``enclave.ecall("add", 1, 2)`` through the untrusted runtime, the
   vDSO, EENTER, the trusted runtime's dispatch and EEXIT; against the execution issue's
   bare-engine baseline, a bare ``Uc.emu_start`` over ``nop ; nop``. Reported as ecall / bare.
3. **Ocall round trip**: an ecall making one ocall, minus an ecall making none (the ocall's
   own cost: EEXIT, the Python handler, EENTER with the result); against the same baseline.
4. **Sealing throughput**: ``vsgx_seal`` (AES-128-GCM under an EGETKEY key, in the enclave's
   C) of 1 MiB inside the enclave, 8 times per ecall; against ``cryptography``'s AESGCM
   sealing the same bytes in Python. Reported as MB/s each and enclave / cryptography.

Needs gcc (the benchmark builds its enclave). Best of 3 rounds, contenders back to back.
Run: ``python benchmarks/bench_sdk.py``
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import unicorn
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sgx_user import machine, signing_key  # noqa: E402

from vsgx.sdk import Enclave, EnclaveConfig, EnclaveImage, build  # noqa: E402

ROUNDS = 3
ECALLS = 2000
SEAL_BYTES = 1 << 20
SEAL_ROUNDS = 8
MACHINE = ["-machine", "q35", "-m", "1G", "-smp", "2", "-cpu", "host", "-object",
           "memory-backend-epc,id=e0,size=128M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]


def best(fn: Callable[[], object], repeat: int = 1) -> float:
    """Best seconds per call over ROUNDS rounds of ``repeat`` calls."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat)
    return min(times)


def bare_nop() -> Callable[[], object]:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, b"\x90\x90")
    uc.emu_start(0x1000, 0x1002)
    return lambda: uc.emu_start(0x1000, 0x1002)


def main() -> None:
    sources = ROOT / "tests" / "sdk" / "enclaves"
    config = EnclaveConfig.from_toml((sources / "basic.toml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        elf = build([sources / "basic.c"], Path(tmp) / "basic.elf",
                    config.with_changes(heap_size="4M"))
        big = Path(tmp) / "big.elf"
        build([sources / "basic.c"], big, config.with_changes(heap_size="64M"))
        rows = run(elf, big)
    table = Table(title="vsgx SDK benchmarks (best of 3)")
    for column in ("benchmark", "vsgx", "baseline", "ratio"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def run(elf: Path, big: Path) -> list[tuple[str, str, str, str]]:
    key = signing_key()
    rows = []
    with machine(MACHINE) as vm:
        proc = vm.guest.spawn()
        image = EnclaveImage.load(big)
        sig = image.sign(key)

        def load_big() -> None:
            Enclave.load(proc, big, sigstruct=sig).close()

        load_t = best(load_big)
        measure_t = best(image.measure)
        pages = image.layout.page_count
        rows.append((f"load a {image.layout.size >> 20} MiB enclave ({pages} pages)",
                     f"{load_t:.2f} s", f"measure only {measure_t:.2f} s",
                     f"{measure_t / load_t:.2f}"))

        enclave = Enclave.load(proc, elf, key=key, ocalls={"ping": lambda ctx, x, *_: x})
        bare = bare_nop()
        for _ in range(50):
            enclave.ecall("add", 1, 2)
            enclave.ecall("ping_out", 1)
        bare_t = best(bare, ECALLS)
        ecall_t = best(lambda: enclave.ecall("add", 1, 2), ECALLS)
        ocall_t = best(lambda: enclave.ecall("ping_out", 1), ECALLS)
        rows.append(("ecall round trip", f"{ecall_t * 1e6:.0f} µs",
                     f"bare emu_start {bare_t * 1e6:.1f} µs", f"{ecall_t / bare_t:.1f}x"))
        own = ocall_t - ecall_t
        rows.append(("ocall round trip (ecall with one ocall - plain ecall)",
                     f"{own * 1e6:.0f} µs", f"bare emu_start {bare_t * 1e6:.1f} µs",
                     f"{own / bare_t:.1f}x"))

        seal_t = best(lambda: enclave.ecall("seal_heap", SEAL_BYTES, SEAL_ROUNDS))
        aes = AESGCM(os.urandom(16))
        text = b"\x5a" * SEAL_BYTES

        def python_seal() -> None:
            for _ in range(SEAL_ROUNDS):
                aes.encrypt(bytes(12), text, None)

        py_t = best(python_seal)
        volume = SEAL_BYTES * SEAL_ROUNDS / 1e6
        rows.append(("sealing throughput, AES-128-GCM",
                     f"{volume / seal_t:.1f} MB/s in the enclave",
                     f"cryptography {volume / py_t:.0f} MB/s", f"{py_t / seal_t:.4f}"))
        enclave.close()
    return rows


if __name__ == "__main__":
    main()
