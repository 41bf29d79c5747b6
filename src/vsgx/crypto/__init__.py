"""SGX cryptography: MRENCLAVE/MRSIGNER, SIGSTRUCT signing and EINIT's check, key derivation
(EGETKEY/EREPORT/EINITTOKEN) and EPC paging encryption (SDM Vol. 3D ch. 38-40).

Depends only on :mod:`vsgx.arch`, ``cryptography``, ``numpy`` and ``hashlib``.
"""

from __future__ import annotations

from vsgx.crypto.cmac import aes_cmac
from vsgx.crypto.keys import (
    BootSecrets,
    EnclaveIdentity,
    KeyDependencies,
    PlatformSecrets,
    derive_key,
    egetkey_dependencies,
    einittoken_dependencies,
    einittoken_mac,
    report_key_dependencies,
    report_mac,
)
from vsgx.crypto.measure import MeasurementBuilder
from vsgx.crypto.paging import MacMismatch, eldu_open, ewb_seal, pcmd_mac_header
from vsgx.crypto.sigstruct import (
    SigningKeyError,
    compute_q1_q2,
    generate_signing_key,
    load_signing_key,
    mrsigner,
    sign_sigstruct,
    signing_key_pem,
    verify_sigstruct,
)

__all__ = [
    "BootSecrets", "EnclaveIdentity", "KeyDependencies", "MacMismatch", "MeasurementBuilder",
    "PlatformSecrets", "SigningKeyError", "aes_cmac", "compute_q1_q2", "derive_key",
    "egetkey_dependencies", "eldu_open", "einittoken_dependencies", "einittoken_mac",
    "ewb_seal", "generate_signing_key", "load_signing_key", "mrsigner", "pcmd_mac_header",
    "report_key_dependencies", "report_mac", "sign_sigstruct", "signing_key_pem",
    "verify_sigstruct",
]
