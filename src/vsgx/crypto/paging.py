"""The authenticated encryption of evicted EPC pages (SDM Vol. 3D EWB, ELDB/ELDU).

EWB computes ``{SRCPGE, PCMD.MAC} = AES-GCM-ENC(CR_BASE_PK, IV = TMP_VER << 32,
AAD = MAC header, plaintext = the 4096-byte page)``; ELDB/ELDU rebuild the header, decrypt with
the version from the VA slot and fail with SGX_MAC_COMPARE_FAIL on a mismatch.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vsgx.arch.constants import PAGE_SIZE

_MAC_HEADER = struct.Struct("<QQQ104x")
"""The MAC header: EID, LINADDR, SECINFO.FLAGS (u64 each), then zeros to 128 bytes."""
_MAC_HEADER_SIZE = _MAC_HEADER.size
_MAC_SIZE = 16
_U64_MAX = (1 << 64) - 1
_NONCE = struct.Struct("<4xQ")
"""The 96-bit IV ``TMP_VER << 32`` as little-endian bytes: 4 zero bytes, then the u64."""


class MacMismatch(Exception):
    """ELDB/ELDU: the page, its header or its version does not match the MAC."""


def pcmd_mac_header(eid: int, linaddr: int, secinfo_flags: int) -> bytes:
    """The 128-byte MAC header EWB authenticates: EID u64 at 0, LINADDR u64 at 8, SECINFO
    (64 bytes: FLAGS u64, then zeros) at 16, zeros from 80 to 128.

    The SDM fixes the contents (EID, ENCLAVEADDRESS, the PT/RWX/PENDING/MODIFIED/PR flags) but
    not their placement; this is vsgx's layout, the one OpenSGX uses.
    """
    try:
        return _MAC_HEADER.pack(eid, linaddr, secinfo_flags)
    except struct.error:
        for name, value in (("eid", eid), ("linaddr", linaddr),
                            ("secinfo_flags", secinfo_flags)):
            if not 0 <= value <= _U64_MAX:
                raise ValueError(f"{name}={value:#x} does not fit in 64 bits") from None
        raise


class PagingCipher:
    """AES-GCM under one paging key as EWB and ELDB/ELDU apply it (SDM EWB, ELDU): IV =
    version << 32, AAD = the 128-byte MAC header, 4096-byte pages, 16-byte MACs.

    The methods take well-formed operands (what the processor model passes); :func:`ewb_seal`
    and :func:`eldu_open` check them first. Get one with :func:`paging_cipher`."""

    __slots__ = ("_aead",)

    def __init__(self, paging_key: bytes) -> None:
        if len(paging_key) != 16:
            raise ValueError(f"the paging key is AES-128: 16 bytes, got {len(paging_key)}")
        self._aead = AESGCM(paging_key)

    def seal(self, version: int, header: bytes, page: bytes | memoryview) -> tuple[bytes, bytes]:
        """``(ciphertext, mac)``; ``page`` may be a view of the EPC page (read in place)."""
        sealed = self._aead.encrypt(_NONCE.pack(version), page, header)
        return sealed[:PAGE_SIZE], sealed[PAGE_SIZE:]

    def open(self, version: int, header: bytes, ciphertext: bytes | memoryview,
             mac: bytes) -> bytes:
        """The plaintext page, or :class:`MacMismatch`."""
        try:
            # One copy: AES-GCM takes the ciphertext and its tag as one buffer.
            return self._aead.decrypt(_NONCE.pack(version), b"".join((ciphertext, mac)), header)
        except InvalidTag:
            raise MacMismatch("page MAC does not match (SGX_MAC_COMPARE_FAIL)") from None


@lru_cache(maxsize=16)
def paging_cipher(paging_key: bytes) -> PagingCipher:
    """The (cached) :class:`PagingCipher` of a 16-byte paging key."""
    return PagingCipher(paging_key)


def _check_sizes(header: bytes, page: bytes | memoryview) -> None:
    if len(header) != _MAC_HEADER_SIZE:
        raise ValueError(f"MAC header must be {_MAC_HEADER_SIZE} bytes, got {len(header)}")
    size = page.nbytes if isinstance(page, memoryview) else len(page)
    if size != PAGE_SIZE:
        raise ValueError(f"a page is {PAGE_SIZE} bytes, got {size}")


def _check_version(version: int) -> None:
    if not 0 <= version <= _U64_MAX:
        raise ValueError(f"version={version:#x} does not fit in 64 bits")


def ewb_seal(paging_key: bytes, version: int, header: bytes,
             page: bytes | memoryview) -> tuple[bytes, bytes]:
    """EWB's encryption: ``(ciphertext, mac)`` of a 4096-byte page under the paging key, with
    IV = version << 32 and the MAC header as additional authenticated data (SDM EWB)."""
    _check_sizes(header, page)
    cipher = paging_cipher(paging_key)
    _check_version(version)
    return cipher.seal(version, header, page)


def eldu_open(paging_key: bytes, version: int, header: bytes, ciphertext: bytes | memoryview,
              mac: bytes) -> bytes:
    """ELDB/ELDU's decryption (SDM ELDU): the plaintext page, or :class:`MacMismatch` if the
    ciphertext, MAC, header, version or key differ from what EWB used."""
    _check_sizes(header, ciphertext)
    if len(mac) != _MAC_SIZE:
        raise ValueError(f"PCMD.MAC is {_MAC_SIZE} bytes, got {len(mac)}")
    cipher = paging_cipher(paging_key)
    _check_version(version)
    return cipher.open(version, header, ciphertext, mac)
