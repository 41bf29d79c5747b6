"""The ``vsgx`` command line: version, usage, reading the script (file or stdin), output form,
and one-line errors with exit code 2.

Most checks call :func:`vsgx.cli.main` in-process (``vsgx isa`` pays a second of imports per
process); a few run the installed console script to cover the real entry point.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vsgx import __version__
from vsgx.cli import main

SCRIPT = {"platform": {"epc": "64K"}, "ops": [
    {"op": "EPA", "epc": 0}, {"op": "EPA", "epc": 0}, {"op": "RDMSR", "msr": 0x3A}]}


def vsgx(*args: str, stdin: str | bytes | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed command the way a user does (``python -m vsgx.cli`` if it is not
    next to the interpreter)."""
    exe = Path(sys.executable).with_name("vsgx")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vsgx.cli"]
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([*cmd, *args], input=data, capture_output=True, timeout=120,
                          check=False, env=env,
                          **({} if data is not None else {"stdin": subprocess.DEVNULL}))
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                       proc.stderr.decode())


def run_main(args: list[str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main(args)
    except SystemExit as exc:           # argparse's own exits (--version, usage errors)
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, out: str, err: str, message: str) -> None:
    assert code == 2
    assert out == ""
    assert err == f"vsgx isa: {message}\n"
    assert "Traceback" not in err


# -- through the installed console script -----------------------------------------------------


def test_version() -> None:
    proc = vsgx("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"vsgx {__version__}\n"


def test_python_dash_m_matches_the_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "vsgx.cli", "--version"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout) == (0, f"vsgx {__version__}\n")


def test_no_command_prints_usage_and_exits_2() -> None:
    proc = vsgx()
    assert proc.returncode == 2
    assert "usage: vsgx" in proc.stdout + proc.stderr
    assert "isa" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_dash_reads_stdin_and_compact_prints_one_line() -> None:
    proc = vsgx("isa", "--compact", "-", stdin=json.dumps(SCRIPT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1
    results = json.loads(proc.stdout)
    assert [r["op"] for r in results] == ["EPA", "EPA", "RDMSR"]
    assert results[0]["status"] == "SGX_SUCCESS"
    assert results[1]["fault"]["vector"] == "PF"             # a fault is a result, not an error
    assert results[2]["value"] == 0x60001


def test_unreadable_script_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    proc = vsgx("isa", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"vsgx isa: cannot read {path}: No such file or directory\n"


# -- in-process -------------------------------------------------------------------------------


def test_version_in_process(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_main(["--version"], capsys, monkeypatch) == (0, f"vsgx {__version__}\n", "")


def test_no_command_in_process(capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_main([], capsys, monkeypatch)
    assert code == 2
    assert "usage: vsgx" in out + err


def test_isa_without_script_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_main(["isa"], capsys, monkeypatch)
    assert code == 2
    assert out == ""
    assert "usage: vsgx isa" in err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_main(["nosuch", "x.json"], capsys, monkeypatch)
    assert code == 2
    assert "invalid choice" in err


def test_missing_script_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nope.json"
    assert_one_line_error(*run_main(["isa", str(path)], capsys, monkeypatch),
                          f"cannot read {path}: No such file or directory")


def test_script_path_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(*run_main(["isa", str(tmp_path)], capsys, monkeypatch),
                          f"cannot read {tmp_path}: Is a directory")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_script_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(SCRIPT))
    path.chmod(0)
    assert_one_line_error(*run_main(["isa", str(path)], capsys, monkeypatch),
                          f"cannot read {path}: Permission denied")


def test_script_file_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"ops": [], "platform": {"seed": "\xe9t\xe9"}}')
    assert_one_line_error(*run_main(["isa", str(path)], capsys, monkeypatch),
                          f"{path} is not UTF-8 text")


def test_stdin_and_file_give_the_same_output(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(SCRIPT))
    from_file = run_main(["isa", str(path)], capsys, monkeypatch)
    from_stdin = run_main(["isa", "-"], capsys, monkeypatch, stdin=json.dumps(SCRIPT))
    assert from_file == from_stdin
    assert from_file[0] == 0 and from_file[2] == ""


def test_default_output_is_indented_json(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_main(["isa", "-"], capsys, monkeypatch, stdin=json.dumps(SCRIPT))
    assert code == 0
    assert out.startswith("[\n  {\n")
    compact = run_main(["isa", "--compact", "-"], capsys, monkeypatch,
                       stdin=json.dumps(SCRIPT))[1]
    assert compact.count("\n") == 1
    assert json.loads(compact) == json.loads(out)


def test_malformed_script_on_stdin(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(*run_main(["isa", "-"], capsys, monkeypatch,
                                    stdin='{"ops": [{"op": "EPA"}]}'),
                          "ops[0].epc: missing")


def test_empty_stdin(capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(*run_main(["isa", "-"], capsys, monkeypatch, stdin=""),
                          "not valid JSON: Expecting value at line 1 column 1")


def test_compact_flag_position(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(SCRIPT))
    before = run_main(["isa", "--compact", str(path)], capsys, monkeypatch)
    after = run_main(["isa", str(path), "--compact"], capsys, monkeypatch)
    assert before == after
    assert before[1].count("\n") == 1


def test_stdin_not_utf8() -> None:
    # UTF-8 mode makes sys.stdin decode with errors="surrogateescape"; the CLI must still
    # notice that the bytes are not UTF-8.
    proc = vsgx("isa", "-", stdin=b'{"ops": [], "platform": {"seed": "\xe9t\xe9"}}',
                env={**os.environ, "PYTHONUTF8": "1"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "vsgx isa: - is not UTF-8 text\n"


@pytest.mark.parametrize(("script", "escaped"), [
    ({"ops": [{"op": "E\nADD"}]}, "unknown op 'E\\nADD'"),
    ({"ops": [{"op": "EPA", "epc": 0, "a\nb": 1}]}, "ops[0].a\\nb: not an operand of EPA"),
    ({"ops": [], "x\ry": 1}, "x\\ry: unknown top-level key"),
    ({"platform": {"epc": "7\nX"}, "ops": []}, "platform.epc: invalid size '7\\nX'"),
    ({"ops": [{"op": "ECREATE", "epc": 0, "secs": {"a\u2028b": 1}}]}, "ops[0].secs.a\\u2028b"),
], ids=["op-name", "operand-key", "top-level-key", "epc-size", "struct-field"])
def test_control_characters_from_the_script_stay_on_one_line(
        script: dict[str, object], escaped: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_main(["isa", "-"], capsys, monkeypatch, stdin=json.dumps(script))
    assert code == 2
    assert out == ""
    assert err.startswith("vsgx isa: ") and err.endswith("\n")
    assert len(err.splitlines()) == 1
    assert escaped in err
