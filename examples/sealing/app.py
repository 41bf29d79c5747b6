"""Sealing: secrets only the same enclave, or its signer's enclaves, can unseal.

The enclave (``enclave.c``) seals a secret with a key from EGETKEY (SDM Vol. 3D, EGETKEY):
under KEYPOLICY.MRENCLAVE the key depends on the enclave's measurement, under
KEYPOLICY.MRSIGNER on its signer (MRSIGNER), product (ISVPRODID) and security version
(ISVSVN). This program loads the same ELF several ways and checks who can unseal what:

* the sealing enclave unseals both blobs;
* another enclave of the same signer and product (the ELF with a larger heap: a different
  MRENCLAVE) unseals the MRSIGNER blob, not the MRENCLAVE one;
* the same ELF signed with another key (same MRENCLAVE, other MRSIGNER) unseals the
  MRENCLAVE blob, whose key does not depend on the signer, but not the MRSIGNER one;
* a blob with one byte changed is refused;
* a later version (ISVSVN + 1) unseals the older blob, but its own blobs are out of reach of
  the older version: EGETKEY refuses a KEYREQUEST.ISVSVN above the enclave's.

Run it on a machine with SGX::

    vsgx run -machine q35 -m 1G -cpu host \\
        -object memory-backend-epc,id=e0,size=32M -M sgx-epc.0.memdev=e0,sgx-epc.0.node=0 \\
        -- examples/sealing/app.py
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

import vsgx.crypto
from vsgx.guest import Process
from vsgx.sdk import Enclave, EnclaveImage
from vsgx.sdk.sample import check, main

ENCLAVE = Path(__file__).parent / "enclave.elf"
SECRET = b"the launch code is 0000"

KEYPOLICY_MRENCLAVE = 0x1
KEYPOLICY_MRSIGNER = 0x2
SUCCESS = 0
ERROR_MAC_MISMATCH = 0x11
"""VSGX_ERROR_MAC_MISMATCH: the key does not open the blob (another enclave's or altered)."""
ERROR_KEY = 0x12
"""VSGX_ERROR_KEY: EGETKEY refused the blob's KEYREQUEST (here SGX_INVALID_ISVSVN)."""
STATUS_NAMES = {SUCCESS: "unsealed", ERROR_MAC_MISMATCH: "refused (MAC mismatch)",
                ERROR_KEY: "refused (EGETKEY: ISVSVN too high)"}
TAMPER_OFFSET = 560
"""The first byte of the ciphertext, after the 560-byte sgx_sealed_data_t header."""


def seal(enclave: Enclave, policy: int, secret: bytes) -> bytes:
    """``secret`` sealed by ``enclave`` under ``policy``."""
    blob = bytearray(enclave.ecall("sealed_size", len(secret)))
    status = enclave.ecall("seal", policy, secret, len(secret), blob, len(blob))
    check(status == SUCCESS, f"seal under policy {policy:#x} failed with status {status:#x}")
    return bytes(blob)


def unseal(enclave: Enclave, blob: bytes, size: int) -> tuple[int, bytes]:
    """``enclave``'s attempt at unsealing ``blob`` (a ``size``-byte secret): the status and,
    on success, the secret."""
    out = bytearray(size)
    status = enclave.ecall("unseal", blob, len(blob), out, size)
    return status, bytes(out) if status == SUCCESS else b""


def run(proc: Process, key: RSAPrivateKey) -> list[tuple[str, str]]:
    """Seal a secret in one enclave and try to unseal it in others; one row per check.
    Raises :class:`CheckFailed` when an outcome differs from the SDM's EGETKEY rules."""
    rows: list[tuple[str, str]] = []

    def expect(who: Enclave, label: str, blob: bytes, wanted: int) -> None:
        status, text = unseal(who, blob, len(SECRET))
        outcome = STATUS_NAMES.get(status, f"status {status:#x}")
        check(status == wanted, f"{label}: {outcome}, expected {STATUS_NAMES[wanted]}")
        check(wanted != SUCCESS or text == SECRET, f"{label}: unsealed {text!r}")
        rows.append((label, outcome))

    config = EnclaveImage.load(ENCLAVE).config
    with ExitStack() as stack:
        sealer = stack.enter_context(Enclave.load(proc, ENCLAVE, key=key))
        by_enclave = seal(sealer, KEYPOLICY_MRENCLAVE, SECRET)
        by_signer = seal(sealer, KEYPOLICY_MRSIGNER, SECRET)
        check(SECRET not in by_enclave and SECRET not in by_signer,
              "the secret shows in clear in a sealed blob")
        rows.append(("sealed under MRENCLAVE and MRSIGNER",
                     f"two {len(by_signer)}-byte blobs, the secret not in clear"))
        expect(sealer, "same enclave, MRENCLAVE blob", by_enclave, SUCCESS)
        expect(sealer, "same enclave, MRSIGNER blob", by_signer, SUCCESS)

        sibling = stack.enter_context(Enclave.load(
            proc, ENCLAVE, key=key, config=config.with_changes(heap_size=config.heap_size * 2)))
        check(sibling.mrenclave != sealer.mrenclave and sibling.mrsigner == sealer.mrsigner,
              "the larger-heap enclave should differ in MRENCLAVE only")
        expect(sibling, "same signer, other MRENCLAVE: MRSIGNER blob", by_signer, SUCCESS)
        expect(sibling, "same signer, other MRENCLAVE: MRENCLAVE blob", by_enclave,
               ERROR_MAC_MISMATCH)

        stranger = stack.enter_context(Enclave.load(
            proc, ENCLAVE, key=vsgx.crypto.generate_signing_key()))
        check(stranger.mrenclave == sealer.mrenclave and stranger.mrsigner != sealer.mrsigner,
              "the enclave signed with another key should differ in MRSIGNER only")
        # SDM EGETKEY: with KEYPOLICY.MRENCLAVE alone, MRSIGNER does not enter the seal key.
        expect(stranger, "other signer, same MRENCLAVE: MRENCLAVE blob", by_enclave, SUCCESS)
        expect(stranger, "other signer, same MRENCLAVE: MRSIGNER blob", by_signer,
               ERROR_MAC_MISMATCH)

        tampered = bytearray(by_signer)
        tampered[TAMPER_OFFSET] ^= 0x01
        expect(sealer, "a blob with one ciphertext bit flipped", bytes(tampered),
               ERROR_MAC_MISMATCH)

        upgrade = stack.enter_context(Enclave.load(
            proc, ENCLAVE, key=key, config=config.with_changes(isvsvn=config.isvsvn + 1)))
        expect(upgrade, f"ISVSVN {config.isvsvn + 1} unseals ISVSVN {config.isvsvn}'s blob",
               by_signer, SUCCESS)
        newer = seal(upgrade, KEYPOLICY_MRSIGNER, SECRET)
        expect(sealer, f"ISVSVN {config.isvsvn} unseals ISVSVN {config.isvsvn + 1}'s blob",
               newer, ERROR_KEY)
    return rows


if __name__ == "__main__":
    main(run, globals(), __file__)
