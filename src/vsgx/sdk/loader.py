"""Loading an enclave image into a guest process through the Linux SGX interface, the way a
Linux untrusted runtime does (``Documentation/arch/x86/sgx.rst``; Intel's and Gramine's
loaders follow the same steps):

1. reserve ELRANGE: an anonymous ``PROT_NONE`` mapping, naturally aligned to the enclave's
   power-of-two size (ECREATE demands BASEADDR aligned to SIZE);
2. ``SGX_IOC_ENCLAVE_CREATE`` with the SECS;
3. ``SGX_IOC_ENCLAVE_ADD_PAGES`` for every region, ``SGX_PAGE_MEASURE`` set, in layout order;
4. ``SGX_IOC_ENCLAVE_PROVISION`` first when the enclave asks for the PROVISIONKEY attribute;
5. ``SGX_IOC_ENCLAVE_INIT`` with the SIGSTRUCT;
6. map each region ``MAP_SHARED | MAP_FIXED`` from the enclave's descriptor with its pages'
   protection; guard pages stay ``PROT_NONE`` and the SGX2 dynamic range is mapped read/write
   so the kernel EAUGs pages on first touch.

Linux reports a failed EINIT only as EPERM (the SGX error code goes to a debug message), so
the loader names the cause itself from what it knows: a SIGSTRUCT whose ENCLAVEHASH differs
from the image's MRENCLAVE is SGX_INVALID_MEASUREMENT.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from vsgx.arch import PAGE_SIZE, SECINFO, SIGSTRUCT
from vsgx.guest.process import Process
from vsgx.guest.uapi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_IOC_ENCLAVE_PROVISION,
    SGX_PAGE_MEASURE,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
    SgxEnclaveProvision,
)
from vsgx.sdk.image import EnclaveImage

_SCRATCH = 1 << 20
"""Bytes of untrusted staging memory for ioctl arguments and page contents."""


class LoadError(Exception):
    """Loading failed; ``reason`` is the SGX status name or errno name behind it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LoadedEnclave:
    """An initialized enclave mapped in a process."""

    process: Process
    fd: int
    base: int
    image: EnclaveImage
    sigstruct: SIGSTRUCT

    def tcs_address(self, thread: int) -> int:
        """The linear address of thread ``thread``'s TCS."""
        return self.base + self.image.layout.threads[thread].tcs

    def unload(self) -> None:
        """Unmap ELRANGE and close the descriptor; the kernel frees the EPC when the last
        reference goes (``sgx_encl_release``)."""
        self.process.munmap(self.base, self.image.layout.size)
        self.process.close(self.fd)


class _Staging:
    """A staging buffer in the process: contents are written there and passed by address."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.addr = process.mmap(0, _SCRATCH, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS)

    def put(self, data: bytes, at: int = 0) -> int:
        self.process.write_memory(self.addr + at, data)
        return self.addr + at

    def close(self) -> None:
        self.process.munmap(self.addr, _SCRATCH)


def _oserror(step: str, exc: OSError) -> LoadError:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return LoadError(f"{step}: {os.strerror(exc.errno or 0)} ({name})", name)


def _reserve(process: Process, size: int) -> int:
    """ELRANGE: ``size`` bytes aligned to ``size``, reserved PROT_NONE."""
    area = process.mmap(0, 2 * size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
    base = -(-area // size) * size
    if base > area:
        process.munmap(area, base - area)
    if area + 2 * size > base + size:
        process.munmap(base + size, area + 2 * size - base - size)
    return base


def load(process: Process, image: EnclaveImage, sigstruct: SIGSTRUCT) -> LoadedEnclave:
    """Create, add, initialize and map ``image`` in ``process``; :class:`LoadError` on any
    failure, with nothing left behind."""
    try:
        fd = process.open("/dev/sgx_enclave", O_RDWR)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise LoadError("/dev/sgx_enclave does not exist in the guest: its CPU needs SGX "
                            "and SGX launch control (-cpu host or +sgx,+sgxlc)",
                            "ENOENT") from None
        raise _oserror("open /dev/sgx_enclave", exc) from None
    size = image.layout.size
    base = _reserve(process, size)
    staging = _Staging(process)
    try:
        _build(process, fd, base, image, sigstruct, staging)
    except BaseException:
        process.munmap(base, size)
        process.close(fd)
        raise
    finally:
        staging.close()
    return LoadedEnclave(process, fd, base, image, sigstruct)


def _build(process: Process, fd: int, base: int, image: EnclaveImage, sigstruct: SIGSTRUCT,
           staging: _Staging) -> None:
    secs = staging.put(image.secs(base).to_bytes())
    arg = staging.put(SgxEnclaveCreate(src=secs).to_bytes(), PAGE_SIZE)
    try:
        process.ioctl(fd, SGX_IOC_ENCLAVE_CREATE, arg)
    except OSError as exc:
        raise _oserror("SGX_IOC_ENCLAVE_CREATE", exc) from None
    chunk = _SCRATCH - 2 * PAGE_SIZE
    for region in image.layout.added:
        secinfo = staging.put(SECINFO(region.secinfo).to_bytes())
        for start in range(0, region.size, chunk):
            length = min(chunk, region.size - start)
            src = staging.put(region.data[start:start + length], 2 * PAGE_SIZE)
            params = SgxEnclaveAddPages(src=src, offset=region.offset + start, length=length,
                                        secinfo=secinfo, flags=SGX_PAGE_MEASURE)
            arg = staging.put(params.to_bytes(), PAGE_SIZE)
            try:
                process.ioctl(fd, SGX_IOC_ENCLAVE_ADD_PAGES, arg)
            except OSError as exc:
                raise _oserror(f"SGX_IOC_ENCLAVE_ADD_PAGES ({region.name})", exc) from None
    if image.config.provisionkey:
        _allow_provisioning(process, fd, staging)
    arg = staging.put(sigstruct.to_bytes(), 2 * PAGE_SIZE)
    try:
        process.ioctl(fd, SGX_IOC_ENCLAVE_INIT,
                      staging.put(SgxEnclaveInit(sigstruct=arg).to_bytes(), PAGE_SIZE))
    except OSError as exc:
        raise _einit_error(image, sigstruct, exc) from None
    for region in image.layout.regions:
        process.mmap(base + region.offset, region.size, region.prot, MAP_SHARED | MAP_FIXED, fd)


def _allow_provisioning(process: Process, fd: int, staging: _Staging) -> None:
    try:
        provision = process.open("/dev/sgx_provision", O_RDWR)
    except OSError as exc:
        raise _oserror("the enclave asks for PROVISIONKEY: open /dev/sgx_provision",
                       exc) from None
    try:
        arg = staging.put(SgxEnclaveProvision(fd=provision).to_bytes(), PAGE_SIZE)
        process.ioctl(fd, SGX_IOC_ENCLAVE_PROVISION, arg)
    except OSError as exc:
        raise _oserror("SGX_IOC_ENCLAVE_PROVISION", exc) from None
    finally:
        process.close(provision)


def _einit_error(image: EnclaveImage, sigstruct: SIGSTRUCT, exc: OSError) -> LoadError:
    """Name why EINIT refused, from what the loader can check itself (SDM EINIT's order:
    signature, then attributes and MISCSELECT under their masks, then the measurement)."""
    if exc.errno != errno.EPERM:
        return _oserror("SGX_IOC_ENCLAVE_INIT", exc)
    secs = image.secs()
    attrs, mask = sigstruct.attributes, sigstruct.attributemask
    if ((secs.attributes.flags & mask.flags) != (attrs.flags & mask.flags)
            or (secs.attributes.xfrm & mask.xfrm) != (attrs.xfrm & mask.xfrm)):
        reason = "SGX_INVALID_ATTRIBUTE"
        detail = "the SIGSTRUCT's ATTRIBUTES do not match the enclave's under ATTRIBUTEMASK"
    elif (secs.miscselect & sigstruct.miscmask) != (sigstruct.miscselect & sigstruct.miscmask):
        reason = "SGX_INVALID_ATTRIBUTE"
        detail = "the SIGSTRUCT's MISCSELECT does not match the enclave's under MISCMASK"
    elif sigstruct.enclavehash != (measured := image.measure()):
        reason = "SGX_INVALID_MEASUREMENT"
        detail = (f"the SIGSTRUCT was signed for MRENCLAVE {sigstruct.enclavehash.hex()}, "
                  f"the enclave as loaded measures {measured.hex()} (a different build or "
                  "layout)")
    else:
        reason = "EPERM"
        detail = "the platform refused it (see the guest's launch-control settings)"
    return LoadError(f"EINIT failed: {reason}: {detail}", reason)
