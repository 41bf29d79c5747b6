"""Fixtures for the execution-engine tests: a fresh started VM (:class:`Platform`) and an empty
page table per test. Helpers and the standard enclave layout live in ``engine_harness``."""

from __future__ import annotations

import pytest
from engine_harness import PageTable, Platform


@pytest.fixture
def plat() -> Platform:
    return Platform()


@pytest.fixture
def table() -> PageTable:
    return PageTable()
