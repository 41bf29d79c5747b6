"""The README's set-up commands, and that CI runs exactly the README's test command."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

MAIN_JOB = (
    "python3 -m venv .venv && .venv/bin/pip install . && "
    ".venv/bin/vsgx demo"
)
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/ruff check . && "
    ".venv/bin/mypy && .venv/bin/pytest"
)


def setup_blocks() -> list[str]:
    """The fenced code blocks of the README's "Set up" section."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Set up\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, 'README.md has no "## Set up" section'
    return re.findall(r"^```[a-z]*\n(.*?)^```", section.group(1), re.M | re.S)


def test_setup_has_exactly_the_two_commands() -> None:
    assert setup_blocks() == [MAIN_JOB + "\n", TEST_COMMAND + "\n"]


def test_ci_run_executes_the_readme_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count("<!-- ci:test-command") == 1
    out = subprocess.run(
        ["bash", str(CI_RUN), "--print"], capture_output=True, text=True, check=True,
        stdin=subprocess.DEVNULL,
    )
    assert out.stdout == TEST_COMMAND + "\n"


def test_ci_run_is_strict_bash() -> None:
    lines = CI_RUN.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
