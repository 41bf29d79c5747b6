"""The SGX2 ioctls (RESTRICT_PERMISSIONS, MODIFY_TYPES, REMOVE_PAGES): every errno in the
kernel's order, and the EMODPR/EMODT/ETRACK/EACCEPT/EREMOVE flows they drive. EACCEPT, which
the enclave itself executes, is run with the processor model's leaf."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from sgx_user import BASE, EnclaveBuilder, User, machine, tcs_page

import vsgx
from vsgx.arch import PAGE_SIZE, SECINFO, PageType, SecinfoFlags, SgxError, Struct
from vsgx.cpu import EnclaveContext
from vsgx.cpu.enclu import accept
from vsgx.guest import (
    PROT_READ,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    SGX_PAGE_TYPE_REG,
    SGX_PAGE_TYPE_TCS,
    SGX_PAGE_TYPE_TRIM,
    SGX_SECINFO_R,
    SGX_SECINFO_W,
    SgxEnclaveModifyTypes,
    SgxEnclaveRemovePages,
    SgxEnclaveRestrictPermissions,
)

P = PAGE_SIZE
UNMAPPED = 0x3333_0000_0000
NOT_MODIFIABLE = int(SgxError.SGX_PAGE_NOT_MODIFIABLE)
R, W, X = int(SecinfoFlags.R), int(SecinfoFlags.W), int(SecinfoFlags.X)
PENDING, MODIFIED, PR = (int(SecinfoFlags.PENDING), int(SecinfoFlags.MODIFIED),
                         int(SecinfoFlags.PR))
REQUESTS = [SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, SGX_IOC_ENCLAVE_MODIFY_TYPES,
            SGX_IOC_ENCLAVE_REMOVE_PAGES]
PENDING_OFF = 0x8000
"""Where :func:`enclave` EAUGs a page it leaves pending."""


def enclave(builder: EnclaveBuilder) -> EnclaveBuilder:
    """An initialized standard enclave, mapped, with a pending EAUG page at 0x8000."""
    builder.build().map_standard()
    assert builder.proc.mm.handle_fault(BASE + PENDING_OFF, write=True)
    return builder


def epcm(vm: vsgx.Machine, builder: EnclaveBuilder, offset: int) -> tuple[int, int]:
    """(page type, SECINFO-style bits) of the EPCM entry behind an enclave page."""
    assert vm.processor is not None
    idx = vm.processor.epc.index_of(builder.enclave.page_array[BASE + offset].epc_page.pa)
    assert idx is not None
    entry = vm.processor.epcm.entry(idx)
    bits = (R * entry.r | W * entry.w | X * entry.x | PENDING * entry.pending
            | MODIFIED * entry.modified | PR * entry.pr)
    return int(entry.page_type), bits


def eaccept(vm: vsgx.Machine, builder: EnclaveBuilder, offset: int, flags: int) -> SgxError:
    """The enclave's EACCEPT of the page at ``offset``, with the process's page tables."""
    cpu = vm.processor
    assert cpu is not None
    mm = builder.proc.mm
    la = BASE + offset
    assert mm.handle_fault(la)

    def translate(addr: int) -> int | None:
        pte = mm.translate(addr)
        return None if pte is None else pte[0] + addr % P

    ctx = EnclaveContext(secs=cpu.epc.index_of(builder.enclave.secs_pa) or 0,
                         translate=translate)
    with cpu.lock:
        return accept(cpu, ctx, SECINFO(flags), la).code


def errno_of(user: User, fd: int, request: int, params: Struct) -> tuple[int, Any]:
    err = user.errno(fd, request, params)
    return err, user.result(type(params))


# -- readiness and argument checks -------------------------------------------------------------

@pytest.mark.parametrize("request_", REQUESTS, ids=["restrict", "modify", "remove"])
def test_sgx2_ioctls_need_sgx2_then_init_then_a_struct(builder: EnclaveBuilder,
                                                       request_: int) -> None:
    builder.open().create().standard()
    fd, proc = builder.fd, builder.proc
    for arg, err in ((UNMAPPED, errno.EINVAL), (builder.user.buf, errno.EINVAL)):
        with pytest.raises(OSError) as info:
            proc.ioctl(fd, request_, arg)
        assert info.value.errno == err
    builder.init()
    with pytest.raises(OSError) as info:
        proc.ioctl(fd, request_, UNMAPPED)
    assert info.value.errno == errno.EFAULT
    zeroed = builder.user.put(bytes(40))  # the SGX2 probe: EINVAL on an SGX2 kernel
    with pytest.raises(OSError) as info:
        proc.ioctl(fd, request_, zeroed)
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("request_", REQUESTS, ids=["restrict", "modify", "remove"])
def test_sgx2_ioctls_without_sgx2_are_enodev(request_: int) -> None:
    with machine(cpu="host,-sgx2") as vm:
        builder = EnclaveBuilder(User(vm.guest.spawn())).build()
        with pytest.raises(OSError) as info:
            builder.proc.ioctl(builder.fd, request_, UNMAPPED)
        assert info.value.errno == errno.ENODEV


BOUNDS = [{"offset": 1, "length": P}, {"offset": 0, "length": 0},
          {"offset": 0, "length": P + 1}, {"offset": 0x10000, "length": P},
          {"offset": 0xF000, "length": 2 * P}]


@pytest.mark.parametrize("fields", [
    *BOUNDS, {"permissions": 8}, {"permissions": SGX_SECINFO_W}, {"result": 1}, {"count": P}])
def test_restrict_permissions_argument_errors(builder: EnclaveBuilder,
                                              fields: dict[str, Any]) -> None:
    enclave(builder)
    params = SgxEnclaveRestrictPermissions(offset=0x1000, length=P,
                                           permissions=SGX_SECINFO_R).replace(**fields)
    assert errno_of(builder.user, builder.fd, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
                    params) == (errno.EINVAL, params)  # nothing copied back


@pytest.mark.parametrize("fields", [
    *BOUNDS, {"page_type": 0x100 | SGX_PAGE_TYPE_TCS}, {"result": 1}, {"count": P}])
def test_modify_types_argument_errors(builder: EnclaveBuilder, fields: dict[str, Any]) -> None:
    enclave(builder)
    params = SgxEnclaveModifyTypes(offset=0x1000, length=P,
                                   page_type=SGX_PAGE_TYPE_TRIM).replace(**fields)
    assert errno_of(builder.user, builder.fd, SGX_IOC_ENCLAVE_MODIFY_TYPES,
                    params) == (errno.EINVAL, params)


@pytest.mark.parametrize("fields", [*BOUNDS, {"count": P}])
def test_remove_pages_argument_errors(builder: EnclaveBuilder, fields: dict[str, Any]) -> None:
    enclave(builder)
    params = SgxEnclaveRemovePages(offset=0x1000, length=P).replace(**fields)
    assert errno_of(builder.user, builder.fd, SGX_IOC_ENCLAVE_REMOVE_PAGES,
                    params) == (errno.EINVAL, params)


# -- SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS -------------------------------------------------------

def test_restrict_permissions(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    enclave(builder)
    user, fd = builder.user, builder.fd
    req = SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS
    params = SgxEnclaveRestrictPermissions(permissions=SGX_SECINFO_R)
    cases = [
        (0xA000, P, errno.EFAULT, 0, 0),  # no page there
        (0, P, errno.EINVAL, 0, 0),  # a TCS
        (0x3000, 3 * P, errno.EFAULT, 2 * P, 0),  # 0x3000, 0x4000 done, nothing at 0x5000
        (PENDING_OFF, P, errno.EFAULT, 0, NOT_MODIFIABLE),  # EMODPR's error goes to result
    ]
    for offset, length, err, count, result in cases:
        assert errno_of(user, fd, req, params.replace(offset=offset, length=length)) == (
            err, params.replace(offset=offset, length=length, count=count, result=result))
    done = user.ioctl(fd, req, params.replace(offset=0x1000, length=2 * P))
    assert (done.count, done.result) == (2 * P, 0)
    assert epcm(vm, builder, 0x1000) == (PageType.PT_REG, R | PR)
    assert epcm(vm, builder, 0x2000) == (PageType.PT_REG, R | PR)  # was RX
    assert builder.enclave.page_array[BASE + 0x2000].vm_max_prot_bits == R | X  # unchanged
    assert eaccept(vm, builder, 0x1000, SGX_PAGE_TYPE_REG << 8 | R | PR) == 0
    assert epcm(vm, builder, 0x1000) == (PageType.PT_REG, R)


# -- SGX_IOC_ENCLAVE_MODIFY_TYPES ---------------------------------------------------------------

def test_modify_types_errors(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    enclave(builder)
    user, fd = builder.user, builder.fd
    req = SGX_IOC_ENCLAVE_MODIFY_TYPES
    cases = [
        (0x1000, SGX_PAGE_TYPE_REG, errno.EINVAL, 0),  # only TCS and TRIM
        (0xA000, SGX_PAGE_TYPE_TRIM, errno.EFAULT, 0),  # no page there
        (0, SGX_PAGE_TYPE_TCS, errno.EINVAL, 0),  # TCS -> TCS
        (0x4000, SGX_PAGE_TYPE_TCS, errno.EPERM, 0),  # a read-only page cannot become a TCS
        (PENDING_OFF, SGX_PAGE_TYPE_TCS, errno.EFAULT, NOT_MODIFIABLE),
    ]
    for offset, page_type, err, result in cases:
        params = SgxEnclaveModifyTypes(offset=offset, length=P, page_type=page_type)
        assert errno_of(user, fd, req, params) == (err, params.replace(result=result))
    entry = builder.enclave.page_array[BASE + PENDING_OFF]
    assert (entry.vm_max_prot_bits, entry.type) == (R | W | X, PageType.PT_REG)  # restored


def test_regular_page_becomes_a_tcs(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    enclave(builder)
    builder.proc.write_memory(BASE + 0x3000, tcs_page())  # EDBGWR: the new TCS's contents
    mm = builder.proc.mm
    assert mm.handle_fault(BASE + 0x3000)
    generation = mm.generation
    done = builder.user.ioctl(builder.fd, SGX_IOC_ENCLAVE_MODIFY_TYPES, SgxEnclaveModifyTypes(
        offset=0x3000, length=P, page_type=SGX_PAGE_TYPE_TCS))
    assert done.count == P
    assert mm.translate(BASE + 0x3000) is None and mm.generation > generation  # PTEs zapped
    entry = builder.enclave.page_array[BASE + 0x3000]
    assert (entry.type, entry.vm_max_prot_bits) == (PageType.PT_TCS, R | W)
    assert epcm(vm, builder, 0x3000) == (PageType.PT_TCS, MODIFIED)
    assert eaccept(vm, builder, 0x3000, SGX_PAGE_TYPE_TCS << 8 | MODIFIED) == 0
    assert epcm(vm, builder, 0x3000) == (PageType.PT_TCS, 0)


# -- SGX_IOC_ENCLAVE_REMOVE_PAGES ---------------------------------------------------------------

def test_trim_accept_and_remove(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    enclave(builder)
    user, fd, encl = builder.user, builder.fd, builder.enclave
    trim = SgxEnclaveModifyTypes(offset=0, length=3 * P, page_type=SGX_PAGE_TYPE_TRIM)
    assert user.ioctl(fd, SGX_IOC_ENCLAVE_MODIFY_TYPES, trim).count == 3 * P  # TCS, REG, REG
    assert [encl.page_array[BASE + o].type for o in (0, 0x1000, 0x2000)] == [PageType.PT_TRIM] * 3
    remove = SGX_IOC_ENCLAVE_REMOVE_PAGES
    cases = [
        (0xA000, P, errno.EFAULT, 0),  # no page there
        (0x3000, P, errno.EPERM, 0),  # not trimmed
        (0, P, errno.EPERM, 0),  # trimmed but not accepted: EMODPR says NOT_MODIFIABLE
    ]
    for offset, length, err, count in cases:
        params = SgxEnclaveRemovePages(offset=offset, length=length)
        assert errno_of(user, fd, remove, params) == (err, params.replace(count=count))
    trimmed = SGX_PAGE_TYPE_TRIM << 8 | MODIFIED
    assert [eaccept(vm, builder, o, trimmed) for o in (0, 0x1000)] == [0, 0]
    assert builder.proc.mm.translate(BASE + 0x1000) is not None
    free = vm.guest.epc.nr_free_pages if vm.guest.epc else 0
    children, page_cnt = encl.secs_child_cnt, encl.page_cnt
    params = SgxEnclaveRemovePages(offset=0, length=3 * P)
    assert errno_of(user, fd, remove, params) == (errno.EPERM, params.replace(count=2 * P))
    assert BASE not in encl.page_array and BASE + 0x1000 not in encl.page_array
    assert builder.proc.mm.translate(BASE + 0x1000) is None
    assert vm.guest.epc is not None and vm.guest.epc.nr_free_pages == free + 2
    assert (encl.secs_child_cnt, encl.page_cnt) == (children - 2, page_cnt - 2)
    assert len(encl.va_pages) == 1  # VA pages stay


@pytest.mark.parametrize(("request_", "params"), [
    (SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
     SgxEnclaveRestrictPermissions(offset=0x1000, length=P, permissions=SGX_SECINFO_R)),
    (SGX_IOC_ENCLAVE_MODIFY_TYPES,
     SgxEnclaveModifyTypes(offset=0x1000, length=P, page_type=SGX_PAGE_TYPE_TRIM)),
    (SGX_IOC_ENCLAVE_REMOVE_PAGES, SgxEnclaveRemovePages(offset=0x1000, length=P)),
], ids=["restrict", "modify", "remove"])
def test_results_that_cannot_be_copied_back_are_efault(builder: EnclaveBuilder, request_: int,
                                                       params: Struct) -> None:
    enclave(builder)
    arg = builder.user.put(params.to_bytes())
    builder.proc.mprotect(arg, P, PROT_READ)
    with pytest.raises(OSError) as info:
        builder.proc.ioctl(builder.fd, request_, arg)
    assert info.value.errno == errno.EFAULT
    entry = builder.enclave.page_array[BASE + 0x1000]  # the work was done all the same,
    assert entry.type == (PageType.PT_TRIM if request_ == SGX_IOC_ENCLAVE_MODIFY_TYPES
                          else PageType.PT_REG)  # except REMOVE's EPERM (not trimmed)
