"""The SGX2 page ioctls of the Linux SGX interface, issued the way a Linux untrusted runtime
issues them (``Documentation/arch/x86/sgx.rst``, "Enclave Page Cache Map modifications"):

* ``SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS``: EMODPR of each page to fewer permissions, then
  ETRACK. The enclave must EACCEPT each page with SECINFO = REG | the new permissions | PR
  before the restriction is guaranteed to be in force;
* ``SGX_IOC_ENCLAVE_MODIFY_TYPES``: EMODT of each page to TCS or TRIM, then ETRACK. The enclave
  EACCEPTs each page with SECINFO = the new type | MODIFIED;
* ``SGX_IOC_ENCLAVE_REMOVE_PAGES``: EREMOVE of pages the enclave EACCEPTed as TRIM.

Offsets and lengths are enclave-relative, as in the uapi structs. Each ioctl works page by
page and stops at the first failure; ``count`` (bytes done) and, for the first two,
``result`` (the SGX error code of a failed EMODPR/EMODT) are copied back even when it fails.
Linux may also return success with ``count < length`` when a signal is pending after some
pages (a restart then continues from ``offset + count``), so these functions, like user space
must, issue the ioctl again for the rest until all of it is done or it fails. A failure raises
:class:`PageIoctlError`, an :class:`OSError` with the Linux errno that also carries the total
``count`` done before it and the kernel's ``result``.

The functions here check nothing themselves: whatever they are given goes to the kernel,
which answers with its errnos (EINVAL for a misaligned or out-of-range offset/length, EFAULT
for an offset with no enclave page, EPERM for removing a page that was not trimmed and
accepted, ENODEV without SGX2). :class:`vsgx.sdk.Enclave`'s methods of the same names check
their arguments first and raise :class:`ValueError` for what the kernel would refuse as
EINVAL.
"""

from __future__ import annotations

from collections.abc import Callable

from vsgx.arch import PAGE_SIZE
from vsgx.guest.process import Process
from vsgx.guest.uapi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    STRERROR,
    Errno,
    SgxEnclaveModifyTypes,
    SgxEnclaveRemovePages,
    SgxEnclaveRestrictPermissions,
)

_U64 = (1 << 64) - 1
_Params = Callable[[int, int],
                   SgxEnclaveRestrictPermissions | SgxEnclaveModifyTypes | SgxEnclaveRemovePages]


class PageIoctlError(OSError):
    """An SGX2 page ioctl failed. ``errno`` is Linux's; ``count`` is how many bytes of the
    range were done before the failing page (at ``offset + count``); ``result`` is the SGX
    error code EMODPR or EMODT reported (0 unless the kernel set it)."""

    def __init__(self, code: int, operation: str, offset: int, length: int, count: int,
                 result: int) -> None:
        text = STRERROR.get(Errno(code), f"errno {code}") if code in Errno._value2member_map_ \
            else f"errno {code}"
        name = Errno(code).name if code in Errno._value2member_map_ else str(code)
        detail = f"{operation} of offset {offset:#x}, length {length:#x}: {text} ({name}) " \
                 f"after {count:#x} bytes"
        if result:
            detail += f"; SGX error code {result}"
        super().__init__(code, detail)
        self.operation, self.offset, self.length = operation, offset, length
        self.count, self.result = count, result


def restrict_permissions(process: Process, fd: int, offset: int, length: int,
                         permissions: int) -> int:
    """``SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS`` on the enclave open as ``fd``: the EPCM
    permissions of ``[offset, offset + length)`` become ``permissions`` (SGX_SECINFO_R/W/X).
    Returns the bytes done (``length``)."""
    return _run(process, fd, "SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS",
                SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, offset, length,
                lambda o, n: SgxEnclaveRestrictPermissions(offset=o, length=n,
                                                           permissions=permissions))


def modify_types(process: Process, fd: int, offset: int, length: int, page_type: int) -> int:
    """``SGX_IOC_ENCLAVE_MODIFY_TYPES`` on the enclave open as ``fd``: the pages of
    ``[offset, offset + length)`` become ``page_type`` (SGX_PAGE_TYPE_TCS or _TRIM). Returns
    the bytes done (``length``)."""
    return _run(process, fd, "SGX_IOC_ENCLAVE_MODIFY_TYPES", SGX_IOC_ENCLAVE_MODIFY_TYPES,
                offset, length,
                lambda o, n: SgxEnclaveModifyTypes(offset=o, length=n, page_type=page_type))


def remove_pages(process: Process, fd: int, offset: int, length: int) -> int:
    """``SGX_IOC_ENCLAVE_REMOVE_PAGES`` on the enclave open as ``fd``: EREMOVE the trimmed,
    accepted pages of ``[offset, offset + length)``. Returns the bytes removed (``length``)."""
    return _run(process, fd, "SGX_IOC_ENCLAVE_REMOVE_PAGES", SGX_IOC_ENCLAVE_REMOVE_PAGES,
                offset, length, lambda o, n: SgxEnclaveRemovePages(offset=o, length=n))


def _run(process: Process, fd: int, operation: str, request: int, offset: int, length: int,
         params: _Params) -> int:
    """Issue ``request`` until the whole range is done: the struct goes in a page of the
    process's memory, passed by address; ``count`` and ``result`` are read back after each
    call, failed or not."""
    arg = process.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    done = 0
    try:
        while True:
            sent = params((offset + done) & _U64, (length - done) & _U64)
            process.write_memory(arg, sent.to_bytes())
            failure: OSError | None = None
            try:
                process.ioctl(fd, request, arg)
            except OSError as exc:
                failure = exc
            back = type(sent).from_bytes(process.read_memory(arg, sent.SIZE))
            done += back.count
            result = getattr(back, "result", 0)
            if failure is not None:
                raise PageIoctlError(failure.errno or 0, operation, offset, length, done,
                                     result) from None
            if done >= length:
                return done
            if not back.count:  # success without progress: Linux never does this
                raise PageIoctlError(int(Errno.EIO), operation, offset, length, done, result)
    finally:
        process.munmap(arg, PAGE_SIZE)

