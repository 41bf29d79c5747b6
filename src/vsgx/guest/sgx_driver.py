"""The SGX device files: ``/dev/sgx_enclave`` (``arch/x86/kernel/cpu/sgx/driver.c`` file
operations and the ioctls of ``ioctl.c``) and ``/dev/sgx_provision`` (``main.c``).

Every ioctl copies its argument struct from the caller's memory (EFAULT when it cannot) and
checks in the kernel's order, with the kernel's errnos; each handler's docstring lists them.
Output fields (``count``, ``result``) are copied back even when the ioctl fails.

Not modelled: pending signals (no ERESTARTSYS/EINTR) and ``VM_MAYEXEC`` on the ADD_PAGES
source (every mapping in vsgx's guest may execute, so the EACCES for a noexec source cannot
occur). The enclave's backing store is :mod:`vsgx.guest.backing`, not a shmem file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from vsgx.arch import PAGE_SIZE, SIGSTRUCT, AttributesFlags, PageType, SgxError, Vector
from vsgx.guest.encl import Enclave, EnclPage, vm_max_prot_bits
from vsgx.guest.encls import encls_faulted, encls_trapnr
from vsgx.guest.epc import EpcAllocator
from vsgx.guest.mm import AddressSpace, Vma, VmFlags
from vsgx.guest.sgx import Cpuid
from vsgx.guest.uapi import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_TYPE,
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_PROVISION,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    SGX_PAGE_MEASURE,
    SGX_PAGE_TYPE_MASK,
    SGX_PAGE_TYPE_TCS,
    SGX_PAGE_TYPE_TRIM,
    SGX_SECINFO_PAGE_TYPE_MASK,
    SGX_SECINFO_PERMISSION_MASK,
    SGX_SECINFO_R,
    SGX_SECINFO_REG,
    SGX_SECINFO_RESERVED_MASK,
    SGX_SECINFO_SIZE,
    SGX_SECINFO_TCS,
    SGX_SECINFO_W,
    SGX_SIGSTRUCT_SIZE,
    Errno,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
    SgxEnclaveModifyTypes,
    SgxEnclaveProvision,
    SgxEnclaveRemovePages,
    SgxEnclaveRestrictPermissions,
    syscall_error,
)
from vsgx.guest.vfs import File, FileOperations, Task

_U64 = (1 << 64) - 1
SGX_ATTR_RESERVED_MASK = (1 << 3 | 1 << 6 | 0b11 << 8 | _U64 >> 11 << 11)
"""``asm/sgx.h``: ATTRIBUTES bits no enclave may ask for (3, 6, 8-9, 11-63)."""
SGX_ATTR_UNPRIV_MASK = int(AttributesFlags.DEBUG | AttributesFlags.MODE64BIT
                           | AttributesFlags.KSS | AttributesFlags.AEXNOTIFY)
"""The attributes any enclave may have; PROVISIONKEY needs SGX_IOC_ENCLAVE_PROVISION."""
SGX_MISC_RESERVED_MASK = 0xFFFF_FFFE
SGX_EINIT_SPIN_COUNT = 20
SGX_EINIT_SLEEP_COUNT = 50
_SECINFO_RWX = 0x7
_SIGSTRUCT_VENDORS = (0x0000, 0x8086)


@dataclass(frozen=True)
class SgxDriverConfig:
    """What ``sgx_drv_init`` and the CPU features leave for the driver: the reserved
    MISCSELECT/ATTRIBUTES/XFRM masks INIT checks SIGSTRUCT against, and X86_FEATURE_SGX2."""

    misc_reserved_mask: int
    attributes_reserved_mask: int
    xfrm_reserved_mask: int
    sgx2: bool

    @classmethod
    def from_cpuid(cls, cpuid: Cpuid) -> SgxDriverConfig:
        """The masks from CPUID.(12H,0).EBX and (12H,1), the XFRM mask only with OSXSAVE
        (CPUID.1:ECX[27]; otherwise the default ~0x3); SGX2 from CPUID.(12H,0).EAX[1]."""
        eax0, ebx0, _, _ = cpuid(0x12, 0)
        eax1, ebx1, ecx1, edx1 = cpuid(0x12, 1)
        xfrm_reserved = ~0x3 & _U64
        if cpuid(0x1, 0)[2] >> 27 & 1:
            xfrm_reserved = ~(edx1 << 32 | ecx1) & _U64
        return cls(misc_reserved_mask=(~ebx0 | SGX_MISC_RESERVED_MASK) & 0xFFFF_FFFF,
                   attributes_reserved_mask=(~(ebx1 << 32 | eax1) | SGX_ATTR_RESERVED_MASK)
                   & _U64,
                   xfrm_reserved_mask=xfrm_reserved, sgx2=bool(eax0 >> 1 & 1))


class SgxProvisionDevice(FileOperations):
    """``/dev/sgx_provision`` (``sgx_provision_fops``): no operations of its own; an open
    descriptor of it is what SGX_IOC_ENCLAVE_PROVISION asks for."""


class SgxEnclaveDevice(FileOperations):
    """``/dev/sgx_enclave`` (``sgx_encl_fops``): each open file is one enclave."""

    def __init__(self, epc: EpcAllocator, config: SgxDriverConfig) -> None:
        self.epc = epc
        self.config = config
        self._ioctls: dict[int, Callable[[Enclave, Task, int], None]] = {
            SGX_IOC_ENCLAVE_CREATE: self._create,
            SGX_IOC_ENCLAVE_ADD_PAGES: self._add_pages,
            SGX_IOC_ENCLAVE_INIT: self._init,
            SGX_IOC_ENCLAVE_PROVISION: self._provision,
            SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS: self._restrict_permissions,
            SGX_IOC_ENCLAVE_MODIFY_TYPES: self._modify_types,
            SGX_IOC_ENCLAVE_REMOVE_PAGES: self._remove_pages,
        }

    # -- file operations ----------------------------------------------------------------------

    def new_enclave(self) -> Enclave:
        """A new, empty enclave's bookkeeping (``sgx_open``'s ``kzalloc``)."""
        return Enclave(self.epc, sgx2=self.config.sgx2)

    def open(self, file: File) -> None:
        """``sgx_open``: a new, empty enclave."""
        file.private_data = self.new_enclave()

    def release(self, file: File) -> None:
        """``sgx_release``: the last descriptor and mapping are gone, the enclave dies."""
        _enclave(file).release()

    def get_unmapped_area(self, file: File, mm: AddressSpace, addr: int, length: int,
                          flags: int) -> int:
        """``sgx_get_unmapped_area``: MAP_PRIVATE is EINVAL; MAP_FIXED takes ``addr``."""
        if flags & MAP_TYPE == MAP_PRIVATE:
            raise syscall_error(Errno.EINVAL)
        if flags & MAP_FIXED:
            return addr
        return mm.arch_get_unmapped_area(addr, length, flags)

    def mmap(self, file: File, mm: AddressSpace, vma: Vma) -> None:
        """``sgx_mmap``: :meth:`Enclave.may_map` (EACCES), then the VMA gets the enclave's
        operations and ``VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP | VM_IO``."""
        encl = _enclave(file)
        encl.may_map(vma.start, vma.end, vma.flags)
        encl.mms.add(mm)
        vma.ops = encl
        vma.flags |= int(VmFlags.PFNMAP | VmFlags.DONTEXPAND | VmFlags.DONTDUMP | VmFlags.IO)

    def ioctl(self, file: File, current: Task, request: int, arg: int) -> int:
        """``sgx_ioctl``: EBUSY while another ioctl runs on the enclave, ENOTTY for an unknown
        request (the kernel's ENOIOCTLCMD), else the request's handler."""
        encl = _enclave(file)
        if not encl.begin_ioctl():
            raise syscall_error(Errno.EBUSY)
        try:
            handler = self._ioctls.get(request)
            if handler is None:
                raise syscall_error(Errno.ENOTTY)
            handler(encl, current, arg)
        finally:
            encl.end_ioctl()
        return 0

    # -- SGX_IOC_ENCLAVE_CREATE ---------------------------------------------------------------

    def _create(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_create``: EINVAL if already created; EFAULT for the struct or the
        4096-byte SECS; then :meth:`_encl_create`."""
        if encl.created:
            raise syscall_error(Errno.EINVAL)
        params = SgxEnclaveCreate.from_bytes(current.mm.copy_from_user(arg, SgxEnclaveCreate.SIZE))
        secs = current.mm.copy_from_user(params.src, PAGE_SIZE)
        self._encl_create(encl, secs, current.mm.node)

    def _encl_create(self, encl: Enclave, secs: bytes, node: int) -> None:
        """``sgx_encl_create``: EINVAL unless SECS.SIZE is a power of two; ENOMEM when no EPC
        page is left for the first VA page or the SECS; EIO when ECREATE fails (any other bad
        SECS field, e.g. a BASEADDR not aligned to SIZE). Only DEBUG, MODE64BIT, KSS and
        AEXNOTIFY are allowed attributes from now on."""
        size = int.from_bytes(secs[0:8], "little")
        if size == 0 or size & (size - 1):
            raise syscall_error(Errno.EINVAL)
        va_page = encl.grow(reclaim=True, node=node)
        try:
            secs_page = self.epc.alloc(encl, reclaim=True, node=node)
        except OSError:
            encl.shrink(va_page)
            raise
        if self.epc.encls.ecreate(secs, secs_page.pa):
            self.epc.encl_free(secs_page)
            encl.shrink(va_page)
            raise syscall_error(Errno.EIO)
        encl.secs = secs_page
        encl.attributes = int.from_bytes(secs[48:56], "little")
        encl.debug = bool(encl.attributes & AttributesFlags.DEBUG)
        encl.base = int.from_bytes(secs[8:16], "little")
        encl.size = size
        encl.attributes_mask = SGX_ATTR_UNPRIV_MASK
        encl.created = True

    # -- SGX_IOC_ENCLAVE_ADD_PAGES ------------------------------------------------------------

    def _add_pages(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_add_pages``: EINVAL unless created and not initialized; EFAULT for
        the struct; EINVAL for an unaligned ``src`` or a bad offset/length
        (:func:`validate_offset_length`); EFAULT for the SECINFO; EINVAL for a bad SECINFO
        (:func:`validate_secinfo`); then page by page :meth:`_add_page` until one fails.
        ``count`` is the bytes added; flags other than SGX_PAGE_MEASURE are ignored."""
        if not encl.created or encl.initialized:
            raise syscall_error(Errno.EINVAL)
        mm = current.mm
        params = SgxEnclaveAddPages.from_bytes(mm.copy_from_user(arg, SgxEnclaveAddPages.SIZE))
        if params.src % PAGE_SIZE:
            raise syscall_error(Errno.EINVAL)
        validate_offset_length(encl, params.offset, params.length)
        secinfo = mm.copy_from_user(params.secinfo, SGX_SECINFO_SIZE)
        validate_secinfo(secinfo)
        done = 0
        failure: OSError | None = None
        while done < params.length:
            try:
                self._add_page(encl, mm, params.src + done, params.offset + done, secinfo,
                               params.flags)
            except OSError as exc:
                failure = exc
                break
            done += PAGE_SIZE
        mm.copy_to_user(arg, params.replace(count=done).to_bytes())
        if failure is not None:
            raise failure

    def _add_page(self, encl: Enclave, mm: AddressSpace, src: int, offset: int, secinfo: bytes,
                  flags: int) -> None:
        """``sgx_encl_add_page``: ENOMEM without EPC for the page or a new VA page; EBUSY when
        the enclave already has a page at ``offset``; EFAULT when ``src`` is not readable
        ordinary memory; EIO when EADD or an EEXTEND fails. The page's contents go through a
        kernel page; with SGX_PAGE_MEASURE all 16 chunks are EEXTENDed."""
        node = mm.node
        epc_page = self.epc.alloc(None, reclaim=True, node=node)
        try:
            va_page = encl.grow(reclaim=True, node=node)
        except OSError:
            self.epc.encl_free(epc_page)
            raise
        addr = encl.base + offset
        secinfo_flags = int.from_bytes(secinfo[0:8], "little")
        kind = PageType(secinfo_flags >> 8 & 0xFF)
        with mm.lock, encl.lock:
            if addr in encl.page_array:  # xa_insert
                encl.shrink(va_page)
                self.epc.encl_free(epc_page)
                raise syscall_error(Errno.EBUSY)
            entry = EnclPage(addr, vm_max_prot_bits(secinfo_flags), kind, epc_page)
            epc_page.owner = entry
            encl.page_array[addr] = entry
            try:
                contents = mm.get_user_page(src)
                if self.epc.encls.eadd(encl.secs_pa, addr, contents, secinfo, epc_page.pa):
                    raise syscall_error(Errno.EIO)
                encl.secs_child_cnt += 1  # not undone if EEXTEND fails, as in Linux
                if flags & SGX_PAGE_MEASURE and self.epc.encls.eextend_page(encl.secs_pa,
                                                                            epc_page.pa):
                    raise syscall_error(Errno.EIO)
            except OSError:
                del encl.page_array[addr]
                encl.shrink(va_page)
                self.epc.encl_free(epc_page)
                raise
            self.epc.reclaimer.mark_page_reclaimable(epc_page, encl)

    # -- SGX_IOC_ENCLAVE_INIT -----------------------------------------------------------------

    def _init(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_init``: EINVAL unless created and not initialized; EFAULT for the
        struct or the 1808-byte SIGSTRUCT; EINVAL for a VENDOR other than 0 and 0x8086; then
        :meth:`_encl_init`."""
        if not encl.created or encl.initialized:
            raise syscall_error(Errno.EINVAL)
        params = SgxEnclaveInit.from_bytes(current.mm.copy_from_user(arg, SgxEnclaveInit.SIZE))
        raw = current.mm.copy_from_user(params.sigstruct, SGX_SIGSTRUCT_SIZE)
        sigstruct = SIGSTRUCT.from_bytes(raw, strict=False)
        if sigstruct.vendor not in _SIGSTRUCT_VENDORS:
            raise syscall_error(Errno.EINVAL)
        self._encl_init(encl, sigstruct, raw)

    def _encl_init(self, encl: Enclave, sigstruct: SIGSTRUCT, raw: bytes) -> None:
        """``sgx_encl_init``: EACCES for SECS attributes beyond ``attributes_mask`` (e.g.
        PROVISIONKEY without SGX_IOC_ENCLAVE_PROVISION); EINVAL for reserved ATTRIBUTES,
        MISCSELECT or XFRM bits the SIGSTRUCT sets under its masks; then EINIT on the FLC path
        (the LE hash MSRs set to the SIGSTRUCT's MRSIGNER, a zeroed token), retried while it
        reports SGX_UNMASKED_EVENT. A fault is EIO, any SGX error EPERM."""
        config = self.config
        if encl.attributes & ~encl.attributes_mask:
            raise syscall_error(Errno.EACCES)
        attrs, mask = sigstruct.attributes, sigstruct.attributemask
        if (attrs.flags & mask.flags & config.attributes_reserved_mask
                or sigstruct.miscselect & sigstruct.miscmask & config.misc_reserved_mask
                or attrs.xfrm & mask.xfrm & config.xfrm_reserved_mask):
            raise syscall_error(Errno.EINVAL)
        mrsigner = hashlib.sha256(sigstruct.modulus).digest()
        with encl.lock:
            for _ in range(SGX_EINIT_SLEEP_COUNT * SGX_EINIT_SPIN_COUNT):
                ret = self.epc.encls.einit(raw, encl.secs_pa, mrsigner)
                if ret != SgxError.SGX_UNMASKED_EVENT:
                    break
            if encls_faulted(ret):
                raise syscall_error(Errno.EIO)
            if ret:
                raise syscall_error(Errno.EPERM)
            encl.initialized = True

    # -- SGX_IOC_ENCLAVE_PROVISION ------------------------------------------------------------

    def _provision(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_provision`` / ``sgx_set_attribute``: EFAULT for the struct; EINVAL
        unless ``fd`` (as an unsigned int) is an open ``/dev/sgx_provision``; then PROVISIONKEY
        joins the allowed attributes (CREATE resets them, so this counts only after it)."""
        params = SgxEnclaveProvision.from_bytes(
            current.mm.copy_from_user(arg, SgxEnclaveProvision.SIZE))
        file = current.fget(params.fd & 0xFFFF_FFFF)
        if file is None or not isinstance(file.ops, SgxProvisionDevice):
            raise syscall_error(Errno.EINVAL)
        encl.attributes_mask |= int(AttributesFlags.PROVISIONKEY)

    # -- SGX2 ---------------------------------------------------------------------------------

    def _sgx2_ready(self, encl: Enclave) -> None:
        """``sgx_ioc_sgx2_ready``: ENODEV without SGX2, EINVAL before INIT."""
        if not self.config.sgx2:
            raise syscall_error(Errno.ENODEV)
        if not encl.initialized:
            raise syscall_error(Errno.EINVAL)

    def _etrack(self, encl: Enclave) -> None:
        """``sgx_enclave_etrack``: ETRACK, once more if it fails, else EFAULT. Linux sends IPIs
        between and after to force threads out of the enclave; threads inside a vsgx enclave
        belong to the execution engine, which interrupts them itself."""
        encls = self.epc.encls
        if encls.etrack(encl.secs_pa) and encls.etrack(encl.secs_pa):
            raise syscall_error(Errno.EFAULT)

    def _restrict_permissions(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_restrict_permissions``: :meth:`_sgx2_ready`; EFAULT for the
        struct; EINVAL for a bad offset/length, ``permissions`` beyond RWX or W without R, or
        non-zero ``result``/``count``. Then per page: EFAULT if the enclave has no page there,
        EINVAL if it is not PT_REG, EMODPR (a fault is EFAULT; an SGX error goes to ``result``
        with EFAULT) and ETRACK. ``vm_max_prot_bits`` stay as they were."""
        self._sgx2_ready(encl)
        mm = current.mm
        params = SgxEnclaveRestrictPermissions.from_bytes(
            mm.copy_from_user(arg, SgxEnclaveRestrictPermissions.SIZE))
        validate_offset_length(encl, params.offset, params.length)
        perms = params.permissions
        if (perms & ~SGX_SECINFO_PERMISSION_MASK
                or (perms & SGX_SECINFO_W and not perms & SGX_SECINFO_R)
                or params.result or params.count):
            raise syscall_error(Errno.EINVAL)
        result = 0
        done = 0
        try:
            while done < params.length:
                addr = encl.base + params.offset + done
                with encl.lock:
                    entry = encl.load_page(addr)
                    if entry.type != PageType.PT_REG:
                        raise syscall_error(Errno.EINVAL)
                    ret = self.epc.encls.emodpr(perms, entry.epc_page.pa)
                    if ret:
                        if not encls_faulted(ret):
                            result = ret
                        raise syscall_error(Errno.EFAULT)
                    self._etrack(encl)
                done += PAGE_SIZE
        finally:
            mm.copy_to_user(arg, params.replace(result=result, count=done).to_bytes())

    def _modify_types(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_modify_types``: :meth:`_sgx2_ready`; EFAULT for the struct; EINVAL
        for a bad offset/length, ``page_type`` beyond 8 bits, non-zero ``result``/``count``,
        or a type other than TCS and TRIM. Then per page: EFAULT if the enclave has no page
        there; EINVAL unless REG→TCS, REG→TRIM or TCS→TRIM; for REG→TCS, EPERM unless the
        page may be mapped read/write, which becomes its maximum protection, and its PTEs are
        zapped; EMODT (a fault is EFAULT; an SGX error goes to ``result`` with EFAULT) and
        ETRACK; then the kernel records the new type."""
        self._sgx2_ready(encl)
        mm = current.mm
        params = SgxEnclaveModifyTypes.from_bytes(
            mm.copy_from_user(arg, SgxEnclaveModifyTypes.SIZE))
        validate_offset_length(encl, params.offset, params.length)
        if params.page_type & ~SGX_PAGE_TYPE_MASK or params.result or params.count:
            raise syscall_error(Errno.EINVAL)
        result = 0
        done = 0
        try:
            page_type = params.page_type
            if page_type not in (SGX_PAGE_TYPE_TCS, SGX_PAGE_TYPE_TRIM):
                raise syscall_error(Errno.EINVAL)
            while done < params.length:
                self._modify_type(encl, encl.base + params.offset + done, PageType(page_type))
                done += PAGE_SIZE
        except _EnclsError as exc:
            result = exc.ret
            raise syscall_error(Errno.EFAULT) from None
        finally:
            mm.copy_to_user(arg, params.replace(result=result, count=done).to_bytes())

    def _modify_type(self, encl: Enclave, addr: int, page_type: PageType) -> None:
        """One page of :meth:`_modify_types` (``sgx_enclave_modify_types``' loop body)."""
        rw = int(VmFlags.READ | VmFlags.WRITE)
        encl.lock.acquire()
        try:
            entry = encl.load_page(addr)
            if not (entry.type == PageType.PT_REG or (
                    entry.type == PageType.PT_TCS and page_type == PageType.PT_TRIM)):
                raise syscall_error(Errno.EINVAL)
            max_prot_restore = entry.vm_max_prot_bits
            if entry.type == PageType.PT_REG and page_type == PageType.PT_TCS:
                if ~entry.vm_max_prot_bits & rw:
                    raise syscall_error(Errno.EPERM)
                entry.vm_max_prot_bits = rw
                encl.lock.release()  # sgx_zap_enclave_ptes takes the mmap locks
                try:
                    encl.zap_ptes(addr)
                finally:
                    encl.lock.acquire()
            ret = self.epc.encls.emodt(int(page_type) << 8, entry.epc_page.pa)
            if ret:
                entry.vm_max_prot_bits = max_prot_restore
                if encls_faulted(ret):
                    raise syscall_error(Errno.EFAULT)
                raise _EnclsError(ret)
            self._etrack(encl)
            entry.type = page_type
        finally:
            encl.lock.release()

    def _remove_pages(self, encl: Enclave, current: Task, arg: int) -> None:
        """``sgx_ioc_enclave_remove_pages``: :meth:`_sgx2_ready`; EFAULT for the struct; EINVAL
        for a bad offset/length or a non-zero ``count``. Then per page: EFAULT if the enclave
        has no page there; EPERM unless it is PT_TRIM; EPERM unless an EMODPR probe faults with
        #PF, the proof that the enclave EACCEPTed the trim (a trimmed page not yet accepted is
        SGX_PAGE_NOT_MODIFIABLE); then its PTEs are zapped and the page is EREMOVEd."""
        self._sgx2_ready(encl)
        mm = current.mm
        params = SgxEnclaveRemovePages.from_bytes(
            mm.copy_from_user(arg, SgxEnclaveRemovePages.SIZE))
        validate_offset_length(encl, params.offset, params.length)
        if params.count:
            raise syscall_error(Errno.EINVAL)
        done = 0
        try:
            while done < params.length:
                self._remove_page(encl, encl.base + params.offset + done)
                done += PAGE_SIZE
        finally:
            mm.copy_to_user(arg, params.replace(count=done).to_bytes())

    def _remove_page(self, encl: Enclave, addr: int) -> None:
        """One page of :meth:`_remove_pages` (``sgx_encl_remove_pages``' loop body)."""
        with encl.lock:
            entry = encl.load_page(addr)
            if entry.type != PageType.PT_TRIM:
                raise syscall_error(Errno.EPERM)
            ret = self.epc.encls.emodpr(_SECINFO_RWX, entry.epc_page.pa)
            if not (encls_faulted(ret) and encls_trapnr(ret) == Vector.PF):
                raise syscall_error(Errno.EPERM)
        encl.zap_ptes(addr)
        with encl.lock:
            self.epc.encl_free(entry.epc_page)
            encl.secs_child_cnt -= 1
            del encl.page_array[addr]
            encl.shrink(None)


class _EnclsError(Exception):
    """An SGX error code from EMODT, reported in ``result``."""

    def __init__(self, ret: int) -> None:
        super().__init__(ret)
        self.ret = ret


def _enclave(file: File) -> Enclave:
    encl = file.private_data
    assert isinstance(encl, Enclave)
    return encl


def validate_offset_length(encl: Enclave, offset: int, length: int) -> None:
    """``sgx_validate_offset_length``: EINVAL unless ``offset`` is page-aligned, ``length`` a
    non-zero multiple of the page size, the sum does not wrap, and the last page lies below
    the enclave's SIZE."""
    if (offset % PAGE_SIZE or not length or length % PAGE_SIZE or offset + length > _U64
            or offset + length - PAGE_SIZE >= encl.size):
        raise syscall_error(Errno.EINVAL)


def validate_secinfo(secinfo: bytes) -> None:
    """``sgx_validate_secinfo``: EINVAL unless the type is REG or TCS, W comes with R, a TCS
    has no permissions (the CPU would zero them, breaking the measurement), no reserved flag
    bit is set (PENDING, MODIFIED and PR included) and the 56 reserved bytes are zero."""
    flags = int.from_bytes(secinfo[0:8], "little")
    perm = flags & SGX_SECINFO_PERMISSION_MASK
    kind = flags & SGX_SECINFO_PAGE_TYPE_MASK
    if (kind not in (SGX_SECINFO_REG, SGX_SECINFO_TCS)
            or (perm & SGX_SECINFO_W and not perm & SGX_SECINFO_R)
            or (kind == SGX_SECINFO_TCS and perm)
            or flags & SGX_SECINFO_RESERVED_MASK or any(secinfo[8:])):
        raise syscall_error(Errno.EINVAL)
