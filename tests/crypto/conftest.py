"""Shared fixtures for the vsgx.crypto tests."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.crypto import generate_signing_key


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    """One RSA-3072/e=3 key for the whole session (generation takes about a second)."""
    return generate_signing_key()
