"""The QMP case table against the real thing: every case of ``qmp_cases.py`` is replayed on
``qemu-system-x86_64 -machine none -qmp stdio`` (Debian ``qemu-system-x86``, QEMU 7.2), and
QEMU's replies must be the recorded ones, byte for byte (event timestamps aside). The same
table drives vsgx's own session in ``test_monitor_protocol.py``, so vsgx and QEMU agree.

The greeting is checked for shape only: QEMU reports its own micro version and package.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading

import pytest
from qmp_cases import CASES, Case, normalise

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(
    QEMU is None, reason="qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")

SYNC = b'{"execute":"query-name","id":"vsgx-oracle-sync"}\n'
TIMEOUT = 20.0


def converse(sent: bytes, negotiated: bool) -> tuple[str, list[str]]:
    """Start QEMU, optionally negotiate, send ``sent`` and then a sync request; return the
    greeting and every line QEMU wrote before the reply to the sync request (or before it
    exited)."""
    assert QEMU is not None
    process = subprocess.Popen(
        [QEMU, "-machine", "none", "-display", "none", "-nodefaults", "-qmp", "stdio"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdin is not None and process.stdout is not None
    prologue = b'{"execute":"qmp_capabilities"}\n' if negotiated else b""

    def write() -> None:
        assert process.stdin is not None
        try:
            process.stdin.write(prologue + sent + SYNC)
            process.stdin.flush()
        except BrokenPipeError:  # QEMU quit before reading everything
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    try:
        lines = []
        for raw in process.stdout:
            assert raw.endswith(b"\r\n"), raw
            line = raw[:-2].decode("ascii")
            if '"id": "vsgx-oracle-sync"' in line:
                break
            lines.append(line)
    finally:
        timer.cancel()
        process.kill()
        process.wait()
        writer.join()
        with contextlib.suppress(OSError):
            process.stdin.close()
        process.stdout.close()
    greeting = lines.pop(0)
    if negotiated:
        assert lines.pop(0) == '{"return": {}}'
    return greeting, lines


def test_greeting_shape() -> None:
    greeting, _ = converse(b"", negotiated=False)
    assert greeting.startswith('{"QMP": {"version": {"qemu": {"micro": ')
    assert greeting.endswith('}, "capabilities": ["oob"]}}')
    assert json.loads(greeting)["QMP"]["version"]["qemu"]["major"] == 7


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_matches_qemu(case: Case) -> None:
    _, lines = converse(case.sent, case.negotiated)
    assert [normalise(line) for line in lines] == list(case.replies)
