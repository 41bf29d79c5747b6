"""An enclave twice the size of the EPC, executed: each page it touches was evicted, so each
access is a #PF in enclave mode -> AEX -> the guest kernel's fault handler (ELDU, after the
reclaimer EWBs other pages to make room) -> ERESUME.

A 4 MiB enclave with 512 data pages is built on a VM with 1 MiB of EPC (256 pages); one ECALL
reads one quadword from each data page in turn (hand-assembled, the same code as the
end-to-end test). Reported: the time per page of that ECALL (one fault, one ELDU, and on
average one EWB of another page each), against the raw cost of the cryptography underneath:
``cryptography``'s AES-GCM encrypt + decrypt of one 4 KiB page. The ratio raw / emulated says
what share of a fault's cost is the irreducible crypto. Best of 3.

Run: ``python benchmarks/bench_enclave_paging.py``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from sgx_user import machine
from test_vdso_enclave import EENTER, Run, oversized_enclave

from vsgx.arch import PAGE_SIZE

PAGES = 512
REPEATS = 3
ARGS = ["-machine", "q35", "-m", "1G", "-cpu", "host", "-object",
        "memory-backend-epc,id=e0,size=1M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]


def enclave_pass() -> float:
    """Seconds per page for one ECALL over all data pages (all of them start evicted)."""
    with machine(ARGS) as vm:
        user, b = oversized_enclave(vm, 1)
        run = Run(user, b.base)
        user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr)  # warm the code
        t0 = time.perf_counter()
        user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr)
        return (time.perf_counter() - t0) / PAGES


def crypto_per_page() -> float:
    aes = AESGCM(os.urandom(16))
    page, aad = os.urandom(PAGE_SIZE), os.urandom(128)
    t0 = time.perf_counter()
    for i in range(PAGES):
        nonce = i.to_bytes(12, "little")
        aes.decrypt(nonce, aes.encrypt(nonce, page, aad), aad)
    return (time.perf_counter() - t0) / PAGES


def main() -> None:
    emulated = min(enclave_pass() for _ in range(REPEATS))
    raw = min(crypto_per_page() for _ in range(REPEATS))
    print(f"enclave page fault served by ELDU (+ EWB to make room): {emulated * 1e6:8.1f} us/page")
    print(f"AES-GCM encrypt + decrypt of one page (raw):            {raw * 1e6:8.1f} us/page")
    print(f"ratio raw / emulated:                                   {raw / emulated:8.3f}")


if __name__ == "__main__":
    main()
