"""User-space helpers for the guest SGX tests: machines built from real command lines, a
process with a scratch buffer for ioctl arguments, and an enclave builder that drives
``/dev/sgx_enclave`` and computes the expected MRENCLAVE independently of the driver.

Test modules import this file directly (``from sgx_user import ...``); the guest fixtures live in
``tests/guest/conftest.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa

import vsgx
from vsgx.arch import (
    ATTRIBUTES,
    PAGE_SIZE,
    SECINFO,
    SECS,
    SIGSTRUCT,
    TCS,
    AttributesFlags,
    Struct,
)
from vsgx.crypto import MeasurementBuilder, generate_signing_key, sign_sigstruct
from vsgx.guest import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_PAGE_MEASURE,
    SGX_SECINFO_R,
    SGX_SECINFO_REG,
    SGX_SECINFO_TCS,
    SGX_SECINFO_W,
    SGX_SECINFO_X,
    Enclave,
    Process,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
)
from vsgx.platform.host import open_host

MACHINE = ["-machine", "q35", "-m", "1G", "-cpu", "host", "-object",
           "memory-backend-epc,id=e0,size=8M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
"""The standard test machine: 1 GiB of RAM, 8 MiB of EPC on node 0, an icelake-sp host."""

REG_RW = SGX_SECINFO_REG | SGX_SECINFO_R | SGX_SECINFO_W
REG_RX = SGX_SECINFO_REG | SGX_SECINFO_R | SGX_SECINFO_X
REG_R = SGX_SECINFO_REG | SGX_SECINFO_R
REG_RWX = REG_RW | SGX_SECINFO_X
ALL64 = (1 << 64) - 1
BASE = 0x10_0000_0000
P = PAGE_SIZE
BUFFER = 8 << 20
SIZE = 0x10000

_S = TypeVar("_S", bound=Struct)


def machine(args: Sequence[str] = MACHINE, *, profile: str | None = None,
            cpu: str = "host") -> vsgx.Machine:
    """A started machine; ``cpu`` replaces the ``-cpu`` value, ``profile`` the host's."""
    argv = list(args)
    argv[argv.index("-cpu") + 1] = cpu
    host = open_host("guest-tests", profile, persist=False)
    vm = vsgx.Machine.from_args(argv, host=host)
    vm.start()
    return vm


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    """One RSA-3072/e=3 key for the whole run (generating one takes about a second)."""
    return generate_signing_key()


class User:
    """A guest process and an 8 MiB anonymous scratch buffer for ioctl arguments, SECS pages,
    page contents and SIGSTRUCTs, handed out in page-aligned slots."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self.buf = proc.mmap(0, BUFFER, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        self._next = self.buf
        self.last_arg = 0

    def put(self, data: bytes) -> int:
        """Copy ``data`` into a fresh page-aligned slot of the buffer; its address."""
        addr = self._next
        self._next += -(-max(len(data), 1) // PAGE_SIZE) * PAGE_SIZE
        self.proc.write_memory(addr, data)
        return addr

    def ioctl(self, fd: int, request: int, params: _S) -> _S:
        """Issue ``request`` with ``params`` copied into the buffer; the struct as the kernel
        left it. A failing ioctl raises; :meth:`result` still reads the struct back."""
        self.last_arg = self.put(params.to_bytes())
        self.proc.ioctl(fd, request, self.last_arg)
        return self.result(type(params))

    def result(self, cls: type[_S]) -> _S:
        """The struct of the last :meth:`ioctl` as the kernel left it (after a failure too)."""
        return cls.from_bytes(self.proc.read_memory(self.last_arg, cls.SIZE))

    def errno(self, fd: int, request: int, params: Struct) -> int:
        """The errno ``request`` fails with (0 when it succeeds)."""
        try:
            self.ioctl(fd, request, params)
        except OSError as exc:
            return int(exc.errno or 0)
        return 0


@dataclass
class Page:
    offset: int
    data: bytes
    secinfo: int
    measure: bool


def tcs_page(ossa: int = 0x1000, oentry: int = 0x2000, flags: int = 0) -> bytes:
    return TCS(flags=flags, ossa=ossa, nssa=1, oentry=oentry, fslimit=0xFFF,
               gslimit=0xFFF).to_bytes()


def pattern(tag: int) -> bytes:
    return bytes((tag + i) & 0xFF for i in range(256)) * 16


@dataclass
class EnclaveBuilder:
    """An enclave built through the uapi, tracking the MRENCLAVE a signer would compute."""

    user: User
    base: int = BASE
    size: int = SIZE
    flags: int = int(AttributesFlags.MODE64BIT | AttributesFlags.DEBUG)
    xfrm: int = 3
    ssaframesize: int = 1
    fd: int = -1
    pages: list[Page] = field(default_factory=list)
    measurement: MeasurementBuilder = field(default_factory=MeasurementBuilder)

    @property
    def proc(self) -> Process:
        return self.user.proc

    def secs(self, **fields: Any) -> SECS:
        values: dict[str, Any] = {"size": self.size, "baseaddr": self.base,
                                  "ssaframesize": self.ssaframesize,
                                  "attributes": ATTRIBUTES(self.flags, self.xfrm)}
        values.update(fields)
        return SECS(**values)

    def open(self, flags: int = O_RDWR) -> EnclaveBuilder:
        self.fd = self.proc.open("/dev/sgx_enclave", flags)
        return self

    def create(self, secs: SECS | None = None) -> EnclaveBuilder:
        secs = self.secs() if secs is None else secs
        src = self.user.put(secs.to_bytes())
        self.user.ioctl(self.fd, SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(src=src))
        self.measurement.ecreate(secs.ssaframesize, secs.size)
        return self

    def add(self, offset: int, data: bytes | None = None, secinfo: int = REG_RW, *,
            measure: bool = True, count: int = 1) -> SgxEnclaveAddPages:
        """ADD_PAGES of ``count`` pages (``data`` repeated, zeros by default)."""
        data = bytes(PAGE_SIZE) if data is None else data
        src = self.user.put(data * count)
        sec = self.user.put(SECINFO(secinfo).to_bytes())
        result = self.user.ioctl(self.fd, SGX_IOC_ENCLAVE_ADD_PAGES, SgxEnclaveAddPages(
            src=src, offset=offset, length=count * PAGE_SIZE, secinfo=sec,
            flags=SGX_PAGE_MEASURE if measure else 0))
        for k in range(count):
            self.record(offset + k * PAGE_SIZE, data, secinfo, measure)
        return result

    def record(self, offset: int, data: bytes, secinfo: int, measure: bool) -> None:
        """Account a page the driver added in the expected measurement."""
        self.pages.append(Page(offset, data, secinfo, measure))
        self.measurement.eadd(offset, secinfo)
        if measure:
            for chunk in range(0, PAGE_SIZE, 256):
                self.measurement.eextend(offset + chunk, data[chunk:chunk + 256])

    def standard(self) -> EnclaveBuilder:
        """TCS at 0, SSA (RW) at 0x1000, code (RX) at 0x2000, measured; an unmeasured RW data
        page at 0x3000; a read-only page at 0x4000."""
        self.add(0, tcs_page(), SGX_SECINFO_TCS)
        self.add(0x1000, None, REG_RW)
        self.add(0x2000, pattern(1), REG_RX)
        self.add(0x3000, pattern(2), REG_RW, measure=False)
        self.add(0x4000, pattern(3), REG_R)
        return self

    def sigstruct(self, key: rsa.RSAPrivateKey | None = None, **fields: Any) -> SIGSTRUCT:
        values: dict[str, Any] = {
            "vendor": 0, "date": 0x20250101, "enclavehash": self.measurement.digest(),
            "attributes": ATTRIBUTES(self.flags, self.xfrm),
            "attributemask": ATTRIBUTES(ALL64 & ~int(AttributesFlags.INIT), 0x3),
            "miscselect": 0, "miscmask": 0xFFFF_FFFF, "isvprodid": 1, "isvsvn": 1}
        values.update(fields)
        return sign_sigstruct(SIGSTRUCT(**values), key or signing_key())

    def init(self, sigstruct: SIGSTRUCT | bytes | None = None) -> None:
        sig = self.sigstruct() if sigstruct is None else sigstruct
        raw = sig if isinstance(sig, bytes) else sig.to_bytes()
        self.user.ioctl(self.fd, SGX_IOC_ENCLAVE_INIT,
                        SgxEnclaveInit(sigstruct=self.user.put(raw)))

    def map(self, prot: int = PROT_READ | PROT_WRITE, *, offset: int = 0,
            length: int | None = None) -> int:
        return self.proc.mmap(self.base + offset, self.size if length is None else length,
                              prot, MAP_SHARED | MAP_FIXED, self.fd)

    def map_standard(self) -> None:
        """Map ELRANGE as :meth:`standard` laid it out, each page with its maximum
        protection, the rest (no pages yet) read/write."""
        rw, rx, r = PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, PROT_READ
        for offset, length, prot in ((0, 0x2000, rw), (0x2000, P, rx), (0x3000, P, rw),
                                     (0x4000, P, r), (0x5000, self.size - 0x5000, rw)):
            self.map(prot, offset=offset, length=length)

    def build(self) -> EnclaveBuilder:
        """Open, create, add the standard pages and initialize."""
        self.open().create().standard().init()
        return self

    @property
    def enclave(self) -> Enclave:
        file = self.proc.fget(self.fd)
        assert file is not None
        encl = file.private_data
        assert isinstance(encl, Enclave)
        return encl
