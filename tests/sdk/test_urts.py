"""The untrusted and trusted runtimes together, on a started machine: ecalls by name and
index, argument passing, buffers, ocalls and their failures, nested calls, faults, the heap,
relocation, and the loader's errors (EINIT's cause named, nothing left behind)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sgx_user import signing_key

import vsgx
from vsgx.arch import Pfec, Vector
from vsgx.sdk import (
    EcallError,
    Enclave,
    EnclaveError,
    EnclaveFault,
    EnclaveImage,
    EnclaveLost,
    ImageError,
    LoadError,
    OcallContext,
    OcallError,
)
from vsgx.sdk.abi import Status


@pytest.fixture(scope="module")
def enclave(vm: vsgx.Machine, basic_elf: Path) -> Iterator[Enclave]:
    proc = vm.guest.spawn()
    with Enclave.load(proc, basic_elf, key=signing_key()) as loaded:
        yield loaded


def test_ecalls_by_name_and_index(enclave: Enclave) -> None:
    assert enclave.ecall("add", 40, 2) == 42
    assert enclave.ecall(enclave.ecalls.index("add"), 1, 2) == 3
    assert enclave.ecall("sum6", 1, 1, 1, 1, 1, 1) == 21
    assert enclave.ecall("add", -1, 0) == (1 << 64) - 1


def test_pointer_tables_are_relocated(enclave: Enclave) -> None:
    assert [enclave.ecall("word_length", i) for i in range(3)] == [5, 2, 5]
    assert enclave.base <= enclave.ecall("self_address") < enclave.base + enclave.image.layout.size


def test_buffers_are_copied_in_and_bytearrays_back(enclave: Enclave) -> None:
    buf = bytearray(b"enclave")
    assert enclave.ecall("reverse", buf, len(buf)) == 0
    assert buf == b"evalcne"
    frozen = b"abc"
    assert enclave.ecall("reverse", frozen, 3) == 0 and frozen == b"abc"


def test_the_runtime_refuses_enclave_pointers_as_untrusted_input(enclave: Enclave) -> None:
    assert enclave.ecall("copy_in", enclave.base + 0x100, 8) == 0x10  # INVALID_PARAMETER
    assert enclave.ecall("copy_in", enclave.base - 4, 8) == 0x10  # straddles the start
    assert enclave.ecall("copy_in", b"12345678", 8) == 0


def test_ocall_result_flows_back(enclave: Enclave) -> None:
    seen: list[tuple[str, int]] = []

    def twice(ctx: OcallContext, x: int, *rest: int) -> int:
        seen.append((ctx.name, x))
        return 2 * x

    enclave.register_ocall("twice", twice)
    assert enclave.ecall("call_out", 21) == 43
    assert seen == [("twice", 21)]


def test_ocall_reads_untrusted_scratch(enclave: Enclave) -> None:
    texts: list[bytes] = []
    enclave.register_ocall("show", lambda ctx, addr, n, *_: texts.append(ctx.read(addr, n)))
    assert enclave.ecall("say") == 0
    assert texts == [b"from inside"]


def test_unknown_ocall_fails_in_the_enclave_and_raises_after(enclave: Enclave) -> None:
    with pytest.raises(OcallError, match="no-such-ocall"):
        enclave.ecall("call_unknown")
    assert enclave.ecall("add", 1, 1) == 2


def test_ocall_exception_is_the_cause(enclave: Enclave) -> None:
    def broken(ctx: OcallContext, *args: int) -> int:
        raise RuntimeError("host side broke")

    enclave.register_ocall("twice", broken)
    with pytest.raises(OcallError) as info:
        enclave.ecall("call_out", 1)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_nested_ecall_from_an_ocall_uses_another_tcs(enclave: Enclave) -> None:
    enclave.register_ocall("nested", lambda ctx, x, *_: enclave.ecall("thread_index") + x)
    outer_and_inner = enclave.ecall("reenter", 100)
    assert outer_and_inner in (100, 101)


def test_unhandled_fault_reports_the_exception_and_keeps_the_tcs(enclave: Enclave) -> None:
    guard = enclave.base + enclave.image.layout.heap[0] - 4096  # the guard below the heap
    with pytest.raises(EnclaveFault) as info:
        enclave.ecall("read_at", guard)
    assert info.value.vector == Vector.PF
    assert info.value.address == guard
    assert not info.value.error_code & Pfec.SGX
    for _ in range(enclave.image.config.tcs_count + 1):
        assert enclave.ecall("add", 2, 2) == 4


def test_heap_allocates_frees_and_coalesces(enclave: Enclave) -> None:
    assert enclave.ecall("heap", 1000) == sum(range(1, 16, 2))


def test_mrenclave_from_ereport_equals_the_measurement(enclave: Enclave, basic_elf: Path) -> None:
    out = bytearray(32)
    assert enclave.ecall("mrenclave", out) == 0
    assert bytes(out) == enclave.mrenclave == EnclaveImage.load(basic_elf).measure()


def test_argument_errors(enclave: Enclave) -> None:
    with pytest.raises(EnclaveError, match="no ecall named 'nope'"):
        enclave.ecall("nope")
    with pytest.raises(EnclaveError, match="no ecall 99"):
        enclave.ecall(99)
    with pytest.raises(TypeError, match="at most 6"):
        enclave.ecall("add", *range(7))
    with pytest.raises(TypeError, match="argument 0"):
        enclave.ecall("add", 1.5, 2)  # type: ignore[arg-type]


def test_two_threads_at_once(enclave: Enclave) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.extend(enclave.ecall("add", i, i) for i in range(20))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == sorted(2 * i for i in range(20) for _ in range(3))


def test_status_names() -> None:
    assert "INVALID_FUNCTION" in str(EcallError("f", Status.INVALID_FUNCTION))


def test_layout_signed_for_one_configuration_fails_einit_under_another(
        vm: vsgx.Machine, basic_elf: Path) -> None:
    image = EnclaveImage.load(basic_elf)
    sig = image.sign(signing_key())
    proc = vm.guest.spawn()
    other = image.config.with_changes(heap_size="512K")
    with pytest.raises(LoadError, match="SGX_INVALID_MEASUREMENT") as info:
        Enclave.load(proc, basic_elf, sigstruct=sig, config=other)
    assert info.value.reason == "SGX_INVALID_MEASUREMENT"
    assert proc.fget(0) is None  # the descriptor was closed
    with Enclave.load(proc, basic_elf, sigstruct=sig) as ok:
        assert ok.ecall("add", 1, 2) == 3


def test_attribute_mismatch_is_named(vm: vsgx.Machine, basic_elf: Path) -> None:
    image = EnclaveImage.load(basic_elf)
    production = EnclaveImage.load(basic_elf, image.config.with_changes(debug=False))
    sig = production.sign(signing_key())
    with pytest.raises(LoadError, match="SGX_INVALID_ATTRIBUTE"):
        Enclave.load(vm.guest.spawn(), basic_elf, sigstruct=sig)


def test_missing_sigstruct_is_explained(vm: vsgx.Machine, basic_elf: Path) -> None:
    with pytest.raises(ImageError, match=r"no SIGSTRUCT .*vsgx sign"):
        Enclave.load(vm.guest.spawn(), basic_elf)


def test_no_sgx_enclave_device_without_launch_control(basic_elf: Path) -> None:
    from sgx_user import machine

    with machine(cpu="host,-sgxlc") as vm:
        with pytest.raises(LoadError, match="/dev/sgx_enclave does not exist"):
            Enclave.load(vm.guest.spawn(), basic_elf, key=signing_key())


def test_closed_enclave_refuses_calls(vm: vsgx.Machine, basic_elf: Path) -> None:
    e = Enclave.load(vm.guest.spawn(), basic_elf, key=signing_key())
    e.close()
    with pytest.raises(EnclaveError, match="closed"):
        e.ecall("add", 1, 2)
    e.close()  # idempotent


def test_enclave_lost_after_reset_is_rebuilt(basic_elf: Path) -> None:
    from sgx_user import machine

    with machine() as vm:
        proc = vm.guest.spawn()
        kept = Enclave.load(proc, basic_elf, key=signing_key())
        given_up = Enclave.load(proc, basic_elf, key=signing_key(), recover=False)
        assert kept.ecall("add", 1, 2) == 3
        vm.system_reset()  # the virtual EPC is reset: every enclave's pages are gone
        with pytest.raises(EnclaveLost, match="rebuilt with the same MRENCLAVE") as info:
            kept.ecall("add", 1, 2)
        assert info.value.recreated and kept.generation == 1
        out = bytearray(32)
        assert kept.ecall("mrenclave", out) == 0 and bytes(out) == kept.mrenclave
        with pytest.raises(EnclaveLost) as info:
            given_up.ecall("add", 1, 2)
        assert not info.value.recreated


def test_a_reset_during_an_ecall_is_seen_by_the_thread_not_a_hang(basic_elf: Path) -> None:
    from sgx_user import machine

    with machine() as vm:
        enclave = Enclave.load(vm.guest.spawn(), basic_elf, key=signing_key())
        outcome: list[BaseException | int] = []

        def spin() -> None:
            try:
                outcome.append(enclave.ecall("spin_until", bytearray(8)))  # never set
            except BaseException as exc:  # reported below
                outcome.append(exc)

        cpus = vm.guest.cpus
        assert cpus is not None
        worker = threading.Thread(target=spin)
        worker.start()
        while not cpus.busy:  # until the worker is inside the vDSO call
            threading.Event().wait(0.001)
        vm.system_reset()  # the vCPU is taken back (an AEX), the EPC emptied, the guest rebooted
        worker.join(timeout=30)
        assert not worker.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], EnclaveLost)
        assert enclave.ecall("add", 2, 3) == 5  # rebuilt
