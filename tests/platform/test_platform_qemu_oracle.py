"""vsgx's option errors against the real thing: every ``qemu`` case of the malformed table
(``platform_cases.py``) and a few accepted command lines are run through
``qemu-system-x86_64`` (Debian ``qemu-system-x86``, QEMU 7.2), and QEMU's stderr must equal
what :meth:`QemuOptionError.render` prints, hint lines and follow-up lines included.

QEMU runs with ``-S -display none -nodefaults -accel tcg`` so it never boots anything and
needs no KVM; a command line QEMU accepts keeps running, which the accepted-lines test
detects as "still alive after the timeout". Deprecation warnings (QEMU 7.2 prints them for
short-form booleans) are dropped before comparing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
from platform_cases import MALFORMED, Case

from vsgx.platform import QemuOptionError, parse_qemu_args

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(
    QEMU is None, reason="qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")

SANDBOX = ["-S", "-display", "none", "-nodefaults", "-accel", "tcg"]
ORACLE_CASES = [case for case in MALFORMED if case.source == "qemu"]


def run_qemu(args: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str] | None:
    """QEMU's result, or None when it was still running after ``timeout`` (accepted)."""
    assert QEMU is not None
    try:
        return subprocess.run([QEMU, *SANDBOX, *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None


def without_warnings(stderr: str) -> str:
    lines = stderr.splitlines(keepends=True)
    kept: list[str] = []
    skip_next = False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if ": warning: " in line:
            skip_next = line.rstrip().endswith("deprecated")  # followed by "Please use ..."
            continue
        kept.append(line)
    return "".join(kept)


@pytest.mark.parametrize("case", ORACLE_CASES, ids=[case.args for case in ORACLE_CASES])
def test_error_matches_qemu(case: Case) -> None:
    args = shlex.split(case.args)
    with pytest.raises(QemuOptionError) as caught:
        parse_qemu_args(args)
    result = run_qemu(args)
    assert result is not None, "QEMU accepted this command line"
    assert result.returncode == 1
    assert without_warnings(result.stderr) == caught.value.render()


ACCEPTED = [
    "-M pc -m 4G -smp 4 -object memory-backend-ram,id=a,size=1M,prealloc=y,share=on",
    "-machine q35 -m 1024 -smp sockets=2,threads=2 -cpu qemu64,+sgx,sgx-debug=off,-sgxlc",
    "-M pc -m 2G -smp 2 -object memory-backend-ram,size=1G,id=n0 -object "
    "memory-backend-ram,size=1G,id=n1 -numa node,memdev=n0,cpus=0 -numa node,memdev=n1,cpus=1",
    "-m 4G,slots=2,maxmem=8G -object '{\"qom-type\":\"memory-backend-ram\",\"id\":\"x\","
    "\"size\":1048576}' -name guest=vm,,1 -incoming defer",
    "-M pc -M q35 -m 1023k -object memory-backend-ram,id=a,size=1.5M,size=0x200000",
]


@pytest.mark.parametrize("line", ACCEPTED)
def test_accepted_by_both(line: str) -> None:
    parse_qemu_args(shlex.split(line))
    result = run_qemu(shlex.split(line), timeout=2.0)
    assert result is None, result.stderr if result else ""
