"""``vsgx keygen`` and ``vsgx sigstruct``: enclave signing keys and SIGSTRUCT inspection.

``keygen`` writes an RSA-3072 key with public exponent 3 (SDM 38.13: the only exponent EINIT
accepts) as unencrypted PKCS#8 PEM, mode 0600, and never overwrites a file. ``sigstruct``
prints every SIGSTRUCT field (JSON keys are the SDM's field names in lower case, plus
``mrenclave`` = ENCLAVEHASH and ``mrsigner`` = SHA-256 of the modulus) and verifies the
signature the way EINIT does; a signature that does not verify is exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vsgx.arch import SIGSTRUCT, StructError
from vsgx.crypto import generate_signing_key
from vsgx.crypto.sigstruct import mrsigner, signing_key_pem, verify_sigstruct

EXIT_USAGE = 2
_LONG = {"modulus", "signature", "q1", "q2"}


class CliError(Exception):
    """A one-line failure for the user (exit status 2)."""


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.key)
    pem = signing_key_pem(generate_signing_key())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"vsgx keygen: {path} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise CliError(f"vsgx keygen: cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    print(f"wrote an RSA-3072 (e=3) enclave signing key to {path}", file=sys.stderr)
    return 0


def read_sigstruct(path: str) -> SIGSTRUCT:
    """The SIGSTRUCT in ``path`` (exactly 1808 bytes, reserved bytes zero)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"vsgx sigstruct: cannot read {path}: {exc.strerror}") from None
    try:
        return SIGSTRUCT.from_bytes(raw)
    except StructError as exc:
        raise CliError(f"vsgx sigstruct: {path}: {exc}") from None


def describe(sig: SIGSTRUCT) -> dict[str, Any]:
    """Every field by its SDM name, plus ``mrenclave``, ``mrsigner`` and
    ``signature_valid``."""
    fields = sig.to_dict()
    fields["mrenclave"] = sig.enclavehash.hex()
    fields["mrsigner"] = mrsigner(sig.modulus).hex()
    fields["signature_valid"] = verify_sigstruct(sig)
    return fields


def _text(value: Any, name: str) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v, k)}" for k, v in value.items())
    if isinstance(value, bool):
        return "valid" if value else "INVALID"
    if isinstance(value, int):
        return f"{value:#x}" if name not in ("isvprodid", "isvsvn") else str(value)
    if name in _LONG and len(value) > 40:
        return f"{value[:16]}…{value[-16:]} ({len(value) // 2} bytes)"
    return str(value)


def cmd_sigstruct(args: argparse.Namespace) -> int:
    sig = read_sigstruct(args.file)
    fields = describe(sig)
    if args.json:
        print(json.dumps(fields))
    else:
        table = Table(title=f"SIGSTRUCT {args.file}")
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for name, value in fields.items():
            table.add_row(name, _text(value, name))
        Console().print(table)
    if not fields["signature_valid"]:
        print(f"vsgx sigstruct: {args.file}: the signature does not verify (EINIT would "
              "return SGX_INVALID_SIGNATURE)", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = sub.add_parser("keygen", help="create an RSA-3072 (e=3) enclave signing key",
                            description="Write a new enclave signing key (PKCS#8 PEM, mode "
                                        "0600); an existing file is never overwritten.")
    keygen.add_argument("key", metavar="KEY.pem")
    keygen.set_defaults(func=guarded(cmd_keygen))
    sig = sub.add_parser("sigstruct", help="print and verify a SIGSTRUCT",
                         description="Print every field of a 1808-byte SIGSTRUCT and verify "
                                     "its signature as EINIT does (exit 1 if it fails).")
    sig.add_argument("--json", action="store_true",
                     help="one JSON object keyed by the SDM field names in lower case")
    sig.add_argument("file", metavar="FILE")
    sig.set_defaults(func=guarded(cmd_sigstruct))


Command = Callable[[argparse.Namespace], int]


def guarded(command: Command) -> Command:
    """``command`` with its :class:`CliError` printed as one line, exit status 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = command(args)
        except CliError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        return code
    return run
