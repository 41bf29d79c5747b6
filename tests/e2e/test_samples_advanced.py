"""The advanced SDK samples (examples/exception, examples/threads, examples/sgx2) end to end:
each sample's ``run()`` on a guest machine, then the behaviour each one demonstrates checked
more closely: the fault an in-enclave handler declines, concurrent ecalls on several TCSs,
SGX2 pages added at run time, and SGX2 missing from the CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest
from sgx_user import MACHINE, machine, signing_key

import vsgx
from vsgx.arch import PAGE_SIZE, Pfec, Vector
from vsgx.guest import Process
from vsgx.sdk import Enclave, EnclaveConfig, EnclaveFault, OcallContext
from vsgx.sdk.sample import CheckFailed, load_sample

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMP2 = [*MACHINE[:4], "-smp", "2", *MACHINE[4:]]
U64 = (1 << 64) - 1


def sample(name: str) -> ModuleType:
    """examples/NAME/app.py imported as a module (as ``vsgx demo`` does)."""
    return load_sample(EXAMPLES / name / "app.py")


@pytest.fixture(scope="module")
def vm() -> Iterator[vsgx.Machine]:
    started = machine(SMP2)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def proc(vm: vsgx.Machine) -> Iterator[Process]:
    process = vm.guest.spawn()
    yield process
    process.exit()


def load(proc: Process, name: str, *, config: EnclaveConfig | None = None,
         ocalls: Mapping[str, Callable[..., int | None]] | None = None) -> Enclave:
    return Enclave.load(proc, EXAMPLES / name / "enclave.elf", key=signing_key(),
                        config=config, ocalls=ocalls)


def test_sample_modules_follow_the_demo_contract() -> None:
    for name in ("exception", "threads", "sgx2"):
        module = sample(name)
        assert module.__doc__ and module.__doc__.splitlines()[0].strip()
        assert callable(module.run)
        assert (EXAMPLES / name / "enclave.elf").is_file()


# -- exception --------------------------------------------------------------------------------

def test_exception_sample(proc: Process) -> None:
    rows = sample("exception").run(proc, signing_key())
    assert [what for what, _ in rows] == [
        "handler registered", "#UD from ud2", "#DE from div by zero", "#PF on a guard page",
        "handled inside", "#PF the handler declines", "int3 (declined)", "after the faults"]
    assert dict(rows)["handled inside"] == "#UD x1, #DE x1, #PF x1"


def test_a_declined_exception_reaches_the_caller_and_the_enclave_stays_usable(
        proc: Process) -> None:
    with load(proc, "exception") as enclave:
        # No handler registered yet: the ud2 is the caller's problem.
        with pytest.raises(EnclaveFault) as info:
            enclave.ecall("undefined_opcode")
        assert info.value.vector == Vector.UD
        assert enclave.ecall("init") == 0
        assert enclave.ecall("undefined_opcode") == 2

        guard = enclave.base + enclave.image.layout.heap[0] - PAGE_SIZE
        assert enclave.ecall("guard_address") == guard
        with pytest.raises(EnclaveFault) as info:
            enclave.ecall("read_anywhere", guard + 0x10)
        fault = info.value
        # The caller learns the page only (an AEX reports CR2 without its low 12 bits) ...
        assert (fault.vector, fault.address) == (Vector.PF, guard)
        assert fault.error_code & (Pfec.P | Pfec.W | Pfec.U) == Pfec.U  # a read, not present
        assert "#PF" in str(fault) and f"{guard:#x}" in str(fault)

        # ... the handler inside gets the exact address from EXINFO.MADDR.
        assert enclave.ecall("read_guard", 0x18) == U64
        assert enclave.ecall("last_fault") == guard + 0x18
        assert enclave.ecall("last_fault_error_code") == fault.error_code

        with pytest.raises(EnclaveFault) as info:
            enclave.ecall("breakpoint")
        assert info.value.vector == Vector.BP
        # The TCS is clean again: ecalls work and the handler still runs.
        assert enclave.ecall("divide", 7, 0) == U64
        assert enclave.ecall("divide", 1 << 40, 1 << 20) == 1 << 20
        assert [enclave.ecall("handled_count", v) for v in (Vector.DE, Vector.UD, Vector.PF)] \
            == [1, 1, 1]


# -- threads ----------------------------------------------------------------------------------

def test_threads_sample(proc: Process) -> None:
    rows = sample("threads").run(proc, signing_key())
    assert [what for what, _ in rows] == [
        "TCSs", "8 threads hash 24 KiB each", "combined result",
        "8 callers, 200 ms inside each"]
    assert "at most 4 inside at once" in rows[-1][1]


def test_concurrent_ecalls_give_correct_results(proc: Process) -> None:
    app = sample("threads")
    buffers = [os.urandom(1000 + 37 * i) for i in range(24)]
    with load(proc, "threads") as enclave:
        digests = app.concurrently(
            lambda k: [enclave.ecall("digest", buffers[j], len(buffers[j]))
                       for j in range(k, len(buffers), 4)], 4)
        for k, got in enumerate(digests):
            assert got == [app.fnv1a(buffers[j]) for j in range(k, len(buffers), 4)]
        assert enclave.ecall("total", 0) == sum(app.fnv1a(b) for b in buffers) & U64
        assert enclave.ecall("total", 1) == sum(map(len, buffers))
        assert enclave.ecall("total", 2) == len(buffers)


def test_callers_beyond_the_tcs_count_wait_for_a_free_tcs(proc: Process) -> None:
    app = sample("threads")
    occupancy = app.Occupancy()
    enclave = load(proc, "threads", ocalls={"sleep": occupancy})
    config = enclave.image.config.with_changes(tcs_count=2)
    enclave.close()
    with load(proc, "threads", config=config, ocalls={"sleep": occupancy}) as enclave:
        started = time.monotonic()
        indexes = app.concurrently(lambda i: enclave.ecall("occupy", 150), 5)
        elapsed = time.monotonic() - started
        assert sorted(indexes) == [0, 0, 0, 1, 1] or sorted(indexes) == [0, 0, 1, 1, 1]
        assert occupancy.most == 2 and occupancy.inside == 0
        assert elapsed >= 3 * 0.150  # three waves of at most two
        assert enclave.ecall("total", 2) == 5


# -- sgx2 -------------------------------------------------------------------------------------

def test_sgx2_sample(proc: Process) -> None:
    rows = sample("sgx2").run(proc, signing_key())
    assert [what for what, _ in rows] == [
        "dynamic range", "EAUG + EACCEPT of 16 pages", "EACCEPT again", "new pages",
        "write a pattern, read it back", "EMODPE +X on a new page", "MODIFY_TYPES to TRIM",
        "REMOVE_PAGES before EACCEPT", "EACCEPT TRIM | MODIFIED", "REMOVE_PAGES",
        "touch the removed pages", "RESTRICT_PERMISSIONS RW -> R", "EACCEPT R | PR",
        "write to the read-only page"]
    outcome = dict(rows)
    assert outcome["REMOVE_PAGES before EACCEPT"].startswith("EPERM")
    assert outcome["touch the removed pages"].startswith("EAUG again + EACCEPT: all zero")
    assert outcome["write to the read-only page"].startswith("#PF, error code 0x8007")


def test_the_sgx2_sample_checks_each_step(proc: Process, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that removed pages the enclave never accepted would fail the sample."""
    app = sample("sgx2")
    monkeypatch.setattr(Enclave, "remove_pages", lambda self, offset, length: length)
    with pytest.raises(CheckFailed, match="REMOVE_PAGES of unaccepted pages gave errno 0"):
        app.run(proc, signing_key())


def xorshift_pattern(seed: int, size: int) -> bytes:
    x, out = seed | 1, bytearray(size)
    for i in range(size):
        x ^= (x << 13) & U64
        x ^= x >> 7
        x ^= (x << 17) & U64
        out[i] = x & 0xFF
    return bytes(out)


def test_eaug_pages_are_zero_filled_and_usable(proc: Process) -> None:
    with load(proc, "sgx2") as enclave:
        start, size = enclave.ecall("dynamic_range", 0), enclave.ecall("dynamic_range", 1)
        pages = size // PAGE_SIZE
        assert enclave.ecall("accept", 0, pages) == pages  # the whole range
        assert enclave.ecall("nonzero", pages) == 0
        written = enclave.ecall("fill", 4, 99)
        assert enclave.ecall("checksum", 4) == written
        # A debug enclave: the untrusted side reads the new pages with EDBGRD.
        assert proc.read_memory(start, 4 * PAGE_SIZE) == xorshift_pattern(99, 4 * PAGE_SIZE)
        assert enclave.ecall("accept", pages - 1, 2) == 0  # beyond the range: refused


def test_a_pending_page_is_unusable_until_accepted(proc: Process) -> None:
    with load(proc, "sgx2") as enclave:
        start = enclave.ecall("dynamic_range", 0)
        with pytest.raises(EnclaveFault) as info:
            enclave.ecall("nonzero", 1)  # EAUG'd on the fault, then still PENDING
        fault = info.value
        assert fault.vector == Vector.PF and fault.address == start
        assert fault.error_code & Pfec.SGX
        assert enclave.ecall("accept", 0, 1) == 1
        assert enclave.ecall("nonzero", 1) == 0


def test_without_sgx2_eaccept_is_a_general_protection_fault() -> None:
    vm = machine(MACHINE, cpu="host,-sgx2")
    try:
        proc = vm.guest.spawn()
        with load(proc, "sgx2") as enclave:
            with pytest.raises(EnclaveFault) as info:
                enclave.ecall("accept", 0, 1)
            assert info.value.vector == Vector.GP and info.value.error_code == 0
            assert "#GP" in str(info.value)
            # Touching the range: no EAUG without SGX2, the kernel cannot map it.
            with pytest.raises(EnclaveFault) as info:
                enclave.ecall("nonzero", 1)
            assert info.value.vector == Vector.PF
            assert not info.value.error_code & Pfec.SGX
            assert enclave.ecall("dynamic_range", 1) == 1 << 20  # still usable
    finally:
        vm.stop()


def test_the_emodpe_code_page_needs_the_mprotect_ocall(proc: Process) -> None:
    def refuse(ctx: OcallContext, *args: int) -> int:
        return 1

    with load(proc, "sgx2", ocalls={"mprotect": refuse}) as enclave:
        assert enclave.ecall("accept", 3, 1) == 1
        assert enclave.ecall("make_code", 3, 5) == U64 - 1
