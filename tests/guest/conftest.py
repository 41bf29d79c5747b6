"""Fixtures for the guest process and SGX-driver tests: a started standard machine (see
``sgx_user.MACHINE``), a process with a scratch buffer on it, and an enclave builder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sgx_user import EnclaveBuilder, User, machine

import vsgx
import vsgx.guest


@pytest.fixture
def vm() -> Iterator[vsgx.Machine]:
    with machine() as started:
        yield started


@pytest.fixture
def user(vm: vsgx.Machine) -> User:
    return User(vm.guest.spawn())


@pytest.fixture
def builder(user: User) -> EnclaveBuilder:
    return EnclaveBuilder(user)


@pytest.fixture
def proc(vm: vsgx.Machine) -> vsgx.guest.Process:
    return vm.guest.spawn()
