"""Fixtures and helpers for the SGX processor-model tests (tests/cpu).

The platform is one :class:`~vsgx.cpu.SgxProcessor` with a 1 MiB EPC at 0x1_0000_0000 and a
1 MiB :class:`~vsgx.cpu.SparseMemory` scratch space at 0..1 MiB for the ENCLS operands, with
firmware having written IA32_FEATURE_CONTROL = LOCKED | SGX | SGX_LC.

Test modules cannot import this file (several ``conftest.py`` share the module name), so every
helper is reached through a fixture: ``plat`` (a :class:`Platform` whose methods wrap the
leaves), ``make_platform`` (a factory taking ``features=``/``seed=``/``enable=``),
``enclave`` (an initialised production enclave on ``plat``), ``assert_status`` and
``assert_fault``. Layout constants are attributes of :class:`Platform` and :class:`Enclave`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.arch import (
    ATTRIBUTES,
    EINITTOKEN,
    PAGE_SIZE,
    PAGEINFO,
    SECINFO,
    SECS,
    SIGSTRUCT,
    TCS,
    AttributesFlags,
    EnclsLeaf,
    FeatureControl,
    Msr,
    PageType,
    Pfec,
    SecinfoFlags,
    SgxError,
    Vector,
    secinfo_flags,
)
from vsgx.cpu import (
    EnclaveContext,
    Epc,
    EpcSection,
    LeafResult,
    LeafStatus,
    SgxFault,
    SgxFeatures,
    SgxProcessor,
    SparseMemory,
)
from vsgx.crypto import (
    BootSecrets,
    PlatformSecrets,
    derive_key,
    einittoken_dependencies,
    einittoken_mac,
    generate_signing_key,
    mrsigner,
    sign_sigstruct,
)

R = int(SecinfoFlags.R)
W = int(SecinfoFlags.W)
X = int(SecinfoFlags.X)
REG_RW = secinfo_flags(PageType.PT_REG, R | W)
REG_R = secinfo_flags(PageType.PT_REG, R)
REG_RX = secinfo_flags(PageType.PT_REG, R | X)
ALL64 = (1 << 64) - 1

_SIGNER: Any = object()
"""Sentinel for :meth:`Platform.einit`: write the SIGSTRUCT signer's MRSIGNER to the LE hash."""


@functools.cache
def cached_signing_key() -> rsa.RSAPrivateKey:
    """One RSA-3072/e=3 key for the whole run (generation takes about a second)."""
    return generate_signing_key()


def page_pattern(tag: int, la: int) -> bytes:
    """4 KiB of content that differs per (tag, linear address)."""
    return hashlib.sha256(f"{tag}:{la:#x}".encode()).digest() * (PAGE_SIZE // 32)


@dataclass
class Enclave:
    """Where :meth:`Platform.build_enclave` put an enclave: EPC indexes and linear addresses.

    Layout inside ELRANGE (offsets from ``base``): TCS at 0, ``N_RW`` REG RW pages from 0x1000,
    one REG R page at 0x5000, one REG RX page at 0x6000; 0x8000 and above are free for EAUG.
    """

    TCS_OFF = 0x0000
    RW_OFF = 0x1000
    N_RW = 4
    RO_OFF = 0x5000
    RX_OFF = 0x6000
    FREE_OFF = 0x8000

    secs: int
    base: int
    size: int
    pages: dict[int, int]
    tag: int = 0
    sig: SIGSTRUCT | None = None

    @property
    def ctx(self) -> EnclaveContext:
        return EnclaveContext(secs=self.secs)

    @property
    def tcs_la(self) -> int:
        return self.base + self.TCS_OFF

    def rw_la(self, k: int = 0) -> int:
        return self.base + self.RW_OFF + k * PAGE_SIZE

    @property
    def ro_la(self) -> int:
        return self.base + self.RO_OFF

    @property
    def rx_la(self) -> int:
        return self.base + self.RX_OFF

    def free_la(self, k: int = 0) -> int:
        return self.base + self.FREE_OFF + k * PAGE_SIZE

    def idx(self, la: int) -> int:
        """EPC index of the page mapped at ``la``."""
        return self.pages[la & ~(PAGE_SIZE - 1)]

    @property
    def tcs(self) -> int:
        return self.pages[self.tcs_la]

    def rw(self, k: int = 0) -> int:
        return self.pages[self.rw_la(k)]


@dataclass
class Evicted:
    """What EWB wrote out for one page, plus the VA slot it used and the leaf's result."""

    ciphertext: bytes
    pcmd: bytes
    linaddr: int
    va_slot: int
    result: LeafResult


class Platform:
    """An SGX processor with EPC and scratch memory, and helpers that drive its leaves."""

    EPC_BASE = 0x1_0000_0000
    EPC_SIZE = 1 << 20
    SCRATCH_SIZE = 1 << 20

    # Scratch-memory operand slots (all suitably aligned).
    PAGEINFO_PA = 0x0000
    PAGEINFO2_PA = 0x0020
    SECINFO_PA = 0x0100
    SRC_PA = 0x1000
    SIGSTRUCT_PA = 0x4000
    TOKEN_PA = 0x6000
    PCMD_PA = 0x7000
    BLOB_PA = 0x8000
    FREE_PA = 0x10000

    ENCLAVE_BASE = 0x10_0000
    ENCLAVE_SIZE = 0x2_0000
    FEATURE_CONTROL_ON = int(FeatureControl.LOCKED | FeatureControl.SGX | FeatureControl.SGX_LC)

    def __init__(self, key: rsa.RSAPrivateKey, *, features: SgxFeatures | None = None,
                 seed: bytes = b"vsgx-cpu-tests", boot: int = 0, enable: bool = True) -> None:
        self.key = key
        self.features = features or SgxFeatures()
        self.memory = SparseMemory()
        self.memory.map(0, self.SCRATCH_SIZE)
        self.epc = Epc([EpcSection(self.EPC_BASE, self.EPC_SIZE)])
        self.cpu = SgxProcessor(self.epc, self.memory, features=self.features,
                                platform=PlatformSecrets.from_seed(seed),
                                boot=BootSecrets.from_seed(seed, boot))
        if enable:
            fc = int(FeatureControl.LOCKED | FeatureControl.SGX)
            if self.features.flc:
                fc |= int(FeatureControl.SGX_LC)
            self.cpu.lps[0].msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, fc)
        self._next_page = 0
        self._next_tag = 1

    # -- addresses and raw memory -------------------------------------------------------------

    @classmethod
    def pa(cls, idx: int) -> int:
        """Physical address of EPC page ``idx``."""
        return cls.EPC_BASE + idx * PAGE_SIZE

    def alloc(self) -> int:
        """A fresh (never used by these helpers) EPC page index."""
        idx = self._next_page
        self._next_page += 1
        return idx

    def va_slot(self, va_idx: int, k: int = 0) -> int:
        return self.pa(va_idx) + 8 * k

    def write(self, addr: int, data: bytes) -> None:
        self.memory.write(addr, bytes(data))

    def read(self, addr: int, size: int) -> bytes:
        return self.memory.read(addr, size)

    def epc_bytes(self, idx: int, off: int = 0, size: int = PAGE_SIZE) -> bytes:
        return bytes(self.epc.page(idx)[off : off + size])

    def enclave_write(self, enc: Enclave, la: int, data: bytes) -> None:
        """Store into enclave memory directly (what the enclave's own code would do)."""
        off = la & (PAGE_SIZE - 1)
        self.epc.page(enc.idx(la))[off : off + len(data)] = data

    def enclave_read(self, enc: Enclave, la: int, size: int) -> bytes:
        off = la & (PAGE_SIZE - 1)
        return bytes(self.epc.page(enc.idx(la))[off : off + size])

    # -- leaves -------------------------------------------------------------------------------

    def encls(self, leaf: int, rbx: int = 0, rcx: int = 0, rdx: int = 0) -> LeafResult:
        return self.cpu.encls(leaf, rbx, rcx, rdx)

    def write_pageinfo(self, *, linaddr: int = 0, srcpge: int = 0, secinfo: int = 0,
                       secs: int = 0, at: int | None = None) -> int:
        at = self.PAGEINFO_PA if at is None else at
        self.write(at, PAGEINFO(linaddr, srcpge, secinfo, secs).to_bytes())
        return at

    def write_secinfo(self, flags: int, *, at: int | None = None) -> int:
        at = self.SECINFO_PA if at is None else at
        self.write(at, SECINFO(flags).to_bytes())
        return at

    def make_secs(self, *, size: int | None = None, baseaddr: int | None = None,
                  ssaframesize: int = 1, miscselect: int = 0,
                  flags: int = int(AttributesFlags.MODE64BIT), xfrm: int = 3,
                  **fields: Any) -> SECS:
        return SECS(size=self.ENCLAVE_SIZE if size is None else size,
                    baseaddr=self.ENCLAVE_BASE if baseaddr is None else baseaddr,
                    ssaframesize=ssaframesize, miscselect=miscselect,
                    attributes=ATTRIBUTES(flags, xfrm), **fields)

    def ecreate(self, secs: SECS | bytes | None = None, *, idx: int | None = None,
                **fields: Any) -> int:
        """ENCLS[ECREATE] of ``secs`` (or ``make_secs(**fields)``); returns the SECS index."""
        idx = self.alloc() if idx is None else idx
        if secs is None:
            secs = self.make_secs(**fields)
        self.write(self.SRC_PA, secs.to_bytes() if isinstance(secs, SECS) else secs)
        self.write_secinfo(secinfo_flags(PageType.PT_SECS))
        self.write_pageinfo(srcpge=self.SRC_PA, secinfo=self.SECINFO_PA)
        result = self.encls(EnclsLeaf.ECREATE, self.PAGEINFO_PA, self.pa(idx))
        assert result.status.ok, result
        return idx

    def eadd(self, secs_idx: int, la: int, data: bytes | None = None, flags: int = REG_RW, *,
             idx: int | None = None, measure: bool = False) -> int:
        """ENCLS[EADD] of one page (zeros unless ``data``); returns its EPC index."""
        idx = self.alloc() if idx is None else idx
        self.write(self.SRC_PA, bytes(PAGE_SIZE) if data is None else data)
        self.write_secinfo(flags)
        self.write_pageinfo(linaddr=la, srcpge=self.SRC_PA, secinfo=self.SECINFO_PA,
                            secs=self.pa(secs_idx))
        result = self.encls(EnclsLeaf.EADD, self.PAGEINFO_PA, self.pa(idx))
        assert result.status.ok, result
        if measure:
            self.eextend_page(secs_idx, idx)
        return idx

    @staticmethod
    def make_tcs(**fields: Any) -> TCS:
        base = {"ossa": Enclave.RW_OFF, "nssa": 1, "oentry": Enclave.RX_OFF,
                "fslimit": 0xFFF, "gslimit": 0xFFF}
        base.update(fields)
        return TCS(**base)

    def eadd_tcs(self, secs_idx: int, la: int, tcs: TCS | bytes | None = None, *,
                 rwx: int = 0, idx: int | None = None) -> int:
        tcs = self.make_tcs() if tcs is None else tcs
        raw = tcs.to_bytes() if isinstance(tcs, TCS) else tcs
        return self.eadd(secs_idx, la, raw, secinfo_flags(PageType.PT_TCS, rwx), idx=idx)

    def eextend_page(self, secs_idx: int, idx: int) -> None:
        """The 16 EEXTENDs that measure a whole page."""
        for off in range(0, PAGE_SIZE, 256):
            result = self.encls(EnclsLeaf.EEXTEND, self.pa(secs_idx), self.pa(idx) + off)
            assert result.status.ok, result

    def sign(self, secs_idx: int, **fields: Any) -> SIGSTRUCT:
        """A SIGSTRUCT for the enclave as measured so far, signed with the platform's key.

        Defaults: ENCLAVEHASH = current measurement, ATTRIBUTES/MISCSELECT = the SECS's,
        all mask bits set, ISVPRODID = ISVSVN = 1."""
        state = self.cpu.enclaves[secs_idx]
        sig = SIGSTRUCT(
            vendor=0, date=0x20240101, enclavehash=state.builder.digest(),
            attributes=state.secs.attributes, attributemask=ATTRIBUTES(ALL64, ALL64),
            miscselect=state.secs.miscselect, miscmask=0xFFFFFFFF, isvprodid=1, isvsvn=1,
        )
        return sign_sigstruct(sig.replace(**fields), self.key)

    def lehash(self) -> bytes:
        return self.cpu.lps[0].msrs.lepubkeyhash_bytes()

    def set_lehash(self, value: bytes) -> None:
        """Write IA32_SGXLEPUBKEYHASH0..3 (the OS's FLC step before EINIT)."""
        msrs = self.cpu.lps[0].msrs
        for i in range(4):
            msrs.wrmsr(Msr.IA32_SGXLEPUBKEYHASH0 + i,
                       int.from_bytes(value[8 * i : 8 * i + 8], "little"))

    def einit(self, secs_idx: int, *, sig: SIGSTRUCT | None = None, raw_sig: bytes | None = None,
              token: EINITTOKEN | bytes | None = None, lehash: Any = _SIGNER,
              sig_pa: int | None = None, token_pa: int | None = None,
              secs_pa: int | None = None, **sig_fields: Any) -> LeafResult:
        """ENCLS[EINIT]. By default signs the current measurement, takes the FLC path (writes
        the signer's MRSIGNER into the LE hash MSRs) and passes an all-zero token. ``lehash``
        None leaves the MSRs as they are; bytes write those bytes."""
        if raw_sig is None:
            raw_sig = (sig or self.sign(secs_idx, **sig_fields)).to_bytes()
        sig_pa = self.SIGSTRUCT_PA if sig_pa is None else sig_pa
        token_pa = self.TOKEN_PA if token_pa is None else token_pa
        self.write(sig_pa & ~(PAGE_SIZE - 1), raw_sig)
        if token is None:
            token = bytes(EINITTOKEN.SIZE)
        self.write(token_pa & ~0x1FF, token.to_bytes() if isinstance(token, EINITTOKEN) else token)
        if lehash is _SIGNER:
            lehash = mrsigner(raw_sig[128:512])
        if lehash is not None:
            self.set_lehash(lehash)
        return self.encls(EnclsLeaf.EINIT, sig_pa, self.pa(secs_idx) if secs_pa is None
                          else secs_pa, token_pa)

    def make_token(self, secs_idx: int, *, lehash: bytes, mac: bytes | None = None,
                   **fields: Any) -> EINITTOKEN:
        """An EINITTOKEN for the enclave (its current measurement, the platform key's MRSIGNER,
        SECS.ATTRIBUTES, CPUSVNLE = the platform's CPUSVN), MACed with the EINITTOKEN key the
        processor derives from ``lehash`` (unless ``mac`` is given)."""
        state = self.cpu.enclaves[secs_idx]
        modulus = self.key.public_key().public_numbers().n.to_bytes(384, "little")
        token = EINITTOKEN(
            valid=1, attributes=state.secs.attributes, mrenclave=state.builder.digest(),
            mrsigner=mrsigner(modulus), cpusvnle=self.cpu.platform.cpusvn, isvprodidle=7,
            isvsvnle=3, keyid=hashlib.sha256(b"token keyid").digest(),
        ).replace(**fields)
        if mac is None:
            mac = self.token_mac(token, lehash)
        return token.replace(mac=mac)

    def token_mac(self, token: EINITTOKEN | bytes, lehash: bytes) -> bytes:
        """EINITTOKEN.MAC as the launch enclave computes it (over the raw image's first 192
        bytes) with the EINITTOKEN key for ``lehash``."""
        raw = token.to_bytes() if isinstance(token, EINITTOKEN) else token
        parsed = EINITTOKEN.from_bytes(raw, strict=False)
        platform = self.cpu.platform
        key = derive_key(platform, einittoken_dependencies(parsed, lehash, platform))
        return einittoken_mac(key, raw)

    def build_enclave(self, *, flags: int = int(AttributesFlags.MODE64BIT), xfrm: int = 3,
                      miscselect: int = 0, base: int | None = None, size: int | None = None,
                      tag: int | None = None, tcs: bool = True, init: bool = True,
                      secs_fields: dict[str, Any] | None = None, **sig_fields: Any) -> Enclave:
        """ECREATE + EADD/EEXTEND of the standard layout (see :class:`Enclave`) and, with
        ``init``, EINIT on the FLC path. ``tag`` varies the page contents (and so MRENCLAVE)."""
        base = self.ENCLAVE_BASE if base is None else base
        size = self.ENCLAVE_SIZE if size is None else size
        if tag is None:
            tag = self._next_tag
            self._next_tag += 1
        secs = self.ecreate(size=size, baseaddr=base, miscselect=miscselect, flags=flags,
                            xfrm=xfrm, **(secs_fields or {}))
        enc = Enclave(secs=secs, base=base, size=size, pages={}, tag=tag)
        if tcs:
            enc.pages[enc.tcs_la] = self.eadd_tcs(secs, enc.tcs_la)
        for k in range(Enclave.N_RW):
            la = enc.rw_la(k)
            enc.pages[la] = self.eadd(secs, la, page_pattern(tag, la), REG_RW, measure=True)
        enc.pages[enc.ro_la] = self.eadd(secs, enc.ro_la, page_pattern(tag, enc.ro_la), REG_R,
                                         measure=True)
        enc.pages[enc.rx_la] = self.eadd(secs, enc.rx_la, page_pattern(tag, enc.rx_la), REG_RX,
                                         measure=True)
        if init:
            enc.sig = self.sign(secs, **sig_fields)
            result = self.einit(secs, sig=enc.sig)
            assert result.status.ok, result
        return enc

    # -- paging helpers -----------------------------------------------------------------------

    def epa(self, idx: int | None = None) -> int:
        idx = self.alloc() if idx is None else idx
        result = self.encls(EnclsLeaf.EPA, int(PageType.PT_VA), self.pa(idx))
        assert result.status.ok, result
        return idx

    def eblock(self, idx: int) -> LeafResult:
        return self.encls(EnclsLeaf.EBLOCK, 0, self.pa(idx))

    def etrack(self, secs_idx: int) -> LeafResult:
        return self.encls(EnclsLeaf.ETRACK, 0, self.pa(secs_idx))

    def ewb(self, idx: int, va_slot: int) -> Evicted:
        """ENCLS[EWB] of page ``idx`` into ``va_slot``; collects what it wrote out."""
        self.write(self.PCMD_PA, bytes(128))
        self.write_pageinfo(srcpge=self.BLOB_PA, secinfo=self.PCMD_PA)
        result = self.encls(EnclsLeaf.EWB, self.PAGEINFO_PA, self.pa(idx), va_slot)
        linaddr = PAGEINFO.from_bytes(self.read(self.PAGEINFO_PA, 32)).linaddr
        return Evicted(self.read(self.BLOB_PA, PAGE_SIZE), self.read(self.PCMD_PA, 128),
                       linaddr, va_slot, result)

    def evict(self, secs_idx: int, idx: int, va_slot: int) -> Evicted:
        """The full eviction flow of a child page: EBLOCK, ETRACK, EWB (all must succeed)."""
        assert self.eblock(idx).status.ok
        assert self.etrack(secs_idx).status.ok
        ev = self.ewb(idx, va_slot)
        assert ev.result.status.ok, ev.result
        return ev

    def eld(self, ev: Evicted, idx: int, *, secs_idx: int | None = None,
            linaddr: int | None = None, va_slot: int | None = None, blocked: bool = False,
            ciphertext: bytes | None = None, pcmd: bytes | None = None) -> LeafResult:
        """ENCLS[ELDU] (or ELDB with ``blocked``) of an evicted page into EPC page ``idx``."""
        self.write(self.BLOB_PA, ev.ciphertext if ciphertext is None else ciphertext)
        self.write(self.PCMD_PA, ev.pcmd if pcmd is None else pcmd)
        self.write_pageinfo(linaddr=ev.linaddr if linaddr is None else linaddr,
                            srcpge=self.BLOB_PA, secinfo=self.PCMD_PA,
                            secs=0 if secs_idx is None else self.pa(secs_idx))
        leaf = EnclsLeaf.ELDB if blocked else EnclsLeaf.ELDU
        return self.encls(leaf, self.PAGEINFO_PA, self.pa(idx),
                          ev.va_slot if va_slot is None else va_slot)

    # -- SGX2 helpers -------------------------------------------------------------------------

    def eaug(self, enc: Enclave, la: int, *, idx: int | None = None) -> int:
        idx = self.alloc() if idx is None else idx
        self.write_pageinfo(linaddr=la, secs=self.pa(enc.secs))
        result = self.encls(EnclsLeaf.EAUG, self.PAGEINFO_PA, self.pa(idx))
        assert result.status.ok, result
        enc.pages[la] = idx
        return idx

    def emodpr(self, idx: int, flags: int) -> LeafResult:
        return self.encls(EnclsLeaf.EMODPR, self.write_secinfo(flags), self.pa(idx))

    def emodt(self, idx: int, flags: int) -> LeafResult:
        return self.encls(EnclsLeaf.EMODT, self.write_secinfo(flags), self.pa(idx))


# -- assertion helpers ------------------------------------------------------------------------

def _status_of(result: LeafResult | LeafStatus | tuple[LeafStatus, Any]) -> LeafStatus:
    if isinstance(result, LeafResult):
        return result.status
    if isinstance(result, tuple):
        return result[0]
    return result


def assert_status(result: LeafResult | LeafStatus | tuple[LeafStatus, Any], code: SgxError, *,
                  zf: bool | None = None, cf: bool = False) -> None:
    """RAX and RFLAGS of a leaf: ``code`` with ZF = (code is an error) unless given, CF as given
    (default 0)."""
    status = _status_of(result)
    assert status.code == code, f"expected {code.name}, got {SgxError(status.code).name}"
    if zf is None:
        zf = code != SgxError.SGX_SUCCESS and not cf
    assert status.zf == zf, f"{code.name}: ZF={status.zf}, expected {zf}"
    assert status.cf == cf, f"{code.name}: CF={status.cf}, expected {cf}"


@contextlib.contextmanager
def assert_fault(vector: Vector, *, pfec_sgx: bool | None = None,
                 address: int | None = None) -> Iterator[pytest.ExceptionInfo[SgxFault]]:
    """``with assert_fault(Vector.GP): ...``: the block raises :class:`SgxFault` with that
    vector; #GP carries error code 0; for #PF, ``pfec_sgx`` checks PFEC bit 15 and ``address``
    the faulting address."""
    with pytest.raises(SgxFault) as info:
        yield info
    fault = info.value
    assert fault.vector == vector, f"expected #{vector.name}, got {fault}"
    if vector == Vector.GP:
        assert fault.error_code == 0, fault
    if pfec_sgx is not None:
        assert bool(fault.error_code & Pfec.SGX) == pfec_sgx, fault
    if address is not None:
        assert fault.address == address, fault


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sgx_key() -> rsa.RSAPrivateKey:
    return cached_signing_key()


@pytest.fixture
def plat(sgx_key: rsa.RSAPrivateKey) -> Platform:
    return Platform(sgx_key)


@pytest.fixture
def make_platform(sgx_key: rsa.RSAPrivateKey) -> Callable[..., Platform]:
    def make(**kwargs: Any) -> Platform:
        return Platform(sgx_key, **kwargs)
    return make


@pytest.fixture
def enclave(plat: Platform) -> Enclave:
    """An initialised production (non-debug) 64-bit enclave on ``plat``."""
    return plat.build_enclave()


@pytest.fixture
def debug_enclave(plat: Platform) -> Enclave:
    return plat.build_enclave(flags=int(AttributesFlags.MODE64BIT | AttributesFlags.DEBUG))


@pytest.fixture(name="assert_status")
def _assert_status_fixture() -> Callable[..., None]:
    return assert_status


@pytest.fixture(name="assert_fault")
def _assert_fault_fixture() -> Callable[..., Any]:
    return assert_fault
