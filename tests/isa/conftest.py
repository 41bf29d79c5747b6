"""Shared fixtures for the ``vsgx isa`` tests: signing-key files written once per session
(RSA-3072 generation costs up to a couple of seconds, so scripts name a PEM file instead of
``"key": "generate"`` unless a test exercises ``"generate"`` itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vsgx.crypto import generate_signing_key, signing_key_pem


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("isa-keys")


@pytest.fixture(scope="session")
def pem_key(key_dir: Path) -> str:
    """Path of an RSA-3072/e=3 PEM key usable for SIGSTRUCT."""
    path = key_dir / "signer.pem"
    path.write_bytes(signing_key_pem(generate_signing_key()))
    return str(path)


@pytest.fixture(scope="session")
def rsa2048_key(key_dir: Path) -> str:
    """A well-formed PEM key SIGSTRUCT cannot use: RSA-2048 with e=65537."""
    path = key_dir / "rsa2048.pem"
    path.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    return str(path)


@pytest.fixture(scope="session")
def ec_key(key_dir: Path) -> str:
    path = key_dir / "ec.pem"
    path.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    return str(path)


@pytest.fixture(scope="session")
def not_pem_key(key_dir: Path) -> str:
    path = key_dir / "not-a-key.pem"
    path.write_text("this is not a PEM file\n")
    return str(path)
