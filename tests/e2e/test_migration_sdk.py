"""The SDK across a migration and a reset (issue 6): ``Enclave.migrated`` follows the guest
process to the destination machine, the next ecall finds the EPC gone and rebuilds the enclave
(same MRENCLAVE), and sealed data follows the host's fused keys: it does not unseal on another
host, and still unseals on the same host (after a reset, or in another VM of that host)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sgx_user import MACHINE, signing_key

import vsgx
from vsgx.cli.demo import examples_dir, load_sample
from vsgx.guest import Process
from vsgx.platform.host import open_host
from vsgx.sdk import Enclave, EnclaveError, EnclaveLost

SEALING = load_sample("sealing")
ELF = examples_dir() / "sealing" / "enclave.elf"
SECRET = SEALING.SECRET
MRENCLAVE, MRSIGNER = SEALING.KEYPOLICY_MRENCLAVE, SEALING.KEYPOLICY_MRSIGNER
SUCCESS, MAC_MISMATCH = SEALING.SUCCESS, SEALING.ERROR_MAC_MISMATCH


@pytest.fixture
def build() -> Iterator[Callable[..., vsgx.Machine]]:
    """``build(host, incoming=False)``: a started machine on the throwaway host ``host``,
    waiting for an incoming migration (``-incoming defer``) when ``incoming``."""
    made: list[vsgx.Machine] = []

    def make(host: str, incoming: bool = False) -> vsgx.Machine:
        argv = [*MACHINE, "-incoming", "defer"] if incoming else list(MACHINE)
        vm = vsgx.Machine.from_args(argv, host=open_host(host, persist=False))
        assert isinstance(vm, vsgx.Machine)
        made.append(vm)
        vm.start()
        return vm

    yield make
    for vm in made:
        vm.close()


def unseal(enclave: Enclave, blob: bytes) -> int:
    status, text = SEALING.unseal(enclave, blob, len(SECRET))
    assert status != SUCCESS or text == SECRET
    return int(status)


def loaded(proc: Process, *, recover: bool = True) -> Enclave:
    return Enclave.load(proc, ELF, key=signing_key(), recover=recover)


def test_migration_to_another_host_loses_the_enclave_and_its_seal_keys(
        build: Callable[..., vsgx.Machine]) -> None:
    src, dst = build("mig-a"), build("mig-b", incoming=True)
    proc = src.guest.spawn()
    assert src.guest.epc is not None
    free_at_boot = src.guest.epc.nr_free_pages
    enclave, given_up = loaded(proc), loaded(proc, recover=False)
    by_enclave = SEALING.seal(enclave, MRENCLAVE, SECRET)
    by_signer = SEALING.seal(enclave, MRSIGNER, SECRET)
    assert unseal(enclave, by_enclave) == SUCCESS
    mrenclave, base, fd = enclave.mrenclave, enclave.base, enclave._current().fd
    free_before = src.guest.epc.nr_free_pages

    src.migrate(dst)
    moved = dst.guest.process(proc.pid)
    assert moved is not proc
    with pytest.raises(ValueError, match="not this enclave's process"):
        enclave.migrated(dst.guest.spawn())
    enclave.migrated(moved)
    given_up.migrated(moved)
    assert enclave.process is moved and enclave.base == base

    with pytest.raises(EnclaveLost, match="rebuilt with the same MRENCLAVE") as info:
        unseal(enclave, by_enclave)
    assert info.value.recreated and enclave.generation == 1
    with pytest.raises(EnclaveLost) as info:
        given_up.ecall("sealed_size", 1)
    assert not info.value.recreated and given_up.generation == 0
    assert enclave.mrenclave == mrenclave
    # the lost enclave was unmapped and its descriptor closed in the destination's process
    # (the rebuilt one got the lowest free descriptor: the same number), so the destination's
    # kernel freed the stale EPC pages it still counted: as many free pages as before
    assert enclave._current().fd == fd and enclave._current().process is moved
    assert dst.guest.epc is not None and dst.guest.epc.nr_free_pages == free_before
    given_up.close()  # munmap + close on the destination also frees its stale EPC pages

    # the recovered enclave works, but host B's fused secrets are not host A's, so no blob
    # sealed on A (either policy) unseals on B: both hosts are icelake-sp, with one CPUSVN,
    # so EGETKEY accepts the blob's KEYREQUEST and B's seal fuses derive another key, which
    # fails the MAC check (VSGX_ERROR_MAC_MISMATCH)
    a, b = src.host.secrets, dst.host.secrets
    assert a.seal_fuses != b.seal_fuses and a.cpusvn == b.cpusvn
    refused = MAC_MISMATCH
    assert unseal(enclave, by_enclave) == refused
    assert unseal(enclave, by_signer) == refused
    again = SEALING.seal(enclave, MRENCLAVE, SECRET)  # re-provisioning on B
    assert unseal(enclave, again) == SUCCESS
    enclave.close()
    assert dst.guest.epc.nr_free_pages == free_at_boot


def test_migration_to_the_same_host_keeps_the_seal_keys(
        build: Callable[..., vsgx.Machine]) -> None:
    src, dst = build("mig-a"), build("mig-a", incoming=True)
    proc = src.guest.spawn()
    enclave = loaded(proc)
    blob = SEALING.seal(enclave, MRENCLAVE, SECRET)
    src.migrate(dst)
    enclave.migrated(dst.guest.process(proc.pid))
    with pytest.raises(EnclaveLost):
        enclave.ecall("sealed_size", 1)
    # EGETKEY's seal key is derived from the host's fused secrets (the same machine here) and
    # the enclave's identity (the same MRENCLAVE), never from the EPC: the blob still unseals
    assert unseal(enclave, blob) == SUCCESS
    enclave.close()


def test_reset_keeps_the_seal_keys(build: Callable[..., vsgx.Machine]) -> None:
    vm = build("mig-a")
    proc = vm.guest.spawn()
    enclave = loaded(proc)
    blob = SEALING.seal(enclave, MRSIGNER, SECRET)
    vm.system_reset()
    with pytest.raises(EnclaveLost) as info:
        unseal(enclave, blob)
    assert info.value.recreated
    assert unseal(enclave, blob) == SUCCESS  # same host, same fused keys
    enclave.close()


def test_migrated_refuses_a_closed_enclave(build: Callable[..., vsgx.Machine]) -> None:
    src, dst = build("mig-a"), build("mig-b", incoming=True)
    proc = src.guest.spawn()
    enclave = loaded(proc)
    enclave.close()
    src.migrate(dst)
    with pytest.raises(EnclaveError, match="closed"):
        enclave.migrated(dst.guest.process(proc.pid))
