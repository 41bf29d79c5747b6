"""Fixtures for the SDK tests: the test enclave (``enclaves/basic.c``) built once per run with
the system compiler, and a started machine per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sgx_user import machine

import vsgx
from vsgx.sdk import EnclaveConfig, build

ENCLAVES = Path(__file__).resolve().parent / "enclaves"


@pytest.fixture(scope="session")
def basic_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``enclaves/basic.c`` built with its ``basic.toml``."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: the SDK tests build their enclave")
    config = EnclaveConfig.from_toml((ENCLAVES / "basic.toml").read_text())
    return build([ENCLAVES / "basic.c"], tmp_path_factory.mktemp("enclaves") / "basic.elf",
                 config)


@pytest.fixture(scope="module")
def vm() -> Iterator[vsgx.Machine]:
    with machine() as started:
        yield started
