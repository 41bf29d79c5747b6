"""SIGSTRUCT signing, MRSIGNER, and the RSA check EINIT performs (SDM Vol. 3D 38.13, EINIT).

A SIGSTRUCT is signed with RSA-3072, public exponent 3, RSASSA-PKCS1-v1_5 and SHA-256 over
bytes [0:128] || [900:1028]. The modulus, signature, Q1 and Q2 are stored little-endian;
Q1 = floor(S^2 / N) and Q2 = floor((S^3 - Q1*S*N) / N) let the processor verify with two
multiplications. EINIT accepts the signature when S^3 mod N, as 384 big-endian bytes, equals
HARDCODED_PKCS1_5_PADDING || SHA256(signed bytes).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from vsgx.arch.constants import (
    HARDCODED_PKCS1_5_PADDING,
    SIGSTRUCT_EXPONENT,
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
)
from vsgx.arch.structs import SIGSTRUCT, sigstruct_signed_bytes

_KEY_BITS = 3072
_KEY_BYTES = _KEY_BITS // 8


class SigningKeyError(ValueError):
    """A signing key is unusable for SIGSTRUCT: unreadable, or not RSA-3072 with e=3."""


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA-{key.key_size} e={key.public_key().public_numbers().e}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.removesuffix("PrivateKey")


def _check_signing_key(key: object) -> rsa.RSAPrivateKey:
    if (isinstance(key, rsa.RSAPrivateKey) and key.key_size == _KEY_BITS
            and key.public_key().public_numbers().e == SIGSTRUCT_EXPONENT):
        return key
    raise SigningKeyError(f"signing key must be RSA-{_KEY_BITS} with public exponent "
                          f"{SIGSTRUCT_EXPONENT}, got {_describe(key)}")


def mrsigner(modulus_le: bytes) -> bytes:
    """MRSIGNER: SHA-256 of the 384-byte little-endian modulus as stored in SIGSTRUCT
    (SDM EINIT, ``SHA256(TMP_SIG.MODULUS)``)."""
    if len(modulus_le) != _KEY_BYTES:
        raise ValueError(f"SIGSTRUCT modulus must be {_KEY_BYTES} bytes, got {len(modulus_le)}")
    return hashlib.sha256(modulus_le).digest()


def generate_signing_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-3072 key with public exponent 3."""
    return rsa.generate_private_key(public_exponent=SIGSTRUCT_EXPONENT, key_size=_KEY_BITS)


def load_signing_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PEM private key (PKCS#8 or PKCS#1) and check it can sign a
    SIGSTRUCT. Raises :class:`SigningKeyError` with the reason otherwise."""
    if not isinstance(pem, bytes | bytearray):
        raise SigningKeyError(f"signing key PEM must be bytes, got {type(pem).__name__}")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise SigningKeyError("signing key PEM is encrypted; an unencrypted key is "
                              "required") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"signing key is not a readable PEM private key: {exc}") from None
    return _check_signing_key(key)


def signing_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def compute_q1_q2(signature: int, modulus: int) -> tuple[int, int]:
    """Q1 = floor(S^2 / N) and Q2 = floor((S^3 - Q1*S*N) / N) (SDM 38.13)."""
    if modulus <= 0 or signature < 0:
        raise ValueError("the modulus must be positive and the signature non-negative")
    q1 = signature * signature // modulus
    q2 = (signature ** 3 - q1 * signature * modulus) // modulus
    return q1, q2


def _le(value: int) -> bytes:
    return value.to_bytes(_KEY_BYTES, "little")


def sign_sigstruct(sig: SIGSTRUCT, key: rsa.RSAPrivateKey) -> SIGSTRUCT:
    """A copy of ``sig`` with HEADER, HEADER2, EXPONENT and MODULUS set, then signed: the
    signature over the signed bytes, Q1 and Q2 stored little-endian (SDM 38.13)."""
    key = _check_signing_key(key)
    modulus = key.public_key().public_numbers().n
    unsigned = sig.replace(header=SIGSTRUCT_HEADER, header2=SIGSTRUCT_HEADER2,
                           exponent=SIGSTRUCT_EXPONENT, modulus=_le(modulus))
    signed_bytes = sigstruct_signed_bytes(unsigned.to_bytes())
    signature = int.from_bytes(key.sign(signed_bytes, padding.PKCS1v15(), hashes.SHA256()), "big")
    q1, q2 = compute_q1_q2(signature, modulus)
    return unsigned.replace(signature=_le(signature), q1=_le(q1), q2=_le(q2))


def verify_sigstruct(sig: SIGSTRUCT) -> bool:
    """EINIT's signature check (SDM EINIT): EXPONENT is 3, S < N, Q1 and Q2 match S and N,
    and S^3 mod N is the PKCS#1 v1.5 encoding of SHA256(signed bytes). Integer arithmetic
    only, independent of the signer; any malformed content yields False."""
    try:
        image = sig.to_bytes()
    except ValueError:
        return False
    if sig.exponent != SIGSTRUCT_EXPONENT:
        return False
    n = int.from_bytes(sig.modulus, "little")
    s = int.from_bytes(sig.signature, "little")
    if n == 0 or s >= n:
        return False
    q1, q2 = compute_q1_q2(s, n)
    if (int.from_bytes(sig.q1, "little"), int.from_bytes(sig.q2, "little")) != (q1, q2):
        return False
    encoded = pow(s, SIGSTRUCT_EXPONENT, n).to_bytes(_KEY_BYTES, "big")
    expected = HARDCODED_PKCS1_5_PADDING + hashlib.sha256(sigstruct_signed_bytes(image)).digest()
    return encoded == expected
