"""EWB/ELDU page encryption: round trip and every kind of tampering."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vsgx.crypto import MacMismatch, eldu_open, ewb_seal, pcmd_mac_header

KEY = bytes(range(16))
PAGE = os.urandom(4096)
HEADER = pcmd_mac_header(eid=7, linaddr=0x7F0000123000, secinfo_flags=0x203)


def test_mac_header_layout() -> None:
    assert len(HEADER) == 128
    assert HEADER[0:8] == (7).to_bytes(8, "little")
    assert HEADER[8:16] == (0x7F0000123000).to_bytes(8, "little")
    assert HEADER[16:24] == (0x203).to_bytes(8, "little")
    assert HEADER[24:] == bytes(104)


def test_mac_header_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        pcmd_mac_header(-1, 0, 0)
    with pytest.raises(ValueError):
        pcmd_mac_header(0, 1 << 64, 0)


def test_round_trip() -> None:
    ciphertext, mac = ewb_seal(KEY, 5, HEADER, PAGE)
    assert len(ciphertext) == 4096 and len(mac) == 16
    assert ciphertext != PAGE
    assert eldu_open(KEY, 5, HEADER, ciphertext, mac) == PAGE
    assert eldu_open(KEY, 5, HEADER, memoryview(ciphertext), mac) == PAGE


def test_nonce_is_version_shifted_left_32() -> None:
    """IV = TMP_VER << 32 as a 96-bit little-endian value: 4 zero bytes, then the u64."""
    version = 0x0102030405060708
    ciphertext, mac = ewb_seal(KEY, version, HEADER, memoryview(PAGE))
    nonce = (version << 32).to_bytes(12, "little")
    assert AESGCM(KEY).decrypt(nonce, ciphertext + mac, HEADER) == PAGE


def test_distinct_versions_give_distinct_ciphertexts() -> None:
    assert ewb_seal(KEY, 1, HEADER, PAGE) != ewb_seal(KEY, 2, HEADER, PAGE)


@pytest.fixture(scope="module")
def sealed() -> tuple[bytes, bytes]:
    return ewb_seal(KEY, 9, HEADER, PAGE)


def test_wrong_version(sealed: tuple[bytes, bytes]) -> None:
    with pytest.raises(MacMismatch):
        eldu_open(KEY, 10, HEADER, *sealed)


def test_wrong_key(sealed: tuple[bytes, bytes]) -> None:
    with pytest.raises(MacMismatch):
        eldu_open(bytes(16), 9, HEADER, *sealed)


@pytest.mark.parametrize("offset", [0, 1, 2047, 4095])
def test_flipped_ciphertext_byte(sealed: tuple[bytes, bytes], offset: int) -> None:
    ciphertext = bytearray(sealed[0])
    ciphertext[offset] ^= 0x01
    with pytest.raises(MacMismatch):
        eldu_open(KEY, 9, HEADER, bytes(ciphertext), sealed[1])


@pytest.mark.parametrize("offset", [0, 8, 16, 127])
def test_flipped_header_byte(sealed: tuple[bytes, bytes], offset: int) -> None:
    header = bytearray(HEADER)
    header[offset] ^= 0x80
    with pytest.raises(MacMismatch):
        eldu_open(KEY, 9, bytes(header), *sealed)


def test_flipped_mac_byte(sealed: tuple[bytes, bytes]) -> None:
    mac = bytearray(sealed[1])
    mac[15] ^= 0x01
    with pytest.raises(MacMismatch):
        eldu_open(KEY, 9, HEADER, sealed[0], bytes(mac))


@pytest.mark.parametrize("call", [
    lambda: ewb_seal(bytes(32), 1, HEADER, PAGE),
    lambda: ewb_seal(KEY, -1, HEADER, PAGE),
    lambda: ewb_seal(KEY, 1 << 64, HEADER, PAGE),
    lambda: ewb_seal(KEY, 1, HEADER[:64], PAGE),
    lambda: ewb_seal(KEY, 1, HEADER, PAGE[:4095]),
    lambda: eldu_open(KEY, 1, HEADER, PAGE, bytes(15)),
])
def test_malformed_arguments(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]
