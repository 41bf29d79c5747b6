"""Exceptions handled inside an enclave

An exception inside an enclave leaves it with an AEX: the processor saves the context in the
current SSA frame and the untrusted runtime enters the enclave again on the next frame, where
the trusted runtime offers the exception to the handlers the enclave registered. The handler
here fixes a #UD (ud2), a #DE (a division by zero) and a #PF on a guard page inside ELRANGE by
editing the saved context, so ERESUME carries on; what it declines reaches the caller as an
:class:`~vsgx.sdk.EnclaveFault`, and the enclave stays usable.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.arch import PAGE_SIZE, Vector
from vsgx.guest import Process
from vsgx.sdk import Enclave, EnclaveFault
from vsgx.sdk.sample import CheckFailed, check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
U64_MAX = (1 << 64) - 1


def expect_fault(enclave: Enclave, name: str, *args: int) -> EnclaveFault:
    """Call ecall ``name``, which must end in an exception no handler takes."""
    try:
        result = enclave.ecall(name, *args)
    except EnclaveFault as fault:
        return fault
    raise CheckFailed(f"ecall {name} returned {result:#x} instead of faulting")


def run(proc: Process, key: RSAPrivateKey) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with Enclave.load(proc, ENCLAVE, key=key) as enclave:
        check(enclave.ecall("init") == 0, "registering the exception handler failed")
        rows.append(("handler registered", "init ecall returned 0"))

        steps = enclave.ecall("undefined_opcode")
        check(steps == 2, f"ud2 was not skipped (steps {steps})")
        rows.append(("#UD from ud2", "handled: skipped 2 bytes, the ecall went on"))

        check(enclave.ecall("divide", 42, 5) == 8, "42 / 5 is not 8")
        quotient = enclave.ecall("divide", 42, 0)
        check(quotient == U64_MAX, f"42 / 0 gave {quotient:#x}")
        rows.append(("#DE from div by zero", "handled: quotient set to UINT64_MAX, div skipped"))

        guard = enclave.ecall("guard_address")
        check(guard == enclave.base + enclave.image.layout.heap[0] - PAGE_SIZE,
              "the guard page is not where the layout put it")
        value = enclave.ecall("read_guard", 8)
        address = enclave.ecall("last_fault")
        check(value == U64_MAX and address == guard + 8,
              f"probe returned {value:#x}, EXINFO.MADDR {address:#x}")
        rows.append(("#PF on a guard page", f"handled: EXINFO.MADDR = base + "
                     f"{address - enclave.base:#x}, error code "
                     f"{enclave.ecall('last_fault_error_code'):#x}"))

        counts = {v: enclave.ecall("handled_count", int(v)) for v in (Vector.UD, Vector.DE,
                                                                      Vector.PF)}
        check(all(n == 1 for n in counts.values()), f"handled counts {counts}")
        rows.append(("handled inside", ", ".join(f"#{v.name} x{n}" for v, n in counts.items())))

        # Outside the enclave only the page of a #PF is known (an AEX clears CR2's low 12
        # bits); the handler inside saw the exact address in EXINFO.
        fault = expect_fault(enclave, "read_anywhere", guard + 8)
        check((fault.vector, fault.address) == (Vector.PF, guard),
              f"unexpected fault {fault}")
        rows.append(("#PF the handler declines", f"EnclaveFault: #PF on the page at base + "
                     f"{fault.address - enclave.base:#x}, error code {fault.error_code:#x}"))

        fault = expect_fault(enclave, "breakpoint")
        check(fault.vector == Vector.BP, f"unexpected fault {fault}")
        rows.append(("int3 (declined)", "EnclaveFault: #BP"))

        check(enclave.ecall("divide", 1000, 7) == 142, "the enclave is unusable after a fault")
        check(enclave.ecall("handled_count", int(Vector.PF)) == 1, "state was lost")
        rows.append(("after the faults", "the enclave still serves ecalls, state intact"))
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
