"""Hand-assembled enclaves built through ``/dev/sgx_enclave`` and entered through the vDSO
(``process.vdso_sgx_enter_enclave``), end to end on a booted machine: no compiler needed.

Each code fragment is machine code with its assembly alongside. An enclave built by
``EnclaveBuilder.standard()`` has its TCS at offset 0 (OSSA 0x1000, OENTRY 0x2000), an SSA page
at 0x1000, code at 0x2000 (RX), a RW data page at 0x3000 and a read-only page at 0x4000; on
EENTER RBX holds the TCS address, i.e. the enclave base.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator

import pytest
from sgx_user import REG_R, REG_RW, EnclaveBuilder, User, machine, tcs_page

import vsgx
from vsgx.arch import PAGE_SIZE
from vsgx.guest import (
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    SGX_SECINFO_R,
    SGX_SECINFO_REG,
    SGX_SECINFO_TCS,
    SGX_SECINFO_X,
)
from vsgx.guest.vdso import RUN_SIZE

REG_RX = SGX_SECINFO_REG | SGX_SECINFO_R | SGX_SECINFO_X
EENTER, ERESUME, EEXIT = 2, 3, 4

EXIT_TO_RCX = bytes.fromhex(
    "4889cb"        # mov rbx, rcx        ; EEXIT target: the instruction after the vDSO ENCLU
    "b804000000"    # mov eax, 4          ; EEXIT
    "0f01d7")       # enclu
SUM = bytes.fromhex(
    "4889f8"        # mov rax, rdi
    "4801f0"        # add rax, rsi
    "4889c2"        # mov rdx, rax        ; the result goes back in RDX
    ) + EXIT_TO_RCX
STORE_TO_READ_ONLY = bytes.fromhex(
    "8a8300400000"    # mov al, [rbx+0x4000]        ; the read-only page: faulted in, present
    "c683004000002a"  # mov byte [rbx+0x4000], 42   ; and not writable
    ) + EXIT_TO_RCX
LOAD_AND_STORE = bytes.fromhex(
    "488b9300300000"  # mov rdx, [rbx+0x3000]       ; read the data page
    "4889b300300000"  # mov [rbx+0x3000], rsi       ; write RSI there
    ) + EXIT_TO_RCX


def code_page(code: bytes) -> bytes:
    return code + b"\xcc" * (PAGE_SIZE - len(code))


@pytest.fixture
def vm() -> Iterator[vsgx.Machine]:
    with machine() as vm:
        yield vm


Extra = tuple[int, bytes | None, int] | tuple[int, bytes | None, int, int]
"""A page (or ``count`` pages) to add after the TCS, SSA and code: offset, data, SECINFO."""


def enclave(vm: vsgx.Machine, code: bytes, *extra: Extra, size: int = 0x10000,
            standard_map: bool = False) -> tuple[User, EnclaveBuilder]:
    """A fresh process and an initialized, mapped enclave: TCS at 0 (SSA at 0x1000), ``code``
    at 0x2000 (RX), then the ``extra`` pages. Mapped with ``map_standard`` or, by default,
    code RX and the rest RW."""
    user = User(vm.guest.spawn())
    b = EnclaveBuilder(user, size=size).open().create()
    b.add(0, tcs_page(), SGX_SECINFO_TCS)
    b.add(0x1000, None, REG_RW)
    b.add(0x2000, code_page(code), REG_RX)
    for offset, data, secinfo, *count in extra:
        b.add(offset, data, secinfo, count=count[0] if count else 1)
    b.init()
    if standard_map:
        b.map_standard()
    else:
        map_code_and_data(b)
    return user, b


def build(vm: vsgx.Machine, code: bytes) -> tuple[User, EnclaveBuilder]:
    """:func:`enclave` with a RW data page (a known quadword) at 0x3000 and a read-only page
    at 0x4000, mapped as ``map_standard`` does."""
    return enclave(vm, code, (0x3000, struct.pack("<Q", 0x1122334455667788) * 512, REG_RW),
                   (0x4000, None, REG_R), standard_map=True)


def collecting_rdx(user: User, into: list[int]) -> int:
    """A user_handler that records RDX at every exit and returns 0."""
    return user.proc.register_user_handler(
        lambda rdi, rsi, rdx, rsp, r8, r9, run: into.append(rdx) or 0)


def map_code_and_data(b: EnclaveBuilder) -> None:
    """Map ELRANGE with the code page at 0x2000 read/execute and everything else RW."""
    rw = PROT_READ | PROT_WRITE
    b.map(rw, offset=0, length=0x2000)
    b.map(PROT_READ | PROT_EXEC, offset=0x2000, length=PAGE_SIZE)
    b.map(rw, offset=0x3000, length=b.size - 0x3000)


class Run:
    """A ``struct sgx_enclave_run`` in the process's memory."""

    def __init__(self, user: User, tcs: int, handler: int = 0) -> None:
        self.user = user
        self.addr = user.put(struct.pack("<QIHHQQQ", tcs, 0, 0, 0, 0, handler, 0)
                             + bytes(RUN_SIZE - 40))

    def fields(self) -> tuple[int, int, int, int]:
        _, function, vector, error, addr = struct.unpack_from(
            "<QIHHQ", self.user.proc.read_memory(self.addr, 24))
        return function, vector, error, addr


def test_ecall_returns_through_eexit_with_registers(vm: vsgx.Machine) -> None:
    user, b = build(vm, SUM)
    seen: list[int] = []

    def handler(rdi: int, rsi: int, rdx: int, rsp: int, r8: int, r9: int, run: int) -> int:
        seen.append(rdx)
        return 0

    run = Run(user, b.base, user.proc.register_user_handler(handler))
    assert user.proc.vdso_sgx_enter_enclave(40, 2, 0, EENTER, 0, 0, run.addr) == 0
    assert seen == [42]
    assert run.fields()[0] == EEXIT


def test_enclave_memory_is_read_and_written_inside(vm: vsgx.Machine) -> None:
    user, b = build(vm, LOAD_AND_STORE)
    got: list[int] = []
    handler = user.proc.register_user_handler(
        lambda rdi, rsi, rdx, rsp, r8, r9, run: got.append(rdx) or 0)
    run = Run(user, b.base, handler)
    user.proc.vdso_sgx_enter_enclave(0, 0xABCD, 0, EENTER, 0, 0, run.addr)
    user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr)
    assert got == [0x1122334455667788, 0xABCD]
    # a DEBUG enclave's memory, read from outside through EDBGRD
    assert user.proc.read_memory(b.base + 0x3000, 8) == struct.pack("<Q", 0)


def test_a_write_to_a_read_only_page_faults_into_the_run_struct(vm: vsgx.Machine) -> None:
    user, b = build(vm, STORE_TO_READ_ONLY)
    run = Run(user, b.base)
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr) == 0
    function, vector, error, addr = run.fields()
    assert (function, vector) == (ERESUME, 14)  # an AEX: ERESUME is the leaf to run next
    assert error & 0x7 == 0x7  # present, write, user
    assert addr & ~0xFFF == b.base + 0x4000


def test_bad_run_structs_are_einval(vm: vsgx.Machine) -> None:
    user, b = build(vm, SUM)
    run = Run(user, b.base)
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, 5, 0, 0, run.addr) == -22
    user.proc.write_memory(run.addr + 100, b"\x01")
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr) == -22
    with pytest.raises(OSError):
        user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, 0x1000)




EACCEPT_NEW_PAGE = bytes.fromhex(
    "4989cc"          # mov r12, rcx               ; keep the return address
    "488d8b00500000"  # lea rcx, [rbx+0x5000]      ; a page the enclave never had
    "488d9b00300000"  # lea rbx, [rbx+0x3000]      ; SECINFO (REG, RW, PENDING) at 0x3000
    "b805000000"      # mov eax, 5                 ; EACCEPT: the access faults, the kernel
    "0f01d7"          # enclu                      ;   EAUGs the page, ERESUME retries
    "4889c2"          # mov rdx, rax               ; EACCEPT's status
    "c6012a"          # mov byte [rcx], 42         ; the accepted page is writable
    "4c89e3"          # mov rbx, r12
    "b804000000"      # mov eax, 4                 ; EEXIT
    "0f01d7")         # enclu


def test_eaug_on_fault_then_eaccept(vm: vsgx.Machine) -> None:
    secinfo = struct.pack("<Q", (2 << 8) | 0x8 | 0x3).ljust(PAGE_SIZE, b"\0")
    user, b = enclave(vm, EACCEPT_NEW_PAGE, (0x3000, secinfo, REG_RW), (0x4000, None, REG_R),
                      standard_map=True)
    status: list[int] = []
    run = Run(user, b.base, collecting_rdx(user, status))
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr) == 0
    assert run.fields() == (EEXIT, 0, 0, 0)
    assert status == [0]
    assert user.proc.read_memory(b.base + 0x5000, 1) == b"\x2a"


def test_a_pte_fault_fixed_by_mprotect_then_eresume(vm: vsgx.Machine) -> None:
    user, b = build(vm, LOAD_AND_STORE)
    b.map(PROT_READ, offset=0x3000, length=PAGE_SIZE)  # the PTE allows reads only
    got: list[int] = []
    handler = user.proc.register_user_handler(
        lambda rdi, rsi, rdx, rsp, r8, r9, run: got.append(rdx) or 0)
    run = Run(user, b.base, handler)
    assert user.proc.vdso_sgx_enter_enclave(0, 7, 0, EENTER, 0, 0, run.addr) == 0
    function, vector, error, addr = run.fields()
    assert (function, vector, error & 0x8007) == (ERESUME, 14, 0x7)
    assert addr == b.base + 0x3000
    user.proc.mprotect(b.base + 0x3000, PAGE_SIZE, PROT_READ | PROT_WRITE)
    got.clear()
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, ERESUME, 0, 0, run.addr) == 0
    assert run.fields()[0] == EEXIT
    assert got == [0x1122334455667788]  # the resumed store completed and the ECALL returned
    assert user.proc.read_memory(b.base + 0x3000, 8) == struct.pack("<Q", 7)


def test_two_threads_in_two_tcss() -> None:
    args = ["-machine", "q35", "-m", "1G", "-smp", "2", "-cpu", "host", "-object",
            "memory-backend-epc,id=e0,size=8M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
    with machine(args) as vm:
        user, b = enclave(vm, SUM, (0x5000, tcs_page(ossa=0x6000), SGX_SECINFO_TCS),
                          (0x6000, None, REG_RW))
        results: dict[int, list[int]] = {0: [], 1: []}
        errors: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                handler = user.proc.register_user_handler(
                    lambda rdi, rsi, rdx, rsp, r8, r9, run: results[k].append(rdx) or 0)
                run = Run(user, b.base + 0x5000 * k, handler)
                for i in range(200):
                    user.proc.vdso_sgx_enter_enclave(i, k, 0, EENTER, 0, 0, run.addr)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert results == {k: [i + k for i in range(200)] for k in (0, 1)}


SUM_OF_PAGES = bytes.fromhex(
    "4989cc"          # mov r12, rcx
    "488db300000100"  # lea rsi, [rbx+0x10000]    ; 512 data pages from offset 0x10000
    "31c0"            # xor eax, eax
    "b900020000"      # mov ecx, 512
    "480306"          # loop: add rax, [rsi]      ; each page faults in (ELDU) when evicted
    "4881c600100000"  # add rsi, 0x1000
    "ffc9"            # dec ecx
    "75f2"            # jnz loop
    "4889c2"          # mov rdx, rax
    "4c89e3"          # mov rbx, r12
    "b804000000"      # mov eax, 4                ; EEXIT
    "0f01d7")         # enclu


def oversized_enclave(vm: vsgx.Machine, value: int) -> tuple[User, EnclaveBuilder]:
    """A 4 MiB enclave running SUM_OF_PAGES over 512 data pages, each holding ``value``."""
    return enclave(vm, SUM_OF_PAGES,
                   (0x10000, struct.pack("<Q", value).ljust(PAGE_SIZE, b"\0"), REG_RW, 512),
                   size=4 << 20)


def test_an_enclave_bigger_than_the_epc_runs() -> None:
    args = ["-machine", "q35", "-m", "1G", "-cpu", "host", "-object",
            "memory-backend-epc,id=e0,size=1M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
    with machine(args) as vm:
        # 515 pages built through a 256-page EPC: ADD_PAGES reclaims as it goes
        user, b = oversized_enclave(vm, 3)
        got: list[int] = []
        run = Run(user, b.base, collecting_rdx(user, got))
        assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr) == 0
        assert run.fields()[0] == EEXIT and got == [3 * 512]


ACCEPT_THEN_STORE = bytes.fromhex(
    "4989cc"          # mov r12, rcx
    "4989dd"          # mov r13, rbx               ; enclave base
    "488d8b00300000"  # lea rcx, [rbx+0x3000]      ; the page whose permissions changed
    "488d9b00400000"  # lea rbx, [rbx+0x4000]      ; SECINFO at 0x4000
    "b805000000"      # mov eax, 5                 ; EACCEPT
    "0f01d7"          # enclu
    "4889c2"          # mov rdx, rax               ; EACCEPT's status
    "49c785003000002a000000"  # mov qword [r13+0x3000], 42
    "4c89e3"          # mov rbx, r12
    "b804000000"      # mov eax, 4                 ; EEXIT
    "0f01d7")         # enclu


def _sgx2_enclave(vm: vsgx.Machine, secinfo_flags: int) -> tuple[User, EnclaveBuilder]:
    return enclave(vm, ACCEPT_THEN_STORE, (0x3000, None, REG_RW),
                   (0x4000, struct.pack("<Q", secinfo_flags).ljust(PAGE_SIZE, b"\0"), REG_RW))


def test_restrict_permissions_then_eaccept(vm: vsgx.Machine) -> None:
    from vsgx.guest import SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, SgxEnclaveRestrictPermissions

    user, b = _sgx2_enclave(vm, (2 << 8) | 0x20 | SGX_SECINFO_R)  # REG, PR, R
    done = user.ioctl(b.fd, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, SgxEnclaveRestrictPermissions(
        offset=0x3000, length=PAGE_SIZE, permissions=SGX_SECINFO_R))
    assert (done.result, done.count) == (0, PAGE_SIZE)
    run = Run(user, b.base)
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr) == 0
    function, vector, error, _ = run.fields()
    # EACCEPT succeeded; the store to the now read-only page is an EPCM fault
    assert (function, vector, error) == (ERESUME, 14, 0x8007)
    assert user.proc.read_memory(b.base + 0x3000, 8) == bytes(8)


def test_trim_eaccept_and_remove(vm: vsgx.Machine) -> None:
    from vsgx.guest import (
        SGX_IOC_ENCLAVE_MODIFY_TYPES,
        SGX_IOC_ENCLAVE_REMOVE_PAGES,
        SgxEnclaveModifyTypes,
        SgxEnclaveRemovePages,
    )

    user, b = _sgx2_enclave(vm, (4 << 8) | 0x10)  # TRIM, MODIFIED
    early = user.errno(b.fd, SGX_IOC_ENCLAVE_REMOVE_PAGES,
                       SgxEnclaveRemovePages(offset=0x3000, length=PAGE_SIZE))
    assert early == 1  # EPERM: not a trimmed page yet
    user.ioctl(b.fd, SGX_IOC_ENCLAVE_MODIFY_TYPES, SgxEnclaveModifyTypes(
        offset=0x3000, length=PAGE_SIZE, page_type=4))
    assert user.errno(b.fd, SGX_IOC_ENCLAVE_REMOVE_PAGES,
                      SgxEnclaveRemovePages(offset=0x3000, length=PAGE_SIZE)) == 1  # not accepted
    run = Run(user, b.base)
    user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr)
    function, vector, error, _ = run.fields()
    assert (function, vector, error) == (ERESUME, 14, 0x8007)  # a trimmed page is no data
    assert b.base + 0x3000 in b.enclave.page_array
    assert user.errno(b.fd, SGX_IOC_ENCLAVE_REMOVE_PAGES,
                      SgxEnclaveRemovePages(offset=0x3000, length=PAGE_SIZE)) == 0
    assert b.base + 0x3000 not in b.enclave.page_array


ACCEPT_ONLY = bytes.fromhex(
    "4989cc"          # mov r12, rcx
    "488d8b00300000"  # lea rcx, [rbx+0x3000]      ; the page becoming a TCS
    "488d9b00400000"  # lea rbx, [rbx+0x4000]      ; SECINFO (TCS, MODIFIED) at 0x4000
    "b805000000"      # mov eax, 5                 ; EACCEPT
    "0f01d7"          # enclu
    "4889c2"          # mov rdx, rax
    "4c89e3"          # mov rbx, r12
    "b804000000"      # mov eax, 4                 ; EEXIT
    "0f01d7")         # enclu


def test_a_tcs_created_at_run_time(vm: vsgx.Machine) -> None:
    from vsgx.guest import SGX_IOC_ENCLAVE_MODIFY_TYPES, SgxEnclaveModifyTypes

    user, b = enclave(
        vm, ACCEPT_ONLY,
        (0x3000, tcs_page(ossa=0x6000), REG_RW),  # TCS contents, still a regular page
        (0x4000, struct.pack("<Q", (1 << 8) | 0x10).ljust(PAGE_SIZE, b"\0"), REG_RW),
        (0x6000, None, REG_RW))  # the new TCS's SSA
    statuses: list[int] = []
    handler = collecting_rdx(user, statuses)
    new_tcs = Run(user, b.base + 0x3000, handler)
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, new_tcs.addr) == 0
    assert new_tcs.fields()[:2] == (EENTER, 14)  # not a TCS yet: EENTER itself faults
    statuses.clear()
    user.ioctl(b.fd, SGX_IOC_ENCLAVE_MODIFY_TYPES, SgxEnclaveModifyTypes(
        offset=0x3000, length=PAGE_SIZE, page_type=1))
    first = Run(user, b.base, handler)
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, first.addr) == 0
    assert first.fields()[0] == EEXIT and statuses == [0]  # EACCEPT of the new TCS
    new_tcs = Run(user, b.base + 0x3000, handler)
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, new_tcs.addr) == 0
    # Entered through the new TCS: the code ran with RBX = base + 0x3000, so its SECINFO
    # pointer is base + 0x7000, a page the kernel EAUGs and EACCEPT then finds pending.
    assert new_tcs.fields() == (ERESUME, 14, 0x8005, b.base + 0x7000)


SPIN_UNTIL_FLAG = bytes.fromhex(
    "4989cc"          # mov r12, rcx
    "31c0"            # xor eax, eax
    "48ffc0"          # spin: inc rax
    "49833800"        # cmp qword [r8], 0          ; a flag in untrusted memory
    "74f7"            # je spin
    "4889c2"          # mov rdx, rax               ; how many times it looked
    "4c89e3"          # mov rbx, r12
    "b804000000"      # mov eax, 4                 ; EEXIT
    "0f01d7")         # enclu


def test_reclaim_while_a_thread_is_inside_kicks_it_out_and_it_resumes() -> None:
    args = ["-machine", "q35", "-m", "1G", "-smp", "2", "-cpu", "host", "-object",
            "memory-backend-epc,id=e0,size=8M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
    with machine(args) as vm:
        user, b = enclave(vm, SPIN_UNTIL_FLAG, (0x3000, None, REG_RW))
        assert vm.processor is not None and vm.guest.epc is not None
        got: list[int] = []
        run = Run(user, b.base, collecting_rdx(user, got))
        flag = user.put(bytes(8))
        thread = threading.Thread(target=user.proc.vdso_sgx_enter_enclave,
                                  args=(0, 0, 0, EENTER, flag, 0, run.addr))
        thread.start()
        secs = vm.processor.epc.index_of(b.enclave.secs_pa)
        try:
            while thread.is_alive() and not vm.processor.enclaves[secs].inside:
                time.sleep(0.001)
            assert thread.is_alive(), "the ECALL ended early"
            time.sleep(0.05)  # past its first page faults (their handler holds the mm lock)
            # EWB needs the spinning thread out of the enclave: the reclaimer kicks it (an
            # interrupt, so an AEX), it resumes, faults its evicted pages back in, and spins on.
            freed = vm.guest.epc.reclaimer.reclaim_pages()
        finally:
            user.proc.write_memory(flag, struct.pack("<Q", 1))
            thread.join(timeout=60)
        assert not thread.is_alive()
        assert freed > 0
        assert run.fields()[0] == EEXIT and len(got) == 1 and got[0] > 0


def test_eenter_on_a_page_that_is_not_a_tcs_reports_the_fault(vm: vsgx.Machine) -> None:
    user, b = build(vm, SUM)
    run = Run(user, b.base + 0x2000)  # the code page, not a TCS
    assert user.proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run.addr) == 0
    function, vector, _, _ = run.fields()
    assert function == EENTER and vector in (13, 14)  # EENTER itself faulted (#GP or #PF)


def test_a_user_handler_can_enter_again(vm: vsgx.Machine) -> None:
    user, b = build(vm, SUM)
    calls: list[int] = []

    def handler(rdi: int, rsi: int, rdx: int, rsp: int, r8: int, r9: int, run: int) -> int:
        calls.append(rdx)
        return EENTER if len(calls) < 3 else -7  # a value > 0 is the next ENCLU leaf

    run = Run(user, b.base, user.proc.register_user_handler(handler))
    assert user.proc.vdso_sgx_enter_enclave(1, 2, 0, EENTER, 0, 0, run.addr) == -7
    assert calls == [3, 3, 3]  # entered three times; the registers pass through unchanged


INCREMENT_IN_PLACE = bytes.fromhex(
    "4989f8"            # mov r8, rdi                ; iterations
    # loop:
    "4883830030000001"  # add qword [rbx+0x3000], 1  ; one read-modify-write instruction
    "49ffc8"            # dec r8
    "75f3"              # jnz loop
    ) + EXIT_TO_RCX


@pytest.mark.xfail(strict=True, reason="Unicorn 2.1.4 bug (unicorn-engine/unicorn#1355): "
                   "uc_emu_stop from another thread can stop after a read-modify-write "
                   "instruction executed with RIP still on it, so the AEX saves that RIP and "
                   "ERESUME runs the instruction a second time (cpu_tb_exec skips "
                   "synchronize_from_tb when stop_request is set)")
def test_interrupts_never_repeat_an_instruction(vm: vsgx.Machine) -> None:
    user, b = build(vm, INCREMENT_IN_PLACE)
    start = struct.unpack("<Q", user.proc.read_memory(b.base + 0x3000, 8))[0]
    run = Run(user, b.base)
    assert vm.guest.cpus is not None
    cpus = vm.guest.cpus
    done = threading.Event()

    def kick() -> None:
        while not done.wait(0.001):
            cpus.interrupt(range(vm.config.smp.cpus))

    kicker = threading.Thread(target=kick)
    kicker.start()
    n = 20_000_000
    try:
        assert user.proc.vdso_sgx_enter_enclave(n, 0, 0, EENTER, 0, 0, run.addr) == 0
    finally:
        done.set()
        kicker.join()
    end = struct.unpack("<Q", user.proc.read_memory(b.base + 0x3000, 8))[0]
    assert end - start == n
