"""Hello, enclave: an ecall in, an ocall out, and values flowing both ways.

The enclave (``enclave.c``) copies a name from untrusted memory, builds a greeting inside and
hands it out through the ``print`` ocall, whose return value goes back into the enclave and
out again as the ecall's result; a second ecall adds two 64-bit numbers.

Run it on a machine with SGX::

    vsgx run -machine q35 -m 1G -cpu host \\
        -object memory-backend-epc,id=e0,size=32M -M sgx-epc.0.memdev=e0,sgx-epc.0.node=0 \\
        -- examples/hello/app.py
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.guest import Process
from vsgx.sdk import Enclave, OcallContext
from vsgx.sdk.sample import check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
GREETING_ERROR = (1 << 64) - 1
"""What ``greet`` returns when it refuses its input (uint64_t -1)."""


def run(proc: Process, key: RSAPrivateKey) -> list[tuple[str, str]]:
    """Load the hello enclave into ``proc`` (signed with ``key``) and exercise it; one row per
    check: what was checked and how it came out. Raises :class:`CheckFailed` on a mismatch."""
    printed: list[str] = []

    def on_print(ctx: OcallContext, addr: int, size: int, *_unused: int) -> int:
        """The ``print`` ocall: read the text the enclave put in untrusted scratch memory and
        return how many characters were printed."""
        text = ctx.read(addr, size).decode()
        printed.append(text)
        return len(text)

    rows: list[tuple[str, str]] = []
    with Enclave.load(proc, ENCLAVE, key=key, ocalls={"print": on_print}) as enclave:
        rows.append(("enclave loaded", f"MRENCLAVE {enclave.mrenclave.hex()[:16]}…, ecalls "
                                       f"{', '.join(sorted(enclave.ecalls))}"))

        result = enclave.ecall("greet", b"world", 5)
        expected = "Hello, world! (from inside the enclave)"
        check(printed == [expected], f"print ocall got {printed!r}, expected {expected!r}")
        rows.append(("greet: ocall 'print' received", repr(printed[0])))
        check(result == len(expected),
              f"greet returned {result}, expected the ocall's return value {len(expected)}")
        rows.append(("greet: the ocall's return value came back", str(result)))

        refused = enclave.ecall("greet", bytes(100), 100)
        check(refused == GREETING_ERROR and len(printed) == 1,
              f"a 100-byte name gave {refused:#x} and {len(printed) - 1} more prints")
        rows.append(("greet: a 100-byte name is refused", "returned -1, nothing printed"))

        total = enclave.ecall("add", 40, 2)
        check(total == 42, f"add(40, 2) returned {total}")
        rows.append(("add(40, 2)", str(total)))
        wrapped = enclave.ecall("add", (1 << 64) - 1, 2)
        check(wrapped == 1, f"add(2^64 - 1, 2) returned {wrapped}, expected 1")
        rows.append(("add(2^64 - 1, 2) wraps modulo 2^64", str(wrapped)))
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
