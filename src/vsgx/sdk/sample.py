"""What the sample programs (``examples/*/app.py``) share: a check that fails loudly, running
a sample as a ``vsgx run`` program, and importing one as a module (as ``vsgx demo`` does).

A sample module has a docstring whose first line is its title and a ``run(process, key)``
returning rows of (what was checked, how it came out), raising :class:`CheckFailed` when an
outcome is not the expected one.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vsgx.crypto import generate_signing_key
from vsgx.guest import Process

Rows = list[tuple[str, str]]
SampleRun = Callable[[Process, RSAPrivateKey], Rows]


class CheckFailed(Exception):
    """A step of a sample did not give the expected result."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def main(run: SampleRun, namespace: Mapping[str, Any], program: str) -> None:
    """The ``__main__`` part of a sample: under ``vsgx run … -- PROGRAM.py`` the started
    machine is the global ``vm``; run the sample in a new guest process with a throwaway
    signing key and print its rows."""
    machine = namespace.get("vm")
    if machine is None:
        sys.exit(f"run this sample on a machine: vsgx run <machine options> -- {program}")
    rows = run(machine.guest.spawn(), generate_signing_key())
    width = max((len(what) for what, _ in rows), default=0)
    for what, outcome in rows:
        print(f"{what:{width}}  {outcome}")


def load_sample(path: str | Path) -> ModuleType:
    """The sample program at ``path`` imported as a module (its ``run`` not yet called)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"vsgx_sample_{path.parent.name}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no sample program at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
