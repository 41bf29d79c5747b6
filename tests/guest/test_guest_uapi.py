"""The Linux constants and uapi layouts in ``vsgx.guest``: the values the kernel headers give."""

from __future__ import annotations

import pytest

from vsgx import guest
from vsgx.guest import uapi


def test_ioctl_numbers_are_the_kernel_headers() -> None:
    assert guest.SGX_MAGIC == 0xA4
    assert {
        "SGX_IOC_ENCLAVE_CREATE": 0x4008A400,
        "SGX_IOC_ENCLAVE_ADD_PAGES": 0xC030A401,
        "SGX_IOC_ENCLAVE_INIT": 0x4008A402,
        "SGX_IOC_ENCLAVE_PROVISION": 0x4008A403,
        "SGX_IOC_VEPC_REMOVE_ALL": 0x0000A404,
        "SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS": 0xC028A405,
        "SGX_IOC_ENCLAVE_MODIFY_TYPES": 0xC028A406,
        "SGX_IOC_ENCLAVE_REMOVE_PAGES": 0xC018A407,
    } == {name: getattr(guest, name) for name in dir(guest) if name.startswith("SGX_IOC_")}


@pytest.mark.parametrize(("cls", "fields"), [
    (guest.SgxEnclaveCreate, ["src"]),
    (guest.SgxEnclaveAddPages, ["src", "offset", "length", "secinfo", "flags", "count"]),
    (guest.SgxEnclaveInit, ["sigstruct"]),
    (guest.SgxEnclaveProvision, ["fd"]),
    (guest.SgxEnclaveRestrictPermissions,
     ["offset", "length", "permissions", "result", "count"]),
    (guest.SgxEnclaveModifyTypes, ["offset", "length", "page_type", "result", "count"]),
    (guest.SgxEnclaveRemovePages, ["offset", "length", "count"]),
])
def test_uapi_structs_are_arrays_of_u64(cls: type[guest.SgxEnclaveCreate],
                                        fields: list[str]) -> None:
    assert cls.SIZE == 8 * len(fields)
    assert [(f.name, f.offset, f.size) for f in cls.LAYOUT] == [
        (name, 8 * i, 8) for i, name in enumerate(fields)]
    values = {name: (i + 1) << 56 | i for i, name in enumerate(fields)}
    raw = cls(**values).to_bytes()
    assert raw == b"".join(v.to_bytes(8, "little") for v in values.values())
    assert cls.from_bytes(raw) == cls(**values)


def test_mman_fcntl_and_sgx_constants() -> None:
    assert (guest.PROT_NONE, guest.PROT_READ, guest.PROT_WRITE, guest.PROT_EXEC) == (0, 1, 2, 4)
    assert (guest.MAP_SHARED, guest.MAP_PRIVATE, guest.MAP_FIXED, guest.MAP_ANONYMOUS,
            guest.MAP_FIXED_NOREPLACE) == (0x01, 0x02, 0x10, 0x20, 0x100000)
    assert (guest.O_RDONLY, guest.O_WRONLY, guest.O_RDWR, guest.O_CLOEXEC) == (0, 1, 2, 0o2000000)
    assert guest.SGX_PAGE_MEASURE == 1
    assert (guest.SGX_SECINFO_R, guest.SGX_SECINFO_W, guest.SGX_SECINFO_X) == (1, 2, 4)
    assert (guest.SGX_SECINFO_SECS, guest.SGX_SECINFO_TCS, guest.SGX_SECINFO_REG,
            guest.SGX_SECINFO_VA, guest.SGX_SECINFO_TRIM) == (0x000, 0x100, 0x200, 0x300, 0x400)
    assert guest.SGX_SECINFO_RESERVED_MASK == ~0xFF07 & (1 << 64) - 1


def test_errors_carry_linux_errnos_and_glibc_messages() -> None:
    exc = uapi.syscall_error(guest.Errno.ENOTTY)
    assert isinstance(exc, OSError)
    assert (exc.errno, exc.strerror) == (25, "Inappropriate ioctl for device")
    assert {e.name: int(e) for e in guest.Errno} == {
        "EPERM": 1, "ENOENT": 2, "EIO": 5, "EBADF": 9, "ENOMEM": 12,
        "EACCES": 13, "EFAULT": 14, "EBUSY": 16, "EEXIST": 17, "ENODEV": 19, "EINVAL": 22,
        "ENOTTY": 25, "EOVERFLOW": 75}
    assert set(uapi.STRERROR) == set(guest.Errno)
