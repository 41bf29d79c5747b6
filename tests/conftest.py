"""Fixtures every test gets: emulated hosts live in a private data directory and are forgotten
after each test, so tests never touch the user's ~/.local/share/vsgx nor share EPC pools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vsgx.platform.host import forget_hosts
from vsgx.platform.machine import VirtualMachine


@pytest.fixture(autouse=True)
def _private_hosts(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    forget_hosts()
    yield data
    forget_hosts()


@pytest.fixture
def machines() -> Iterator[list[VirtualMachine]]:
    """A list the test appends the machines it builds to; all are closed afterwards."""
    made: list[VirtualMachine] = []
    yield made
    for vm in made:
        vm.close()
