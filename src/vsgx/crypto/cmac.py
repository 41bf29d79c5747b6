"""AES-128-CMAC (NIST SP 800-38B, RFC 4493), the MAC of REPORT, EINITTOKEN and key derivation
(SDM EREPORT, EINIT, EGETKEY)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.algorithms import AES128
from cryptography.hazmat.primitives.cmac import CMAC


def aes_cmac(key: bytes, data: bytes | memoryview) -> bytes:
    """AES-128-CMAC of ``data`` under the 16-byte ``key``."""
    if len(key) != 16:
        raise ValueError(f"AES-128-CMAC needs a 16-byte key, got {len(key)} bytes")
    mac = CMAC(AES128(key))
    mac.update(bytes(data))
    return mac.finalize()
