"""Several threads inside one enclave

The enclave has four TCSs (``tcs_count = 4``), so four host threads can be inside it at once,
each on its own TCS, stack and SSA frames, and on its own vCPU while it runs. Eight Python
threads hash buffers in the enclave at the same time; each TCS keeps its own partial results,
which a final ecall adds up. Then eight callers that each stay inside for a while show that
at most four are ever inside: the others wait in the untrusted runtime until a TCS is free.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.guest import Process
from vsgx.sdk import Enclave, OcallContext
from vsgx.sdk.sample import check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
CALLERS = 8
BUFFER_SIZE = 24 << 10
HOLD_MS = 200
U64 = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & U64
    return h


def buffer(i: int) -> bytes:
    """Caller ``i``'s BUFFER_SIZE bytes of data (deterministic)."""
    return b"".join(hashlib.sha256(f"{i}:{k}".encode()).digest()
                    for k in range(BUFFER_SIZE // 32))


def concurrently(fn: Callable[[int], Any], n: int) -> list[Any]:
    """``fn(0)``, …, ``fn(n - 1)`` on n threads started together; their results, or the first
    exception raised."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def worker(i: int) -> None:
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Occupancy:
    """The "sleep" ocall: holds the calling thread (and its TCS) for ``ms`` milliseconds and
    records how many threads are inside the enclave at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def __call__(self, ctx: OcallContext, ms: int, *_: int) -> int:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(ms / 1000)
        with self._lock:
            self.inside -= 1
        return 0


def run(proc: Process, key: RSAPrivateKey) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    occupancy = Occupancy()
    with Enclave.load(proc, ENCLAVE, key=key, ocalls={"sleep": occupancy}) as enclave:
        tcs_count = enclave.image.config.tcs_count
        check(tcs_count == 4, f"the enclave has {tcs_count} TCSs, not 4")
        rows.append(("TCSs", f"{tcs_count} (each with its own stack and SSA frames)"))

        data = [buffer(i) for i in range(CALLERS)]
        digests = concurrently(lambda i: enclave.ecall("digest", data[i], len(data[i])),
                               CALLERS)
        expected = [fnv1a(d) for d in data]
        check(digests == expected, "a digest computed in the enclave is wrong")
        rows.append((f"{CALLERS} threads hash {BUFFER_SIZE >> 10} KiB each",
                     "every FNV-1a-64 digest matches Python's"))

        total = enclave.ecall("total", 0)
        check(total == sum(expected) & U64, "the per-TCS partial sums do not add up")
        check(enclave.ecall("total", 1) == CALLERS * BUFFER_SIZE, "bytes hashed")
        per_tcs = [enclave.ecall("total", 3 + k) for k in range(tcs_count)]
        check(sum(per_tcs) == CALLERS, f"ecalls per TCS {per_tcs}")
        rows.append(("combined result", f"sum of digests {total:#018x}, {CALLERS} ecalls "
                     f"served by TCS 0-3 as {per_tcs}"))

        started = time.monotonic()
        indexes = concurrently(lambda i: enclave.ecall("occupy", HOLD_MS), CALLERS)
        elapsed = time.monotonic() - started
        check(sorted(set(indexes)) == list(range(tcs_count)), f"TCS indexes {indexes}")
        check(occupancy.most == tcs_count,
              f"{occupancy.most} threads were inside at once, expected {tcs_count}")
        waves = -(-CALLERS // tcs_count)
        check(elapsed >= waves * HOLD_MS / 1000, f"{CALLERS} callers took only {elapsed:.2f} s")
        rows.append((f"{CALLERS} callers, {HOLD_MS} ms inside each",
                     f"at most {occupancy.most} inside at once; the rest waited for a free "
                     f"TCS ({elapsed:.2f} s, >= {waves} x {HOLD_MS} ms)"))
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
