"""Every errno of the SGX1 ioctls of ``/dev/sgx_enclave`` (CREATE, ADD_PAGES, INIT, PROVISION)
in the kernel's order, plus the driver-wide ones (EBADF, ENOTTY, EBUSY), on a real machine."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sgx_user import (
    BASE,
    BUFFER,
    REG_R,
    REG_RW,
    REG_RX,
    SIZE,
    EnclaveBuilder,
    User,
    machine,
    pattern,
    tcs_page,
)

import vsgx
from vsgx.arch import ATTRIBUTES, PAGE_SIZE, SECINFO, SECS, AttributesFlags, SgxError
from vsgx.crypto import mrsigner
from vsgx.guest import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    O_RDWR,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_IOC_ENCLAVE_PROVISION,
    SGX_IOC_VEPC_REMOVE_ALL,
    SGX_PAGE_MEASURE,
    SGX_SECINFO_R,
    SGX_SECINFO_REG,
    SGX_SECINFO_TCS,
    SGX_SECINFO_TRIM,
    SGX_SECINFO_VA,
    SGX_SECINFO_W,
    EpcAllocator,
    EpcPage,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
    SgxEnclaveProvision,
)

P = PAGE_SIZE
UNMAPPED = 0x3333_0000_0000
MODE64_DEBUG = int(AttributesFlags.MODE64BIT | AttributesFlags.DEBUG)


@contextmanager
def epc_left(epc: EpcAllocator | None, pages: int) -> Iterator[None]:
    """Hold all but ``pages`` free EPC pages for the duration."""
    assert epc is not None
    held: list[EpcPage] = []
    while epc.nr_free_pages > pages:
        held.append(epc.alloc(None, reclaim=True, node=0))
    try:
        yield
    finally:
        for page in held:
            epc.free(page)


def free_epc(vm: vsgx.Machine) -> int:
    assert vm.guest.epc is not None
    return vm.guest.epc.nr_free_pages


# -- the driver as a whole ---------------------------------------------------------------------

def test_bad_fd_unknown_request_and_bad_arg(user: User) -> None:
    proc = user.proc
    with pytest.raises(OSError) as info:
        proc.ioctl(7, SGX_IOC_ENCLAVE_CREATE, user.buf)
    assert info.value.errno == errno.EBADF
    fd = proc.open("/dev/sgx_enclave", O_RDWR)
    for request in (SGX_IOC_VEPC_REMOVE_ALL, 0x1234, SGX_IOC_ENCLAVE_CREATE | 1 << 32 | 0xFF):
        with pytest.raises(OSError) as info:
            proc.ioctl(fd, request, 0)
        assert info.value.errno == errno.ENOTTY
    with pytest.raises(OSError) as info:
        proc.ioctl(fd, SGX_IOC_ENCLAVE_CREATE, UNMAPPED)
    assert info.value.errno == errno.EFAULT


def test_one_ioctl_at_a_time_per_enclave(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    builder.open().create().standard()
    epc = vm.guest.epc
    assert epc is not None
    entered, proceed = threading.Event(), threading.Event()
    einit = epc.encls.einit

    def slow_einit(*args: Any) -> int:
        entered.set()
        proceed.wait(10)
        return einit(*args)

    epc.encls.einit = slow_einit  # type: ignore[method-assign]
    errors: list[BaseException] = []
    sig = builder.user.put(builder.sigstruct().to_bytes())
    arg = builder.user.put(SgxEnclaveInit(sigstruct=sig).to_bytes())

    def init() -> None:
        try:
            builder.proc.ioctl(builder.fd, SGX_IOC_ENCLAVE_INIT, arg)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=init)
    thread.start()
    assert entered.wait(10)
    for request in (SGX_IOC_ENCLAVE_ADD_PAGES, 0x1234):  # EBUSY comes before ENOTTY
        with pytest.raises(OSError) as info:
            builder.proc.ioctl(builder.fd, request, arg)
        assert info.value.errno == errno.EBUSY
    other = EnclaveBuilder(builder.user).open()  # another enclave is not busy
    other.create()
    proceed.set()
    thread.join(10)
    assert errors == [] and builder.enclave.initialized


# -- SGX_IOC_ENCLAVE_CREATE ---------------------------------------------------------------------

def secs_case(**fields: Any) -> SECS:
    values: dict[str, Any] = {"size": SIZE, "baseaddr": BASE, "ssaframesize": 1,
                              "attributes": ATTRIBUTES(MODE64_DEBUG, 3)}
    values.update(fields)
    return SECS(**values)


@pytest.mark.parametrize(("secs", "err"), [
    (secs_case(size=0x3000), errno.EINVAL),
    (secs_case(size=0), errno.EINVAL),
    (secs_case(baseaddr=BASE + P), errno.EIO),  # ECREATE's #GP
    (secs_case(size=P), errno.EIO),  # a power of two, but below 8 KiB
    (secs_case(ssaframesize=0), errno.EIO),
    (secs_case(attributes=ATTRIBUTES(MODE64_DEBUG, 1)), errno.EIO),  # XFRM without SSE
    (secs_case(attributes=ATTRIBUTES(MODE64_DEBUG | int(AttributesFlags.INIT), 3)), errno.EIO),
], ids=["size-3-pages", "size-0", "base-unaligned", "size-one-page", "ssaframesize-0",
        "xfrm", "init-attribute"])
def test_create_errors(vm: vsgx.Machine, builder: EnclaveBuilder, secs: SECS, err: int) -> None:
    builder.open()
    free = free_epc(vm)
    src = builder.user.put(secs.to_bytes())
    assert builder.user.errno(builder.fd, SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(src)) == err
    assert free_epc(vm) == free  # the VA page and the SECS page went back
    assert not builder.enclave.created
    builder.create()  # the enclave can still be created


def test_create_copies_the_secs_from_user_memory(builder: EnclaveBuilder) -> None:
    user = builder.open().user
    for src in (UNMAPPED, user.buf + BUFFER - 2048):  # unmapped; the page after the buffer
        assert user.errno(builder.fd, SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(src)) == \
            errno.EFAULT
    builder.create()
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_CREATE,
                      SgxEnclaveCreate(user.put(builder.secs().to_bytes()))) == errno.EINVAL


@pytest.mark.parametrize("left", [0, 1], ids=["no-page-for-va", "no-page-for-secs"])
def test_create_without_epc(vm: vsgx.Machine, builder: EnclaveBuilder, left: int) -> None:
    builder.open()
    src = builder.user.put(builder.secs().to_bytes())
    with epc_left(vm.guest.epc, left):
        assert builder.user.errno(builder.fd, SGX_IOC_ENCLAVE_CREATE,
                                  SgxEnclaveCreate(src)) == errno.ENOMEM
        assert free_epc(vm) == left
    assert builder.enclave.page_cnt == 0 and builder.enclave.va_pages == []


def test_create_records_the_enclave(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    free = free_epc(vm)
    encl = builder.open().create().enclave
    assert (encl.created, encl.initialized, encl.debug) == (True, False, True)
    assert (encl.base, encl.size, encl.attributes) == (BASE, SIZE, MODE64_DEBUG)
    assert encl.attributes_mask == int(AttributesFlags.DEBUG | AttributesFlags.MODE64BIT
                                       | AttributesFlags.KSS | AttributesFlags.AEXNOTIFY)
    assert free_epc(vm) == free - 2 and len(encl.va_pages) == 1 and encl.page_cnt == 1


# -- SGX_IOC_ENCLAVE_ADD_PAGES ------------------------------------------------------------------

def test_add_pages_state_errors(builder: EnclaveBuilder) -> None:
    builder.open()
    params = SgxEnclaveAddPages(src=builder.user.put(bytes(P)), offset=0, length=P,
                                secinfo=builder.user.put(SECINFO(REG_RW).to_bytes()))
    assert builder.user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, params) == errno.EINVAL
    builder.create().standard().init()
    assert builder.user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES,
                              params.replace(offset=0x8000)) == errno.EINVAL


def add_case(**fields: Any) -> dict[str, Any]:
    return fields


@pytest.mark.parametrize(("change", "err"), [
    (add_case(src="src+1"), errno.EINVAL),
    (add_case(offset=0x8001), errno.EINVAL),
    (add_case(length=0), errno.EINVAL),
    (add_case(length=P + 8), errno.EINVAL),
    (add_case(offset=SIZE), errno.EINVAL),
    (add_case(offset=SIZE - P, length=2 * P), errno.EINVAL),
    (add_case(offset=(1 << 64) - P, length=2 * P), errno.EINVAL),  # offset + length wraps
    (add_case(secinfo=UNMAPPED), errno.EFAULT),
    (add_case(secinfo_flags=SGX_SECINFO_VA | SGX_SECINFO_R), errno.EINVAL),
    (add_case(secinfo_flags=SGX_SECINFO_TRIM), errno.EINVAL),
    (add_case(secinfo_flags=0), errno.EINVAL),  # PT_SECS
    (add_case(secinfo_flags=SGX_SECINFO_REG | SGX_SECINFO_W), errno.EINVAL),
    (add_case(secinfo_flags=SGX_SECINFO_TCS | SGX_SECINFO_R), errno.EINVAL),
    (add_case(secinfo_flags=REG_RW | 0x8), errno.EINVAL),  # PENDING is reserved here
    (add_case(secinfo_flags=REG_RW | 1 << 63), errno.EINVAL),
    (add_case(secinfo_tail=b"\x01"), errno.EINVAL),  # SECINFO's reserved bytes
    (add_case(src=UNMAPPED), errno.EFAULT),
    (add_case(src="prot-none"), errno.EFAULT),
    (add_case(src="write-only"), errno.EFAULT),
    (add_case(src="enclave"), errno.EFAULT),
    (add_case(data=tcs_page(flags=0x4), secinfo_flags=SGX_SECINFO_TCS), errno.EIO),
], ids=["src-unaligned", "offset-unaligned", "length-0", "length-unaligned",
        "offset-past-size", "end-past-size", "wraps", "secinfo-unmapped", "type-va",
        "type-trim", "type-secs", "write-only", "tcs-with-perms", "pending", "reserved-bit",
        "reserved-bytes", "src-unmapped", "src-prot-none", "src-write-only", "src-enclave",
        "eadd-fails"])
def test_add_pages_errors(vm: vsgx.Machine, builder: EnclaveBuilder, change: dict[str, Any],
                          err: int) -> None:
    user = builder.open().create().user
    builder.map(PROT_READ | PROT_WRITE)
    none = user.proc.mmap(0, P, 0, MAP_PRIVATE | MAP_ANONYMOUS)
    wonly = user.proc.mmap(0, P, PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    data = change.pop("data", pattern(7))
    src = user.put(data)
    sources = {"src+1": src + 1, "prot-none": none, "write-only": wonly, "enclave": BASE}
    secinfo = SECINFO(change.pop("secinfo_flags", REG_RW)).to_bytes()[:8] + \
        change.pop("secinfo_tail", b"").ljust(56, b"\0")
    values: dict[str, Any] = {"src": src, "offset": 0x8000, "length": P,
                              "secinfo": user.put(secinfo), "flags": SGX_PAGE_MEASURE}
    values.update(change)
    values["src"] = sources.get(values["src"], values["src"])
    free = free_epc(vm)
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, SgxEnclaveAddPages(**values)) == err
    assert free_epc(vm) == free and builder.enclave.page_array == {}
    assert builder.enclave.page_cnt == 1


def test_add_pages_reports_what_it_did(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    user = builder.open().create().user
    # Three pages whose third source page is not mapped: two are added, count says so.
    src = user.proc.mmap(0, 3 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    user.proc.munmap(src + 2 * P, P)
    params = SgxEnclaveAddPages(src=src, offset=0x1000, length=3 * P,
                                secinfo=user.put(SECINFO(REG_RW).to_bytes()))
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, params) == errno.EFAULT
    assert user.result(SgxEnclaveAddPages).count == 2 * P
    assert sorted(builder.enclave.page_array) == [BASE + 0x1000, BASE + 0x2000]
    # A page that is already there: EBUSY, count 0.
    params = params.replace(offset=0x2000, length=P)
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, params) == errno.EBUSY
    assert user.result(SgxEnclaveAddPages).count == 0
    # No EPC page for the page: ENOMEM; no page for a new VA page (page_cnt 512): ENOMEM.
    params = params.replace(offset=0x3000)
    with epc_left(vm.guest.epc, 0):
        assert user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, params) == errno.ENOMEM
    builder.enclave.page_cnt = 512
    with epc_left(vm.guest.epc, 1):
        assert user.errno(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, params) == errno.ENOMEM
        assert free_epc(vm) == 1
    builder.enclave.page_cnt = 3
    # The struct cannot be copied back (a read-only page): EFAULT, yet the page was added.
    arg = user.put(params.to_bytes())
    user.proc.mprotect(arg, P, PROT_READ)
    with pytest.raises(OSError) as info:
        user.proc.ioctl(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, arg)
    assert info.value.errno == errno.EFAULT
    assert BASE + 0x3000 in builder.enclave.page_array


def test_add_pages_measures_only_with_sgx_page_measure(builder: EnclaveBuilder) -> None:
    builder.open().create()
    builder.add(0, tcs_page(), SGX_SECINFO_TCS, measure=False)
    builder.add(0x1000, pattern(1), REG_RX, count=3)
    builder.add(0x4000, pattern(2), REG_RW, measure=False, count=2)
    params = SgxEnclaveAddPages(src=builder.user.put(pattern(3)), offset=0x6000, length=P,
                                secinfo=builder.user.put(SECINFO(REG_R).to_bytes()), flags=0x6)
    assert builder.user.ioctl(builder.fd, SGX_IOC_ENCLAVE_ADD_PAGES, params).count == P
    builder.record(0x6000, pattern(3), REG_R, measure=False)  # flag bits other than 1 ignored
    builder.init()  # EINIT accepts the MRENCLAVE the builder computed
    encl = builder.enclave
    assert encl.page_cnt == 1 + 7 and encl.secs_child_cnt == 7
    assert {a - BASE: (p.vm_max_prot_bits, int(p.type)) for a, p in encl.page_array.items()} == {
        0: (3, 1), 0x1000: (5, 2), 0x2000: (5, 2), 0x3000: (5, 2), 0x4000: (3, 2),
        0x5000: (3, 2), 0x6000: (1, 2)}


# -- SGX_IOC_ENCLAVE_INIT -----------------------------------------------------------------------

def test_init_state_and_copy_errors(builder: EnclaveBuilder) -> None:
    user = builder.open().user
    sig = user.put(bytes(1808))
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)) == errno.EINVAL
    builder.create().standard()
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(UNMAPPED)) == errno.EFAULT
    partial = user.buf + BUFFER - 1000  # the SIGSTRUCT runs off the buffer
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(partial)) == errno.EFAULT
    builder.init()
    sig = user.put(builder.sigstruct().to_bytes())
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)) == errno.EINVAL


ALL = (1 << 64) - 1


@pytest.mark.parametrize(("fields", "err"), [
    ({"vendor": 0x1234}, errno.EINVAL),
    ({"attributes": ATTRIBUTES(MODE64_DEBUG | 1 << 3, 3)}, errno.EINVAL),
    ({"attributes": ATTRIBUTES(MODE64_DEBUG | int(AttributesFlags.INIT), 3),
      "attributemask": ATTRIBUTES(ALL, 3)}, errno.EINVAL),  # INIT: not in CPUID.(12H,1)
    ({"miscselect": 0x2}, errno.EINVAL),
    ({"attributes": ATTRIBUTES(MODE64_DEBUG, 0x7), "attributemask": ATTRIBUTES(ALL, 0x7)},
     errno.EINVAL),  # XFRM beyond x87|SSE: the guest has no OSXSAVE
    ({"enclavehash": bytes(32)}, errno.EPERM),  # SGX_INVALID_MEASUREMENT
    ({"attributes": ATTRIBUTES(int(AttributesFlags.MODE64BIT), 3)}, errno.EPERM),
    ({"miscselect": 0x1}, errno.EPERM),  # allowed by CPUID, but not the SECS's
    ({"isvprodid": 2, "raw_patch": (1024, b"\x03")}, errno.EPERM),  # signature mismatch
], ids=["vendor", "reserved-attribute", "init-attribute", "reserved-misc", "reserved-xfrm",
        "measurement", "attributes", "miscselect", "signature"])
def test_init_errors(vm: vsgx.Machine, builder: EnclaveBuilder, fields: dict[str, Any],
                     err: int) -> None:
    builder.open().create().standard()
    patch = fields.pop("raw_patch", None)
    raw = bytearray(builder.sigstruct(**fields).to_bytes())
    if patch is not None:
        raw[patch[0]:patch[0] + len(patch[1])] = patch[1]
    arg = SgxEnclaveInit(builder.user.put(bytes(raw)))
    assert builder.user.errno(builder.fd, SGX_IOC_ENCLAVE_INIT, arg) == err
    assert not builder.enclave.initialized
    builder.init()  # a good SIGSTRUCT still works


def test_init_writes_mrsigner_to_the_le_hash_msrs(vm: vsgx.Machine,
                                                  builder: EnclaveBuilder) -> None:
    builder.open().create().standard()
    sig = builder.sigstruct()
    builder.init(sig)
    assert vm.vcpu_msrs[0].lepubkeyhash_bytes() == mrsigner(sig.modulus)
    assert builder.enclave.initialized


def test_init_retries_unmasked_events(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    builder.open().create().standard()
    epc = vm.guest.epc
    assert epc is not None
    einit = epc.encls.einit
    calls = []

    def interrupted(*args: Any) -> int:
        calls.append(1)
        return SgxError.SGX_UNMASKED_EVENT if len(calls) < 5 else einit(*args)

    epc.encls.einit = interrupted  # type: ignore[method-assign]
    builder.init()
    assert len(calls) == 5 and builder.enclave.initialized
    other = EnclaveBuilder(builder.user, base=2 * BASE).open().create().standard()
    epc.encls.einit = lambda *args: SgxError.SGX_UNMASKED_EVENT  # type: ignore[method-assign]
    with pytest.raises(OSError) as info:
        other.init()
    assert info.value.errno == errno.EPERM  # it gives up after 50 * 20 tries


def test_lost_epc_is_eio(vm: vsgx.Machine, builder: EnclaveBuilder) -> None:
    """After the EPC is lost (what a suspend/resume does), ENCLS faults: EIO."""
    builder.open().create().standard()
    other = EnclaveBuilder(builder.user, base=2 * BASE).open().create()
    assert vm.processor is not None
    vm.processor.power_cycle(vm.host.boot)
    with pytest.raises(OSError) as info:
        builder.init()
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError) as info:
        other.add(0, pattern(1))
    assert info.value.errno == errno.EIO


# -- SGX_IOC_ENCLAVE_PROVISION ------------------------------------------------------------------

def provision_enclave(builder: EnclaveBuilder) -> EnclaveBuilder:
    builder.flags |= int(AttributesFlags.PROVISIONKEY)
    return builder


def test_provisionkey_needs_sgx_ioc_enclave_provision(builder: EnclaveBuilder) -> None:
    provision_enclave(builder).open().create().standard()
    with pytest.raises(OSError) as info:
        builder.init()
    assert info.value.errno == errno.EACCES
    prov = builder.proc.open("/dev/sgx_provision", O_RDWR)
    builder.user.ioctl(builder.fd, SGX_IOC_ENCLAVE_PROVISION,
                       SgxEnclaveProvision(fd=prov + (1 << 32)))  # fd is an unsigned int
    assert builder.enclave.attributes_mask & AttributesFlags.PROVISIONKEY
    builder.init()
    assert builder.enclave.initialized


def test_provision_errors(builder: EnclaveBuilder) -> None:
    provision_enclave(builder).open()
    user = builder.user
    prov = builder.proc.open("/dev/sgx_provision", O_RDWR)
    with pytest.raises(OSError) as info:
        builder.proc.ioctl(builder.fd, SGX_IOC_ENCLAVE_PROVISION, UNMAPPED)
    assert info.value.errno == errno.EFAULT
    for fd in (99, builder.fd, -1):
        assert user.errno(builder.fd, SGX_IOC_ENCLAVE_PROVISION,
                          SgxEnclaveProvision(fd & ALL)) == errno.EINVAL
    # Before CREATE it succeeds, but CREATE resets the allowed attributes.
    assert user.errno(builder.fd, SGX_IOC_ENCLAVE_PROVISION, SgxEnclaveProvision(prov)) == 0
    builder.create().standard()
    with pytest.raises(OSError) as info:
        builder.init()
    assert info.value.errno == errno.EACCES


def test_provision_device_has_no_ioctls_and_no_mmap(user: User) -> None:
    prov = user.proc.open("/dev/sgx_provision", O_RDWR)
    with pytest.raises(OSError) as info:
        user.proc.ioctl(prov, SGX_IOC_ENCLAVE_CREATE, user.buf)
    assert info.value.errno == errno.ENOTTY
    with pytest.raises(OSError) as info:
        user.proc.mmap(0, P, PROT_READ, 0x01, prov)
    assert info.value.errno == errno.ENODEV
    user.proc.close(prov)


# -- coffeelake: no launch control, no /dev/sgx_enclave ------------------------------------------

def test_no_enclave_device_without_launch_control() -> None:
    args = ["-m", "512M", "-cpu", "host", "-object", "memory-backend-epc,id=e0,size=8M",
            "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
    with machine(args, profile="coffeelake") as vm:
        assert vm.guest.devices == ()
        proc = vm.guest.spawn()
        for path in ("/dev/sgx_enclave", "/dev/sgx_provision", "/dev/sgx_vepc", "/etc/passwd"):
            with pytest.raises(FileNotFoundError) as info:
                proc.open(path, O_RDWR)
            assert info.value.errno == errno.ENOENT


def test_files_close(user: User, vm: vsgx.Machine) -> None:
    fd = user.proc.open("/dev/sgx_enclave", O_RDWR)
    assert user.proc.open("/dev/sgx_provision", O_RDWR) == fd + 1
    user.proc.close(fd)
    with pytest.raises(OSError) as info:
        user.proc.close(fd)
    assert info.value.errno == errno.EBADF
    assert user.proc.open("/dev/sgx_enclave", O_RDWR) == fd  # the lowest free descriptor
    assert user.proc.mmap(BASE, P, PROT_READ, MAP_FIXED | 0x01, fd) == BASE
