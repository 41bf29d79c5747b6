"""AES-128-CMAC against the RFC 4493 test vectors."""

from __future__ import annotations

import pytest

from vsgx.crypto import aes_cmac

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710")


@pytest.mark.parametrize(("length", "expected"), [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_rfc4493_vectors(length: int, expected: str) -> None:
    assert aes_cmac(KEY, MESSAGE[:length]).hex() == expected
    assert aes_cmac(KEY, memoryview(MESSAGE)[:length]).hex() == expected


@pytest.mark.parametrize("size", [0, 15, 24, 32])
def test_rejects_non_aes128_keys(size: int) -> None:
    with pytest.raises(ValueError, match="16-byte key"):
        aes_cmac(bytes(size), b"")
