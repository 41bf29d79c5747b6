"""What user space sees of the guest kernel, with Linux's names and values: the SGX uapi
(``arch/x86/include/uapi/asm/sgx.h``), the page-type and SECINFO constants user space copies
from ``arch/x86/include/asm/sgx.h``, the ``mmap``/``mprotect`` and ``open`` flags
(``include/uapi/asm-generic/mman-common.h``, ``mman.h``, ``fcntl.h``), and the errno values
(``include/uapi/asm-generic/errno-base.h``, ``errno.h``).

The errno values are Linux's, whatever the host running vsgx uses: guest system calls raise
``OSError(errno, strerror)`` with these numbers (see :func:`syscall_error`).

The ioctl request numbers are computed with the ``_IOC`` encoding of
``include/uapi/asm-generic/ioctl.h`` from the struct sizes below, and checked at import against
the values the kernel headers produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from vsgx.arch.layout import Field, Struct, struct_dataclass

# -- errno -------------------------------------------------------------------------------------


class Errno(IntEnum):
    """The Linux errno values the guest kernel returns (asm-generic numbering)."""

    EPERM = 1
    ENOENT = 2
    EIO = 5
    EBADF = 9
    ENOMEM = 12
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    ENODEV = 19
    EINVAL = 22
    ENOTTY = 25
    EOVERFLOW = 75


STRERROR: dict[Errno, str] = {
    Errno.EPERM: "Operation not permitted",
    Errno.ENOENT: "No such file or directory",
    Errno.EIO: "Input/output error",
    Errno.EBADF: "Bad file descriptor",
    Errno.ENOMEM: "Cannot allocate memory",
    Errno.EACCES: "Permission denied",
    Errno.EFAULT: "Bad address",
    Errno.EBUSY: "Device or resource busy",
    Errno.EEXIST: "File exists",
    Errno.ENODEV: "No such device",
    Errno.EINVAL: "Invalid argument",
    Errno.ENOTTY: "Inappropriate ioctl for device",
    Errno.EOVERFLOW: "Value too large for defined data type",
}
"""glibc's ``strerror`` text for each errno."""


def syscall_error(err: Errno) -> OSError:
    """The exception a failed guest system call raises: ``OSError(errno, strerror)``."""
    return OSError(int(err), STRERROR[err])


# -- mmap, mprotect, open ----------------------------------------------------------------------

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x0100_0000
PROT_GROWSUP = 0x0200_0000

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_FIXED_NOREPLACE = 0x10_0000

O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_ACCMODE = 0o3
O_CLOEXEC = 0o200_0000

# -- asm/sgx.h (kernel-internal, mirrored by user space) ------------------------------------

SGX_PAGE_TYPE_SECS = 0x00
SGX_PAGE_TYPE_TCS = 0x01
SGX_PAGE_TYPE_REG = 0x02
SGX_PAGE_TYPE_VA = 0x03
SGX_PAGE_TYPE_TRIM = 0x04
SGX_PAGE_TYPE_MASK = 0xFF

SGX_SECINFO_R = 0x01
SGX_SECINFO_W = 0x02
SGX_SECINFO_X = 0x04
SGX_SECINFO_SECS = SGX_PAGE_TYPE_SECS << 8
SGX_SECINFO_TCS = SGX_PAGE_TYPE_TCS << 8
SGX_SECINFO_REG = SGX_PAGE_TYPE_REG << 8
SGX_SECINFO_VA = SGX_PAGE_TYPE_VA << 8
SGX_SECINFO_TRIM = SGX_PAGE_TYPE_TRIM << 8
SGX_SECINFO_PERMISSION_MASK = 0x07
SGX_SECINFO_PAGE_TYPE_MASK = 0xFF << 8
SGX_SECINFO_RESERVED_MASK = ~(SGX_SECINFO_PERMISSION_MASK | SGX_SECINFO_PAGE_TYPE_MASK) & (
    (1 << 64) - 1)
SGX_SECINFO_SIZE = 64
"""``struct sgx_secinfo``: ``u64 flags`` and 56 reserved bytes, which must be zero."""

SGX_SIGSTRUCT_SIZE = 1808
"""``struct sgx_sigstruct`` as SGX_IOC_ENCLAVE_INIT copies it."""

# -- uapi/asm/sgx.h ------------------------------------------------------------------------

SGX_MAGIC = 0xA4
SGX_PAGE_MEASURE = 0x01
"""``enum sgx_page_flags``: EEXTEND the pages SGX_IOC_ENCLAVE_ADD_PAGES adds."""


def _ioc_struct(*fields: str) -> tuple[Field, ...]:
    """The layout of a uapi struct made of ``__u64`` fields, in order."""
    return tuple(Field(f, 8 * i, 8) for i, f in enumerate(fields))


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveCreate(Struct):
    """``struct sgx_enclave_create``: ``src``, the user address of a 4096-byte SECS."""

    NAME: ClassVar[str] = "sgx_enclave_create"
    SIZE: ClassVar[int] = 8
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct("src")

    src: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveAddPages(Struct):
    """``struct sgx_enclave_add_pages``: source address, enclave offset and length of the
    pages, the user address of their SECINFO, ``SGX_PAGE_MEASURE`` flags, and ``count`` (out:
    bytes added)."""

    NAME: ClassVar[str] = "sgx_enclave_add_pages"
    SIZE: ClassVar[int] = 48
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct(
        "src", "offset", "length", "secinfo", "flags", "count")

    src: int = 0
    offset: int = 0
    length: int = 0
    secinfo: int = 0
    flags: int = 0
    count: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveInit(Struct):
    """``struct sgx_enclave_init``: ``sigstruct``, the user address of a SIGSTRUCT."""

    NAME: ClassVar[str] = "sgx_enclave_init"
    SIZE: ClassVar[int] = 8
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct("sigstruct")

    sigstruct: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveProvision(Struct):
    """``struct sgx_enclave_provision``: ``fd``, an open file descriptor of
    ``/dev/sgx_provision``."""

    NAME: ClassVar[str] = "sgx_enclave_provision"
    SIZE: ClassVar[int] = 8
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct("fd")

    fd: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveRestrictPermissions(Struct):
    """``struct sgx_enclave_restrict_permissions``: the range, the new EPCM permissions, and
    ``result`` (out: the EMODPR error code) and ``count`` (out: bytes done)."""

    NAME: ClassVar[str] = "sgx_enclave_restrict_permissions"
    SIZE: ClassVar[int] = 40
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct(
        "offset", "length", "permissions", "result", "count")

    offset: int = 0
    length: int = 0
    permissions: int = 0
    result: int = 0
    count: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveModifyTypes(Struct):
    """``struct sgx_enclave_modify_types``: the range, the new page type (TCS or TRIM), and
    ``result`` (out: the EMODT error code) and ``count`` (out: bytes done)."""

    NAME: ClassVar[str] = "sgx_enclave_modify_types"
    SIZE: ClassVar[int] = 40
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct(
        "offset", "length", "page_type", "result", "count")

    offset: int = 0
    length: int = 0
    page_type: int = 0
    result: int = 0
    count: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SgxEnclaveRemovePages(Struct):
    """``struct sgx_enclave_remove_pages``: the range and ``count`` (out: bytes removed)."""

    NAME: ClassVar[str] = "sgx_enclave_remove_pages"
    SIZE: ClassVar[int] = 24
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = _ioc_struct("offset", "length", "count")

    offset: int = 0
    length: int = 0
    count: int = 0


# -- ioctl numbers (include/uapi/asm-generic/ioctl.h) --------------------------------------

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    """``_IOC``: direction, type, number and argument size packed into a request number."""
    return (direction << _IOC_DIRSHIFT | kind << _IOC_TYPESHIFT | nr << _IOC_NRSHIFT
            | size << _IOC_SIZESHIFT)


def _io(kind: int, nr: int) -> int:
    return _ioc(_IOC_NONE, kind, nr, 0)


def _iow(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, kind, nr, size)


def _iowr(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, kind, nr, size)


SGX_IOC_ENCLAVE_CREATE = _iow(SGX_MAGIC, 0x00, SgxEnclaveCreate.SIZE)
SGX_IOC_ENCLAVE_ADD_PAGES = _iowr(SGX_MAGIC, 0x01, SgxEnclaveAddPages.SIZE)
SGX_IOC_ENCLAVE_INIT = _iow(SGX_MAGIC, 0x02, SgxEnclaveInit.SIZE)
SGX_IOC_ENCLAVE_PROVISION = _iow(SGX_MAGIC, 0x03, SgxEnclaveProvision.SIZE)
SGX_IOC_VEPC_REMOVE_ALL = _io(SGX_MAGIC, 0x04)
SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS = _iowr(SGX_MAGIC, 0x05, SgxEnclaveRestrictPermissions.SIZE)
SGX_IOC_ENCLAVE_MODIFY_TYPES = _iowr(SGX_MAGIC, 0x06, SgxEnclaveModifyTypes.SIZE)
SGX_IOC_ENCLAVE_REMOVE_PAGES = _iowr(SGX_MAGIC, 0x07, SgxEnclaveRemovePages.SIZE)

assert (SGX_IOC_ENCLAVE_CREATE, SGX_IOC_ENCLAVE_ADD_PAGES, SGX_IOC_ENCLAVE_INIT,
        SGX_IOC_ENCLAVE_PROVISION, SGX_IOC_VEPC_REMOVE_ALL,
        SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, SGX_IOC_ENCLAVE_MODIFY_TYPES,
        SGX_IOC_ENCLAVE_REMOVE_PAGES) == (0x4008A400, 0xC030A401, 0x4008A402, 0x4008A403,
                                          0x0000A404, 0xC028A405, 0xC028A406, 0xC018A407)
