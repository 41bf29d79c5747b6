"""Local attestation: one enclave proves its identity to another on the same platform.

The enclave (``enclave.c``) is loaded twice: as the prover with its own configuration and as
the verifier with a larger heap (the same code, a different MRENCLAVE). The verifier issues a
challenge (its TARGETINFO and a nonce); the prover answers with an EREPORT for that target,
REPORTDATA = nonce || payload; the verifier checks the REPORT's MAC with its REPORT key (SDM
Vol. 3D EREPORT, EGETKEY), the nonce, and the prover's MRENCLAVE against the value this
program computes from the ELF. Then the failures: a report with one bit of REPORTDATA
flipped, a report targeted at the prover itself, the wrong expected MRENCLAVE, a replay.

Run it on a machine with SGX::

    vsgx run -machine q35 -m 1G -cpu host \\
        -object memory-backend-epc,id=e0,size=32M -M sgx-epc.0.memdev=e0,sgx-epc.0.node=0 \\
        -- examples/attestation/app.py
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.arch import REPORT, TARGETINFO
from vsgx.guest import Process
from vsgx.sdk import Enclave, EnclaveImage
from vsgx.sdk.sample import check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
PAYLOAD = hashlib.sha256(b"the prover's public key").digest()
"""What the prover binds to its identity: here the hash of a (pretend) public key."""

SUCCESS = 0
ERROR_MAC_MISMATCH = 0x11
"""VSGX_ERROR_MAC_MISMATCH: the REPORT's MAC does not check under the verifier's REPORT key."""
ERROR_PEER = 0x21
ERROR_NONCE = 0x22
STATUS_NAMES = {SUCCESS: "verified", ERROR_MAC_MISMATCH: "rejected (MAC mismatch)",
                ERROR_PEER: "rejected (unexpected MRENCLAVE)",
                ERROR_NONCE: "rejected (nonce not outstanding: a replay)"}
REPORTDATA_OFFSET = 320
"""REPORTBODY.REPORTDATA's offset in a REPORT (SDM Table 38-21)."""


def challenge(verifier: Enclave) -> tuple[bytes, bytes]:
    """The verifier's TARGETINFO and a fresh nonce."""
    target, nonce = bytearray(TARGETINFO.SIZE), bytearray(32)
    status = verifier.ecall("challenge", target, nonce)
    check(status == SUCCESS, f"challenge failed with status {status:#x}")
    return bytes(target), bytes(nonce)


def prove(prover: Enclave, target: bytes, nonce: bytes) -> bytes:
    """The prover's REPORT for ``target`` with REPORTDATA = ``nonce`` || PAYLOAD."""
    report = bytearray(REPORT.SIZE)
    status = prover.ecall("prove", target, nonce, PAYLOAD, report)
    check(status == SUCCESS, f"prove failed with status {status:#x}")
    return bytes(report)


def run(proc: Process, key: RSAPrivateKey) -> list[tuple[str, str]]:
    """Attest a prover enclave to a verifier enclave; one row per check. Raises
    :class:`CheckFailed` when an outcome is not the expected one."""
    rows: list[tuple[str, str]] = []
    prover_config = EnclaveImage.load(ENCLAVE).config
    verifier_config = prover_config.with_changes(heap_size=prover_config.heap_size * 2)
    expected = EnclaveImage.load(ENCLAVE, prover_config).measure()

    with ExitStack() as stack:
        prover = stack.enter_context(Enclave.load(proc, ENCLAVE, key=key))
        verifier = stack.enter_context(Enclave.load(proc, ENCLAVE, key=key,
                                                    config=verifier_config))
        check(prover.mrenclave == expected != verifier.mrenclave,
              "the prover should have the computed MRENCLAVE and the verifier another")
        rows.append(("two enclaves from one ELF", f"prover {expected.hex()[:16]}…, verifier "
                                                  f"{verifier.mrenclave.hex()[:16]}…"))

        def verify(report: bytes, label: str, wanted: int,
                   mrenclave: bytes = expected) -> bytes:
            payload = bytearray(32)
            status = verifier.ecall("verify", report, mrenclave, payload)
            outcome = STATUS_NAMES.get(status, f"status {status:#x}")
            check(status == wanted, f"{label}: {outcome}, expected {STATUS_NAMES[wanted]}")
            rows.append((label, outcome))
            return bytes(payload)

        target, nonce = challenge(verifier)
        report = prove(prover, target, nonce)
        body = REPORT.from_bytes(report).body
        check(body.mrenclave == expected and body.reportdata == nonce + PAYLOAD,
              "the REPORT does not carry the prover's MRENCLAVE and nonce || payload")
        rows.append(("prover's REPORT for the verifier",
                     f"MRENCLAVE and REPORTDATA = nonce {nonce.hex()[:8]}… || payload"))

        tampered = bytearray(report)
        tampered[REPORTDATA_OFFSET + 32] ^= 0x01
        verify(bytes(tampered), "a REPORT with one bit of REPORTDATA flipped",
               ERROR_MAC_MISMATCH)

        own_target, _ = challenge(prover)
        verify(prove(prover, own_target, nonce), "a REPORT targeted at the prover itself",
               ERROR_MAC_MISMATCH)

        verify(report, "the genuine REPORT, expecting another MRENCLAVE", ERROR_PEER,
               mrenclave=verifier.mrenclave)

        payload = verify(report, "the genuine REPORT", SUCCESS)
        check(payload == PAYLOAD, "the verifier did not hand out the prover's payload")
        rows.append(("payload authenticated by the verifier", f"{payload.hex()[:16]}…"))

        verify(report, "the same REPORT again", ERROR_NONCE)
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
