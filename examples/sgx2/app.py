"""SGX2: enclave memory added at run time

The enclave's configuration leaves 1 MiB of its ELRANGE empty (``dynamic_size``). When the
enclave first touches a page there, the guest kernel adds a pending page with EAUG; the
enclave takes it with EACCEPT, after which it is ordinary, zero-filled enclave memory. EMODPE
then extends one page's EPCM permissions to execute (after the untrusted side has made the
mapping executable), and the enclave runs code it wrote there.

Memory goes back the same way, asked for by the untrusted side and accepted by the enclave:
SGX_IOC_ENCLAVE_MODIFY_TYPES makes pages TRIM (EMODT), the enclave EACCEPTs them, and only
then does SGX_IOC_ENCLAVE_REMOVE_PAGES EREMOVE them; touching them again gets fresh EAUG
pages. SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS (EMODPR) makes a page read-only; once the enclave
has EACCEPTed that, a write to it is an EPCM fault even though the mapping is writable.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.arch import PAGE_SIZE, Pfec, Vector
from vsgx.guest import Process
from vsgx.guest.uapi import SGX_PAGE_TYPE_TRIM, SGX_SECINFO_R, Errno
from vsgx.sdk import Enclave, EnclaveFault, OcallContext
from vsgx.sdk.sample import check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
PAGES = 16
SEED = 0x5EED
CODE_VALUE = 0x0C0FFEE
SGX_PAGE_ATTRIBUTES_MISMATCH = 19
TRIM_PAGES = 4
"""Pages of the range given back (the first ones)."""
READ_ONLY_PAGE = TRIM_PAGES
"""The page whose permissions are restricted to read-only."""


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

        rows += trim_and_remove(enclave, start)
        rows += restrict_to_read_only(enclave, start)
    return rows


def trim_and_remove(enclave: Enclave, start: int) -> list[tuple[str, str]]:
    """Give the first TRIM_PAGES pages of the range back: MODIFY_TYPES to TRIM, EACCEPT inside,
    REMOVE_PAGES; then touch them again."""
    rows: list[tuple[str, str]] = []
    offset, length = start - enclave.base, TRIM_PAGES * PAGE_SIZE
    before = enclave.ecall("nonzero_range", 0, TRIM_PAGES)
    check(before > 0, "the pages to trim do not hold the pattern")
    done = enclave.modify_types(offset, length, SGX_PAGE_TYPE_TRIM)
    check(done == length, f"MODIFY_TYPES did {done} of {length} bytes")
    rows.append(("MODIFY_TYPES to TRIM", f"{TRIM_PAGES} pages: EMODT + ETRACK"))

    try:
        enclave.remove_pages(offset, length)
    except OSError as exc:
        early = exc.errno
    else:
        early = 0
    check(early == Errno.EPERM, f"REMOVE_PAGES of unaccepted pages gave errno {early}")
    rows.append(("REMOVE_PAGES before EACCEPT", "EPERM: the enclave has not accepted the trim"))

    accepted = enclave.ecall("accept_trim", 0, TRIM_PAGES)
    check(accepted == TRIM_PAGES, f"only {accepted} of {TRIM_PAGES} trims were accepted")
    rows.append(("EACCEPT TRIM | MODIFIED", f"{accepted} pages, inside the enclave"))

    removed = enclave.remove_pages(offset, length)
    check(removed == length, f"REMOVE_PAGES did {removed} of {length} bytes")
    rows.append(("REMOVE_PAGES", f"{TRIM_PAGES} pages EREMOVEd, their EPC freed"))

    again = enclave.ecall("accept", 0, TRIM_PAGES)
    check(again == TRIM_PAGES, f"only {again} of the removed pages came back")
    nonzero = enclave.ecall("nonzero_range", 0, TRIM_PAGES)
    check(nonzero == 0, f"{nonzero} bytes of the re-added pages are not zero")
    kept = enclave.ecall("nonzero_range", TRIM_PAGES, PAGES - TRIM_PAGES)
    check(kept > 0, "the pages that were not trimmed lost their pattern")
    rows.append(("touch the removed pages", f"EAUG again + EACCEPT: all zero (had {before} "
                 f"non-zero bytes); the other {PAGES - TRIM_PAGES} still hold the "
                 "pattern"))
    return rows


def restrict_to_read_only(enclave: Enclave, start: int) -> list[tuple[str, str]]:
    """RESTRICT_PERMISSIONS of a RW page to R, EACCEPT with R | PR inside, then a write."""
    rows: list[tuple[str, str]] = []
    page = start + READ_ONLY_PAGE * PAGE_SIZE
    done = enclave.restrict_permissions(page - enclave.base, PAGE_SIZE, SGX_SECINFO_R)
    check(done == PAGE_SIZE, f"RESTRICT_PERMISSIONS did {done} of {PAGE_SIZE} bytes")
    rows.append(("RESTRICT_PERMISSIONS RW -> R", f"page {READ_ONLY_PAGE}: EMODPR + ETRACK"))

    status = enclave.ecall("accept_restricted", READ_ONLY_PAGE, SGX_SECINFO_R)
    check(status == 0, f"EACCEPT of the restriction returned {status}")
    readable = enclave.ecall("nonzero_range", READ_ONLY_PAGE, 1)
    check(readable > 0, "the restricted page lost its contents")
    rows.append(("EACCEPT R | PR", "accepted; the page still reads, its data intact"))

    try:
        enclave.ecall("store", READ_ONLY_PAGE, 1)
    except EnclaveFault as exc:
        fault: EnclaveFault | None = exc
    else:
        fault = None
    check(fault is not None, "a write to the read-only page succeeded")
    assert fault is not None
    check(fault.vector == Vector.PF and fault.address == page
          and fault.error_code & (Pfec.SGX | Pfec.W) == Pfec.SGX | Pfec.W,
          f"the write raised {fault}, not an EPCM #PF on {page:#x}")
    check(enclave.ecall("store", READ_ONLY_PAGE + 1, 7) == 7,
          "the enclave is unusable after the fault")
    rows.append(("write to the read-only page", f"#PF, error code {fault.error_code:#x} "
                 "(W, SGX): EnclaveFault; the enclave carries on"))
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
