"""The authenticated encryption of evicted EPC pages (SDM Vol. 3D EWB, ELDB/ELDU).

EWB computes ``{SRCPGE, PCMD.MAC} = AES-GCM-ENC(CR_BASE_PK, IV = TMP_VER << 32,
AAD = MAC header, plaintext = the 4096-byte page)``; ELDB/ELDU rebuild the header, decrypt with
the version from the VA slot and fail with SGX_MAC_COMPARE_FAIL on a mismatch.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vsgx.arch.constants import PAGE_SIZE

_MAC_HEADER_SIZE = 128
_MAC_SIZE = 16
_U64_MAX = (1 << 64) - 1


class MacMismatch(Exception):
    """ELDB/ELDU: the page, its header or its version does not match the MAC."""


def pcmd_mac_header(eid: int, linaddr: int, secinfo_flags: int) -> bytes:
    """The 128-byte MAC header EWB authenticates: EID u64 at 0, LINADDR u64 at 8, SECINFO
    (64 bytes: FLAGS u64, then zeros) at 16, zeros from 80 to 128.

    The SDM fixes the contents (EID, ENCLAVEADDRESS, the PT/RWX/PENDING/MODIFIED/PR flags) but
    not their placement; this is vsgx's layout, the one OpenSGX uses.
    """
    for name, value in (("eid", eid), ("linaddr", linaddr), ("secinfo_flags", secinfo_flags)):
        if not 0 <= value <= _U64_MAX:
            raise ValueError(f"{name}={value:#x} does not fit in 64 bits")
    header = (eid.to_bytes(8, "little") + linaddr.to_bytes(8, "little")
              + secinfo_flags.to_bytes(8, "little"))
    return header.ljust(_MAC_HEADER_SIZE, b"\0")


@lru_cache(maxsize=16)
def _cipher(paging_key: bytes) -> AESGCM:
    if len(paging_key) != 16:
        raise ValueError(f"the paging key is AES-128: 16 bytes, got {len(paging_key)}")
    return AESGCM(paging_key)


def _nonce(version: int) -> bytes:
    """The 96-bit IV ``TMP_VER << 32`` as little-endian bytes: 4 zero bytes, then the version
    as a little-endian u64."""
    if not 0 <= version <= _U64_MAX:
        raise ValueError(f"version={version:#x} does not fit in 64 bits")
    return bytes(4) + version.to_bytes(8, "little")


def _check_sizes(header: bytes, page: bytes | memoryview) -> None:
    if len(header) != _MAC_HEADER_SIZE:
        raise ValueError(f"MAC header must be {_MAC_HEADER_SIZE} bytes, got {len(header)}")
    if memoryview(page).nbytes != PAGE_SIZE:
        raise ValueError(f"a page is {PAGE_SIZE} bytes, got {memoryview(page).nbytes}")


def ewb_seal(paging_key: bytes, version: int, header: bytes,
             page: bytes | memoryview) -> tuple[bytes, bytes]:
    """EWB's encryption: ``(ciphertext, mac)`` of a 4096-byte page under the paging key, with
    IV = version << 32 and the MAC header as additional authenticated data (SDM EWB)."""
    _check_sizes(header, page)
    sealed = _cipher(paging_key).encrypt(_nonce(version), bytes(page), header)
    return sealed[:PAGE_SIZE], sealed[PAGE_SIZE:]


def eldu_open(paging_key: bytes, version: int, header: bytes, ciphertext: bytes | memoryview,
              mac: bytes) -> bytes:
    """ELDB/ELDU's decryption (SDM ELDU): the plaintext page, or :class:`MacMismatch` if the
    ciphertext, MAC, header, version or key differ from what EWB used."""
    _check_sizes(header, ciphertext)
    if len(mac) != _MAC_SIZE:
        raise ValueError(f"PCMD.MAC is {_MAC_SIZE} bytes, got {len(mac)}")
    try:
        return _cipher(paging_key).decrypt(_nonce(version), bytes(ciphertext) + mac, header)
    except InvalidTag:
        raise MacMismatch("page MAC does not match (SGX_MAC_COMPARE_FAIL)") from None
