"""The untrusted runtime's SGX2 page operations (``Enclave.restrict_permissions``,
``modify_types``, ``remove_pages`` and the ioctl plumbing of :mod:`vsgx.sdk.pages`) on the
sgx2 sample enclave: argument checks before the kernel, the kernel's errnos and progress
counts when it refuses, the partial-progress loop, and the flows the enclave completes with
EACCEPT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sgx_user import MACHINE, machine, signing_key

import vsgx
from vsgx.arch import PAGE_SIZE, Pfec, Vector
from vsgx.guest import Process
from vsgx.guest.uapi import (
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_PAGE_TYPE_REG,
    SGX_PAGE_TYPE_TCS,
    SGX_PAGE_TYPE_TRIM,
    SGX_SECINFO_R,
    SGX_SECINFO_W,
    Errno,
    SgxEnclaveModifyTypes,
    SgxEnclaveRemovePages,
)
from vsgx.sdk import Enclave, EnclaveError, EnclaveFault
from vsgx.sdk import pages as sgx_pages
from vsgx.sdk.pages import PageIoctlError

SGX2_ELF = Path(__file__).resolve().parents[2] / "examples" / "sgx2" / "enclave.elf"
SGX_PAGE_ATTRIBUTES_MISMATCH = 19


@pytest.fixture
def proc(vm: vsgx.Machine) -> Iterator[Process]:
    process = vm.guest.spawn()
    yield process
    process.exit()


@pytest.fixture
def enclave(proc: Process) -> Iterator[Enclave]:
    with Enclave.load(proc, SGX2_ELF, key=signing_key()) as loaded:
        yield loaded


def dynamic(enclave: Enclave, page: int = 0) -> int:
    """The enclave-relative offset of page ``page`` of the dynamic range."""
    return enclave.image.layout.dynamic[0] + page * PAGE_SIZE


def tcs_offset(enclave: Enclave) -> int:
    return enclave.image.layout.threads[0].tcs


def refused(call: object, *args: object) -> PageIoctlError:
    assert callable(call)
    with pytest.raises(PageIoctlError) as info:
        call(*args)
    return info.value


# -- argument checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("offset, length, message", [
    (1, PAGE_SIZE, "offset 0x1 is not a page-aligned offset"),
    (-PAGE_SIZE, PAGE_SIZE, "is not a page-aligned offset"),
    (0, 0, "length 0x0 is not a positive multiple of the page size"),
    (0, 100, "length 0x64 is not a positive multiple"),
    (0, -PAGE_SIZE, "is not a positive multiple"),
])
def test_unaligned_or_empty_ranges_are_value_errors(enclave: Enclave, offset: int, length: int,
                                                     message: str) -> None:
    for call in (lambda: enclave.restrict_permissions(offset, length, SGX_SECINFO_R),
                 lambda: enclave.modify_types(offset, length, SGX_PAGE_TYPE_TRIM),
                 lambda: enclave.remove_pages(offset, length)):
        with pytest.raises(ValueError, match=message):
            call()


def test_ranges_beyond_the_enclave_are_value_errors(enclave: Enclave) -> None:
    size = enclave.image.layout.size
    with pytest.raises(ValueError, match=f"goes beyond the enclave's {size:#x} bytes"):
        enclave.remove_pages(size - PAGE_SIZE, 2 * PAGE_SIZE)
    with pytest.raises(ValueError, match="goes beyond"):
        enclave.modify_types(size, PAGE_SIZE, SGX_PAGE_TYPE_TRIM)
    with pytest.raises(ValueError, match=r"relative to enclave\.base"):
        enclave.restrict_permissions(enclave.base + dynamic(enclave) + 1, PAGE_SIZE,
                                     SGX_SECINFO_R)


def test_permissions_and_page_types_are_checked(enclave: Enclave) -> None:
    with pytest.raises(ValueError, match="write permission needs read permission"):
        enclave.restrict_permissions(dynamic(enclave), PAGE_SIZE, SGX_SECINFO_W)
    with pytest.raises(ValueError, match="not a combination of SGX_SECINFO_R, _W and _X"):
        enclave.restrict_permissions(dynamic(enclave), PAGE_SIZE, 0x8)
    with pytest.raises(ValueError, match="neither SGX_PAGE_TYPE_TCS"):
        enclave.modify_types(dynamic(enclave), PAGE_SIZE, SGX_PAGE_TYPE_REG)
    with pytest.raises(TypeError, match="offset must be an int"):
        enclave.remove_pages(True, PAGE_SIZE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="length must be an int"):
        enclave.remove_pages(0, "4096")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="permissions must be an int"):
        enclave.restrict_permissions(0, PAGE_SIZE, None)  # type: ignore[arg-type]


def test_a_closed_enclave_refuses(proc: Process) -> None:
    enclave = Enclave.load(proc, SGX2_ELF, key=signing_key())
    enclave.close()
    with pytest.raises(EnclaveError, match="closed"):
        enclave.remove_pages(0, PAGE_SIZE)


# -- the kernel's errnos -----------------------------------------------------------------------

def test_the_kernel_refuses_bad_ranges_with_einval(enclave: Enclave) -> None:
    """What the Enclave methods check first, sent as it is: sgx_validate_offset_length."""
    fd, proc = enclave._current().fd, enclave.process
    size = enclave.image.layout.size
    for offset, length in ((1, PAGE_SIZE), (0, 0), (0, 100), (size, PAGE_SIZE),
                           (size - PAGE_SIZE, 2 * PAGE_SIZE)):
        for call, args in ((sgx_pages.restrict_permissions, (SGX_SECINFO_R,)),
                           (sgx_pages.modify_types, (SGX_PAGE_TYPE_TRIM,)),
                           (sgx_pages.remove_pages, ())):
            error = refused(call, proc, fd, offset, length, *args)
            assert (error.errno, error.count, error.result) == (Errno.EINVAL, 0, 0)
    error = refused(sgx_pages.restrict_permissions, proc, fd, dynamic(enclave), PAGE_SIZE,
                    SGX_SECINFO_W)
    assert error.errno == Errno.EINVAL  # W without R
    error = refused(sgx_pages.modify_types, proc, fd, dynamic(enclave), PAGE_SIZE,
                    SGX_PAGE_TYPE_REG)
    assert error.errno == Errno.EINVAL  # only TCS and TRIM
    assert "SGX_IOC_ENCLAVE_MODIFY_TYPES" in str(error) and "(EINVAL)" in str(error)


def test_a_page_the_enclave_does_not_have_is_efault(enclave: Enclave) -> None:
    """The dynamic range holds no page until the enclave touches it."""
    offset = dynamic(enclave, 3)
    for error in (refused(enclave.restrict_permissions, offset, PAGE_SIZE, SGX_SECINFO_R),
                  refused(enclave.modify_types, offset, PAGE_SIZE, SGX_PAGE_TYPE_TRIM),
                  refused(enclave.remove_pages, offset, PAGE_SIZE)):
        assert (error.errno, error.count, error.result) == (Errno.EFAULT, 0, 0)
        assert error.offset == offset and error.length == PAGE_SIZE
        assert "(EFAULT) after 0x0 bytes" in str(error)


def test_progress_up_to_the_failing_page_is_reported(enclave: Enclave) -> None:
    assert enclave.ecall("accept", 0, 2) == 2
    error = refused(enclave.modify_types, dynamic(enclave), 3 * PAGE_SIZE, SGX_PAGE_TYPE_TRIM)
    assert (error.errno, error.count) == (Errno.EFAULT, 2 * PAGE_SIZE)  # pages 0 and 1 done
    assert enclave.ecall("accept_trim", 0, 2) == 2
    error = refused(enclave.remove_pages, dynamic(enclave), 3 * PAGE_SIZE)
    assert (error.errno, error.count) == (Errno.EFAULT, 2 * PAGE_SIZE)
    # both trimmed pages went: they are EAUGed afresh when touched
    assert enclave.ecall("accept", 0, 2) == 2
    assert enclave.ecall("nonzero_range", 0, 2) == 0


def test_removing_a_page_that_was_not_trimmed_is_eperm(enclave: Enclave) -> None:
    assert enclave.ecall("accept", 0, 1) == 1
    error = refused(enclave.remove_pages, dynamic(enclave), PAGE_SIZE)
    assert (error.errno, error.count) == (Errno.EPERM, 0)
    error = refused(enclave.remove_pages, tcs_offset(enclave), PAGE_SIZE)  # a TCS
    assert error.errno == Errno.EPERM
    # trimmed but not yet accepted: still EPERM, and the page stays
    assert enclave.modify_types(dynamic(enclave), PAGE_SIZE, SGX_PAGE_TYPE_TRIM) == PAGE_SIZE
    assert refused(enclave.remove_pages, dynamic(enclave), PAGE_SIZE).errno == Errno.EPERM
    assert enclave.ecall("accept_trim", 0, 1) == 1
    assert enclave.remove_pages(dynamic(enclave), PAGE_SIZE) == PAGE_SIZE
    assert refused(enclave.remove_pages, dynamic(enclave), PAGE_SIZE).errno == Errno.EFAULT


def test_only_regular_pages_have_their_permissions_restricted(enclave: Enclave) -> None:
    error = refused(enclave.restrict_permissions, tcs_offset(enclave), PAGE_SIZE, SGX_SECINFO_R)
    assert (error.errno, error.count) == (Errno.EINVAL, 0)


def test_a_trimmed_tcs_cannot_become_regular_again(enclave: Enclave) -> None:
    assert enclave.ecall("accept", 0, 1) == 1
    assert enclave.modify_types(dynamic(enclave), PAGE_SIZE, SGX_PAGE_TYPE_TRIM) == PAGE_SIZE
    error = refused(enclave.modify_types, dynamic(enclave), PAGE_SIZE, SGX_PAGE_TYPE_TCS)
    assert error.errno == Errno.EINVAL  # TRIM -> TCS is not a change the kernel makes


def test_without_sgx2_the_page_ioctls_are_enodev() -> None:
    vm = machine(MACHINE, cpu="host,-sgx2")
    try:
        with Enclave.load(vm.guest.spawn(), SGX2_ELF, key=signing_key()) as enclave:
            for error in (
                    refused(enclave.restrict_permissions, 0, PAGE_SIZE, SGX_SECINFO_R),
                    refused(enclave.modify_types, 0, PAGE_SIZE, SGX_PAGE_TYPE_TRIM),
                    refused(enclave.remove_pages, 0, PAGE_SIZE)):
                assert (error.errno, error.count) == (Errno.ENODEV, 0)
    finally:
        vm.stop()


# -- the flows, completed inside ------------------------------------------------------------

def test_restrict_then_accept_makes_the_page_read_only(enclave: Enclave) -> None:
    assert enclave.ecall("accept", 0, 2) == 2
    assert enclave.ecall("store", 0, 0x1234) == 0x1234
    offset = dynamic(enclave)
    assert enclave.restrict_permissions(offset, PAGE_SIZE, SGX_SECINFO_R) == PAGE_SIZE
    # the enclave must name exactly the new permissions
    assert enclave.ecall("accept_restricted", 0, SGX_SECINFO_R | SGX_SECINFO_W) == \
        SGX_PAGE_ATTRIBUTES_MISMATCH
    assert enclave.ecall("accept_restricted", 0, SGX_SECINFO_R) == 0
    assert enclave.ecall("nonzero_range", 0, 1) > 0  # still readable
    with pytest.raises(EnclaveFault) as info:
        enclave.ecall("store", 0, 1)
    fault = info.value
    assert (fault.vector, fault.address) == (Vector.PF, enclave.base + offset)
    assert fault.error_code & (Pfec.SGX | Pfec.W) == Pfec.SGX | Pfec.W
    assert enclave.ecall("store", 1, 5) == 5  # the TCS is usable again
    # restricting further (to no access) works on the now read-only page too
    assert enclave.restrict_permissions(offset, PAGE_SIZE, 0) == PAGE_SIZE
    assert enclave.ecall("accept_restricted", 0, 0) == 0
    with pytest.raises(EnclaveFault):
        enclave.ecall("nonzero_range", 0, 1)


def test_restricting_to_the_same_permissions_is_allowed(enclave: Enclave) -> None:
    assert enclave.ecall("accept", 0, 1) == 1
    rw = SGX_SECINFO_R | SGX_SECINFO_W
    assert enclave.restrict_permissions(dynamic(enclave), PAGE_SIZE, rw) == PAGE_SIZE
    assert enclave.ecall("accept_restricted", 0, rw) == 0
    assert enclave.ecall("store", 0, 9) == 9


def test_trim_accept_remove_then_the_page_comes_back_empty(enclave: Enclave) -> None:
    pages = 8
    assert enclave.ecall("accept", 0, pages) == pages
    enclave.ecall("fill", pages, 7)
    offset, length = dynamic(enclave, 2), 4 * PAGE_SIZE
    assert enclave.modify_types(offset, length, SGX_PAGE_TYPE_TRIM) == length
    with pytest.raises(EnclaveFault) as info:
        enclave.ecall("nonzero_range", 2, 1)  # a trimmed page holds no data
    assert info.value.error_code & Pfec.SGX
    assert enclave.ecall("accept_trim", 2, 4) == 4
    assert enclave.ecall("accept_trim", 2, 1) == 0  # accepted already
    assert enclave.remove_pages(offset, length) == length
    assert enclave.ecall("nonzero_range", 0, 2) > 0 and enclave.ecall("nonzero_range", 6, 2) > 0
    with pytest.raises(EnclaveFault) as info:
        enclave.ecall("nonzero_range", 2, 1)  # EAUGed again, pending until accepted
    assert info.value.address == enclave.base + offset
    assert enclave.ecall("accept", 2, 4) == 4
    assert enclave.ecall("nonzero_range", 2, 4) == 0


# -- the partial-progress loop -----------------------------------------------------------------

class OnePageAtATime:
    """A stand-in process whose "kernel" does one page per ioctl and returns success, as Linux
    does when a signal is pending after some pages; optionally failing at ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.memory: dict[int, bytes] = {}
        self.calls: list[tuple[int, int]] = []
        self.fail_at = fail_at
        self.unmapped: list[int] = []

    def mmap(self, addr: int, length: int, prot: int, flags: int) -> int:
        return 0x10000

    def munmap(self, addr: int, length: int) -> None:
        self.unmapped.append(addr)

    def write_memory(self, addr: int, data: bytes) -> int:
        self.memory[addr] = data
        return len(data)

    def read_memory(self, addr: int, n: int) -> bytes:
        return self.memory[addr][:n]

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        kind = {SGX_IOC_ENCLAVE_REMOVE_PAGES: SgxEnclaveRemovePages,
                SGX_IOC_ENCLAVE_MODIFY_TYPES: SgxEnclaveModifyTypes}[request]
        params = kind.from_bytes(self.memory[arg])
        assert params.count == 0
        self.calls.append((params.offset, params.length))
        if params.offset == self.fail_at:
            self.memory[arg] = params.to_bytes()
            raise OSError(Errno.EFAULT, "Bad address")
        self.memory[arg] = params.replace(count=PAGE_SIZE).to_bytes()
        return 0


def test_partial_progress_is_continued_until_the_range_is_done() -> None:
    fake = OnePageAtATime()
    done = sgx_pages.remove_pages(fake, 3, 0x4000, 3 * PAGE_SIZE)  # type: ignore[arg-type]
    assert done == 3 * PAGE_SIZE
    assert fake.calls == [(0x4000, 0x3000), (0x5000, 0x2000), (0x6000, 0x1000)]
    assert fake.unmapped == [0x10000]


def test_a_failure_after_partial_progress_reports_the_total() -> None:
    fake = OnePageAtATime(fail_at=0x6000)
    error = refused(sgx_pages.modify_types, fake, 3, 0x4000, 4 * PAGE_SIZE, SGX_PAGE_TYPE_TRIM)
    assert (error.errno, error.count, error.result) == (Errno.EFAULT, 2 * PAGE_SIZE, 0)
    assert isinstance(error, OSError) and fake.unmapped == [0x10000]
