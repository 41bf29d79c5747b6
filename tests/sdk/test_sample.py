"""vsgx.sdk.sample: what the sample programs share."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vsgx.sdk.sample import CheckFailed, check, load_sample, main


def test_check() -> None:
    check(True, "fine")
    with pytest.raises(CheckFailed, match="went wrong"):
        check(False, "went wrong")


def test_main_outside_vsgx_run_says_how_to_run_it() -> None:
    with pytest.raises(SystemExit, match=r"vsgx run <machine options> -- app\.py"):
        main(lambda proc, key: [], {}, "app.py")


def test_main_prints_aligned_rows(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Any] = []

    def run(proc: Any, key: Any) -> list[tuple[str, str]]:
        seen.append(proc)
        return [("short", "one"), ("a longer check", "two")]

    vm = SimpleNamespace(guest=SimpleNamespace(spawn=lambda: "process"))
    main(run, {"vm": vm}, "app.py")
    assert seen == ["process"]
    assert capsys.readouterr().out == "short           one\na longer check  two\n"


def test_load_sample(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no sample program"):
        load_sample(tmp_path / "none" / "app.py")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "app.py").write_text('"""Mine."""\nVALUE = 7\n')
    module = load_sample(tmp_path / "mine" / "app.py")
    assert module.VALUE == 7 and module.__doc__ == "Mine."
