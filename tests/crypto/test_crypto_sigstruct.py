"""SIGSTRUCT: signing, EINIT's RSA check, Q1/Q2, MRSIGNER and signing-key loading."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.arch import (
    ATTRIBUTES,
    SIGSTRUCT,
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
    SIGSTRUCT_SIGNED_RANGES,
    sigstruct_signed_bytes,
)
from vsgx.crypto import (
    SigningKeyError,
    compute_q1_q2,
    load_signing_key,
    mrsigner,
    sign_sigstruct,
    signing_key_pem,
    verify_sigstruct,
)


def unsigned_sigstruct() -> SIGSTRUCT:
    return SIGSTRUCT(
        vendor=0x8086, date=0x20240131, swdefined=7, miscselect=1, miscmask=0xFFFFFFFF,
        isvfamilyid=bytes(range(16)), attributes=ATTRIBUTES(0x4, 0x3),
        attributemask=ATTRIBUTES(0xFFFFFFFFFFFFFFFD, 0xFFFFFFFFFFFFFFFB),
        enclavehash=hashlib.sha256(b"enclave").digest(), isvextprodid=bytes(range(16, 32)),
        isvprodid=0x1234, isvsvn=0x5678)


@pytest.fixture(scope="module")
def signed(signing_key: rsa.RSAPrivateKey) -> SIGSTRUCT:
    return sign_sigstruct(unsigned_sigstruct(), signing_key)


def field_offsets_in_signed_ranges() -> list[int]:
    """Signed byte offsets that belong to a field (reserved bytes cannot be represented)."""
    covered = {i for f in SIGSTRUCT.LAYOUT for i in range(f.offset, f.end)}
    return [i for a, b in SIGSTRUCT_SIGNED_RANGES for i in range(a, b) if i in covered]


def flipped(sig: SIGSTRUCT, offset: int, bit: int = 0x01) -> SIGSTRUCT:
    image = bytearray(sig.to_bytes())
    image[offset] ^= bit
    return SIGSTRUCT.from_bytes(bytes(image))


def test_signature_verifies_with_cryptography_from_the_bytes(
    signed: SIGSTRUCT, signing_key: rsa.RSAPrivateKey,
) -> None:
    image = signed.to_bytes()
    modulus = int.from_bytes(image[128:512], "little")
    assert int.from_bytes(image[512:516], "little") == 3
    public = rsa.RSAPublicNumbers(3, modulus).public_key()
    signature_be = image[516:900][::-1]
    public.verify(signature_be, image[0:128] + image[900:1028], padding.PKCS1v15(),
                  hashes.SHA256())
    assert modulus == signing_key.public_key().public_numbers().n


def test_signing_sets_constants_and_keeps_the_body(signed: SIGSTRUCT) -> None:
    body = unsigned_sigstruct()
    assert signed.header == SIGSTRUCT_HEADER
    assert signed.header2 == SIGSTRUCT_HEADER2
    assert signed.exponent == 3
    assert signed.replace(header=body.header, header2=body.header2, exponent=0,
                          modulus=body.modulus, signature=body.signature, q1=body.q1,
                          q2=body.q2) == body


def test_verify_accepts_the_signed_sigstruct(signed: SIGSTRUCT) -> None:
    assert verify_sigstruct(signed)
    assert verify_sigstruct(SIGSTRUCT.from_bytes(signed.to_bytes()))


def test_q1_q2_stored_match_their_definitions(signed: SIGSTRUCT) -> None:
    s = int.from_bytes(signed.signature, "little")
    n = int.from_bytes(signed.modulus, "little")
    q1 = int.from_bytes(signed.q1, "little")
    q2 = int.from_bytes(signed.q2, "little")
    assert q1 == s * s // n
    assert q2 == (s**3 - q1 * s * n) // n
    assert q2 == (s * s % n) * s // n


@given(st.integers(min_value=1, max_value=1 << 3072), st.data())
@settings(max_examples=50)
def test_compute_q1_q2_definitions(modulus: int, data: st.DataObject) -> None:
    s = data.draw(st.integers(min_value=0, max_value=modulus - 1))
    q1, q2 = compute_q1_q2(s, modulus)
    assert q1 == s * s // modulus
    assert q2 == (s * s * s - q1 * s * modulus) // modulus
    assert q2 == ((s * s) % modulus) * s // modulus


def test_compute_q1_q2_rejects_zero_modulus() -> None:
    with pytest.raises(ValueError):
        compute_q1_q2(1, 0)


def test_mrsigner_is_sha256_of_le_modulus(
    signed: SIGSTRUCT, signing_key: rsa.RSAPrivateKey,
) -> None:
    n = signing_key.public_key().public_numbers().n
    assert mrsigner(signed.modulus) == hashlib.sha256(n.to_bytes(384, "little")).digest()
    with pytest.raises(ValueError):
        mrsigner(bytes(256))


def test_flipping_any_signed_field_byte_fails(signed: SIGSTRUCT) -> None:
    offsets = field_offsets_in_signed_ranges()
    assert len(offsets) > 150
    for offset in offsets:
        tampered = flipped(signed, offset)
        assert sigstruct_signed_bytes(tampered.to_bytes()) != sigstruct_signed_bytes(
            signed.to_bytes())
        assert not verify_sigstruct(tampered), offset


@pytest.mark.parametrize(("start", "stop"), [
    (128, 512),    # modulus
    (512, 516),    # exponent
    (516, 900),    # signature
    (1040, 1424),  # q1
    (1424, 1808),  # q2
])
def test_flipping_unsigned_crypto_fields_fails(signed: SIGSTRUCT, start: int, stop: int) -> None:
    for offset in range(start, stop, 7):
        assert not verify_sigstruct(flipped(signed, offset)), offset
    assert not verify_sigstruct(flipped(signed, stop - 1, 0x80))


def test_signature_not_below_modulus_fails(signed: SIGSTRUCT) -> None:
    n = int.from_bytes(signed.modulus, "little")
    s = int.from_bytes(signed.signature, "little")
    # S + N has the same cube mod N, so only the S < N check (and Q1/Q2) rejects it.
    if s + n < 1 << 3072:
        assert not verify_sigstruct(signed.replace(signature=(s + n).to_bytes(384, "little")))
    assert not verify_sigstruct(signed.replace(signature=signed.modulus))


def test_verify_never_raises_on_degenerate_content() -> None:
    assert not verify_sigstruct(SIGSTRUCT())
    assert not verify_sigstruct(SIGSTRUCT(exponent=3))
    assert not verify_sigstruct(SIGSTRUCT(exponent=3, modulus=(1).to_bytes(384, "little")))
    assert not verify_sigstruct(SIGSTRUCT(exponent=3, signature=b"short"))


@given(st.binary(min_size=1808, max_size=1808))
@settings(max_examples=50)
def test_verify_never_raises_on_random_images(image: bytes) -> None:
    sig = SIGSTRUCT.from_bytes(image, strict=False)
    assert verify_sigstruct(sig) is False
    assert verify_sigstruct(sig.replace(exponent=3)) is False


def test_key_pem_round_trip(signing_key: rsa.RSAPrivateKey) -> None:
    pem = signing_key_pem(signing_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_signing_key(pem)
    assert loaded.private_numbers() == signing_key.private_numbers()
    pkcs1 = signing_key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
    assert load_signing_key(pkcs1).private_numbers() == signing_key.private_numbers()


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_load_rejects_wrong_size_and_exponent() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SigningKeyError, match=r"^signing key must be RSA-3072 with public "
                                              r"exponent 3, got RSA-2048 e=65537$"):
        load_signing_key(_pem(small))
    small_e3 = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(SigningKeyError, match=r"got RSA-2048 e=3$"):
        load_signing_key(_pem(small_e3))


def test_load_rejects_e65537_at_3072(signing_key: rsa.RSAPrivateKey) -> None:
    numbers = signing_key.private_numbers()
    # Re-using p and q keeps the test fast; only the exponent differs.
    p, q = numbers.p, numbers.q
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1) // 2)
    key = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q)).private_key()
    with pytest.raises(SigningKeyError, match=r"got RSA-3072 e=65537$"):
        load_signing_key(_pem(key))
    with pytest.raises(SigningKeyError, match=r"got RSA-3072 e=65537$"):
        sign_sigstruct(unsigned_sigstruct(), key)


def test_load_rejects_non_rsa_encrypted_and_garbage(signing_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SigningKeyError, match=r"got Ed25519$"):
        load_signing_key(_pem(ed25519.Ed25519PrivateKey.generate()))
    encrypted = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(SigningKeyError, match="encrypted"):
        load_signing_key(encrypted)
    with pytest.raises(SigningKeyError, match="not a readable PEM private key"):
        load_signing_key(b"garbage")
    public = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(SigningKeyError, match="not a readable PEM private key"):
        load_signing_key(public)
    with pytest.raises(SigningKeyError, match="must be bytes"):
        load_signing_key("-----BEGIN PRIVATE KEY-----")  # type: ignore[arg-type]
