"""SGX2: enclave memory added at run time

The enclave's configuration leaves 1 MiB of its ELRANGE empty (``dynamic_size``). When the
enclave first touches a page there, the guest kernel adds a pending page with EAUG; the
enclave takes it with EACCEPT, after which it is ordinary, zero-filled enclave memory. EMODPE
then extends one page's EPCM permissions to execute (after the untrusted side has made the
mapping executable), and the enclave runs code it wrote there.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.arch import PAGE_SIZE
from vsgx.guest import Process
from vsgx.sdk import Enclave, OcallContext
from vsgx.sdk.sample import check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
PAGES = 16
SEED = 0x5EED
CODE_VALUE = 0x0C0FFEE
SGX_PAGE_ATTRIBUTES_MISMATCH = 19


def mprotect(ctx: OcallContext, addr: int, size: int, prot: int, *_: int) -> int:
    """The "mprotect" ocall: change the protection of enclave pages in the process."""
    base = ctx.enclave.base
    if not base <= addr <= addr + size <= base + ctx.enclave.image.layout.size:
        return 1  # only the enclave's own pages
    ctx.enclave.process.mprotect(addr, size, prot)
    return 0


def run(proc: Process, key: RSAPrivateKey) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with Enclave.load(proc, ENCLAVE, key=key, ocalls={"mprotect": mprotect}) as enclave:
        start = enclave.ecall("dynamic_range", 0)
        size = enclave.ecall("dynamic_range", 1)
        offset, expected_size = enclave.image.layout.dynamic
        check((start, size) == (enclave.base + offset, expected_size),
              "the dynamic range is not where the layout put it")
        rows.append(("dynamic range", f"base + {offset:#x}, {size >> 10} KiB, no pages yet"))

        accepted = enclave.ecall("accept", 0, PAGES)
        check(accepted == PAGES, f"only {accepted} of {PAGES} pages were accepted")
        rows.append((f"EAUG + EACCEPT of {PAGES} pages", "all accepted (REG, RW, PENDING)"))

        status = enclave.ecall("accept_status", 0)
        check(status == SGX_PAGE_ATTRIBUTES_MISMATCH, f"second EACCEPT returned {status}")
        rows.append(("EACCEPT again", "SGX_PAGE_ATTRIBUTES_MISMATCH: no longer pending"))

        nonzero = enclave.ecall("nonzero", PAGES)
        check(nonzero == 0, f"{nonzero} bytes of the new pages are not zero")
        rows.append(("new pages", f"{PAGES * PAGE_SIZE >> 10} KiB, all zero"))

        written = enclave.ecall("fill", PAGES, SEED)
        read = enclave.ecall("checksum", PAGES)
        check(written == read, f"wrote {written:#x}, read back {read:#x}")
        rows.append(("write a pattern, read it back", f"FNV-1a-64 {read:#018x} both ways"))

        check(enclave.ecall("accept", PAGES, 1) == 1, "accepting the code page failed")
        result = enclave.ecall("make_code", PAGES, CODE_VALUE)
        check(result == CODE_VALUE, f"the generated code returned {result:#x}")
        rows.append(("EMODPE +X on a new page", f"code written at run time returned "
                     f"{result:#x}"))
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
