"""``vsgx keygen`` and ``vsgx sigstruct``: keys EINIT accepts, every SIGSTRUCT field printed,
the signature verified (and checked independently with ``cryptography``), clear failures."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from test_cli import run_main

from vsgx.arch import ATTRIBUTES, SIGSTRUCT
from vsgx.crypto import load_signing_key, sign_sigstruct
from vsgx.crypto.sigstruct import sigstruct_signed_bytes


def _keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "key.pem"
    code, out, err = run_main(["keygen", str(key)], capsys, monkeypatch)
    assert (code, out) == (0, "") and "RSA-3072" in err
    return key


def _signed(key: Path, tmp_path: Path) -> tuple[Path, SIGSTRUCT]:
    sig = sign_sigstruct(SIGSTRUCT(vendor=0x8086, date=0x20261127, enclavehash=bytes(range(32)),
                                   attributes=ATTRIBUTES(0x4, 0x3),
                                   attributemask=ATTRIBUTES(0xFFFFFFFFFFFFFFFE, 0x3),
                                   isvprodid=7, isvsvn=3),
                         load_signing_key(key.read_bytes()))
    path = tmp_path / "enclave.sig"
    path.write_bytes(sig.to_bytes())
    return path, sig


def test_keygen_writes_a_private_e3_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    key = _keygen(tmp_path, capsys, monkeypatch)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = load_signing_key(key.read_bytes())
    assert private.key_size == 3072 and private.public_key().public_numbers().e == 3
    before = key.read_bytes()
    code, _, err = run_main(["keygen", str(key)], capsys, monkeypatch)
    assert code == 2 and err == f"vsgx keygen: {key} exists; refusing to overwrite a key\n"
    assert key.read_bytes() == before


def test_sigstruct_json_has_every_field_and_verifies(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    key = _keygen(tmp_path, capsys, monkeypatch)
    path, sig = _signed(key, tmp_path)
    code, out, err = run_main(["sigstruct", "--json", str(path)], capsys, monkeypatch)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert {f.name for f in SIGSTRUCT.LAYOUT} <= doc.keys()
    assert doc["mrenclave"] == doc["enclavehash"] == bytes(range(32)).hex()
    assert doc["mrsigner"] == hashlib.sha256(sig.modulus).hexdigest()
    assert (doc["vendor"], doc["isvprodid"], doc["isvsvn"]) == (0x8086, 7, 3)
    assert doc["attributes"] == {"flags": 4, "xfrm": 3}
    assert doc["signature_valid"] is True
    # the same signature checked by cryptography, independently of vsgx's integer check
    public = load_signing_key(key.read_bytes()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sig.signature[::-1], sigstruct_signed_bytes(sig.to_bytes()),
                  padding.PKCS1v15(), hashes.SHA256())


def test_sigstruct_table_and_a_tampered_signature(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key = _keygen(tmp_path, capsys, monkeypatch)
    path, _ = _signed(key, tmp_path)
    code, out, _ = run_main(["sigstruct", str(path)], capsys, monkeypatch)
    assert code == 0 and "mrsigner" in out and "valid" in out
    raw = bytearray(path.read_bytes())
    raw[960] ^= 1  # one bit of ENCLAVEHASH: the signature no longer covers the content
    path.write_bytes(bytes(raw))
    code, out, err = run_main(["sigstruct", "--json", str(path)], capsys, monkeypatch)
    assert code == 1 and json.loads(out)["signature_valid"] is False
    assert err == (f"vsgx sigstruct: {path}: the signature does not verify (EINIT would "
                   "return SGX_INVALID_SIGNATURE)\n")


@pytest.mark.parametrize(("content", "message"), [
    (b"\0" * 100, "SIGSTRUCT must be 1808 bytes, got 100"),
    (None, "cannot read {path}: No such file or directory"),
])
def test_sigstruct_refuses_what_is_not_one(tmp_path: Path, content: bytes | None, message: str,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.sig"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_main(["sigstruct", str(path)], capsys, monkeypatch)
    expected = message.format(path=path)
    prefix = "" if content is None else f"{path}: "
    assert (code, out) == (2, "") and err == f"vsgx sigstruct: {prefix}{expected}\n"
