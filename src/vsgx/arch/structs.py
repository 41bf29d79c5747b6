"""SGX architectural structures with their exact sizes, alignments and field offsets.

Transcribed from the Intel SDM Vol. 3D ch. 38 ("Intel SGX Data Structures"), cross-checked with
Intel ``arch.h``, Linux ``arch/x86/include/asm/sgx.h``, Fortanix ``sgx-isa`` and Gramine
``sgx_arch.h``. Field names are the SDM's, in lower case. Bytes not covered by a field are
reserved and must be zero when parsed strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vsgx.arch.constants import SECINFO_PAGE_TYPE_SHIFT, SECINFO_RWX, PageType
from vsgx.arch.layout import Field, Struct, struct_dataclass


def _z(n: int) -> bytes:
    return bytes(n)


@struct_dataclass
@dataclass(frozen=True)
class ATTRIBUTES(Struct):
    """ATTRIBUTES: FLAGS and XFRM (SDM 38.7.1), 16 bytes."""

    NAME: ClassVar[str] = "ATTRIBUTES"
    SIZE: ClassVar[int] = 16
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = (Field("flags", 0, 8), Field("xfrm", 8, 8))

    flags: int = 0
    xfrm: int = 0

    def __and__(self, other: ATTRIBUTES) -> ATTRIBUTES:
        return ATTRIBUTES(self.flags & other.flags, self.xfrm & other.xfrm)

    def __or__(self, other: ATTRIBUTES) -> ATTRIBUTES:
        return ATTRIBUTES(self.flags | other.flags, self.xfrm | other.xfrm)


@struct_dataclass
@dataclass(frozen=True)
class SECS(Struct):
    """SGX Enclave Control Structure (SDM 38.7), 4096 bytes, 4 KiB aligned.

    Bytes 262..4095 hold micro-architectural state on silicon (EID, PADDING, tracking); their
    layout is not architectural and the processor model keeps that state outside the page.
    """

    NAME: ClassVar[str] = "SECS"
    SIZE: ClassVar[int] = 4096
    ALIGN: ClassVar[int] = 4096
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("size", 0, 8),
        Field("baseaddr", 8, 8),
        Field("ssaframesize", 16, 4),
        Field("miscselect", 20, 4),
        Field("attributes", 48, 16, ATTRIBUTES),
        Field("mrenclave", 64, 32, bytes),
        Field("mrsigner", 128, 32, bytes),
        Field("configid", 192, 64, bytes),
        Field("isvprodid", 256, 2),
        Field("isvsvn", 258, 2),
        Field("configsvn", 260, 2),
    )

    size: int = 0
    baseaddr: int = 0
    ssaframesize: int = 0
    miscselect: int = 0
    attributes: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    mrenclave: bytes = _z(32)
    mrsigner: bytes = _z(32)
    configid: bytes = _z(64)
    isvprodid: int = 0
    isvsvn: int = 0
    configsvn: int = 0


@struct_dataclass
@dataclass(frozen=True)
class TCS(Struct):
    """Thread Control Structure (SDM 38.8), 4096 bytes, 4 KiB aligned."""

    NAME: ClassVar[str] = "TCS"
    SIZE: ClassVar[int] = 4096
    ALIGN: ClassVar[int] = 4096
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("state", 0, 8),
        Field("flags", 8, 8),
        Field("ossa", 16, 8),
        Field("cssa", 24, 4),
        Field("nssa", 28, 4),
        Field("oentry", 32, 8),
        Field("aep", 40, 8),
        Field("ofsbasgx", 48, 8),
        Field("ogsbasgx", 56, 8),
        Field("fslimit", 64, 4),
        Field("gslimit", 68, 4),
    )

    state: int = 0
    flags: int = 0
    ossa: int = 0
    cssa: int = 0
    nssa: int = 0
    oentry: int = 0
    aep: int = 0
    ofsbasgx: int = 0
    ogsbasgx: int = 0
    fslimit: int = 0
    gslimit: int = 0


@struct_dataclass
@dataclass(frozen=True)
class GPRSGX(Struct):
    """General-purpose register state saved in an SSA frame (SDM 38.9.1), the frame's last
    184 bytes."""

    NAME: ClassVar[str] = "GPRSGX"
    SIZE: ClassVar[int] = 184
    ALIGN: ClassVar[int] = 8
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("rax", 0, 8), Field("rcx", 8, 8), Field("rdx", 16, 8), Field("rbx", 24, 8),
        Field("rsp", 32, 8), Field("rbp", 40, 8), Field("rsi", 48, 8), Field("rdi", 56, 8),
        Field("r8", 64, 8), Field("r9", 72, 8), Field("r10", 80, 8), Field("r11", 88, 8),
        Field("r12", 96, 8), Field("r13", 104, 8), Field("r14", 112, 8), Field("r15", 120, 8),
        Field("rflags", 128, 8), Field("rip", 136, 8), Field("ursp", 144, 8),
        Field("urbp", 152, 8), Field("exitinfo", 160, 4), Field("aexnotify", 167, 1),
        Field("fsbase", 168, 8), Field("gsbase", 176, 8),
    )

    rax: int = 0
    rcx: int = 0
    rdx: int = 0
    rbx: int = 0
    rsp: int = 0
    rbp: int = 0
    rsi: int = 0
    rdi: int = 0
    r8: int = 0
    r9: int = 0
    r10: int = 0
    r11: int = 0
    r12: int = 0
    r13: int = 0
    r14: int = 0
    r15: int = 0
    rflags: int = 0
    rip: int = 0
    ursp: int = 0
    urbp: int = 0
    exitinfo: int = 0
    aexnotify: int = 0
    fsbase: int = 0
    gsbase: int = 0


EXITINFO_VALID = 1 << 31
EXITINFO_TYPE_HARDWARE = 3
EXITINFO_TYPE_SOFTWARE = 6


def exitinfo(vector: int, exit_type: int) -> int:
    """Encode GPRSGX.EXITINFO: VECTOR in bits 7:0, EXIT_TYPE in 10:8, VALID in 31 (SDM 38.9.1.1)."""
    return EXITINFO_VALID | (exit_type & 0x7) << 8 | (vector & 0xFF)


@struct_dataclass
@dataclass(frozen=True)
class EXINFO(Struct):
    """MISC.EXINFO, the #PF/#GP information an AEX saves below GPRSGX (SDM 38.9.2)."""

    NAME: ClassVar[str] = "EXINFO"
    SIZE: ClassVar[int] = 16
    ALIGN: ClassVar[int] = 8
    LAYOUT: ClassVar[tuple[Field, ...]] = (Field("maddr", 0, 8), Field("errcd", 8, 4))

    maddr: int = 0
    errcd: int = 0


def ssa_gprsgx_offset(ssaframesize: int) -> int:
    """Offset of GPRSGX within an SSA frame of ``ssaframesize`` pages (its last 184 bytes)."""
    return ssaframesize * 4096 - GPRSGX.SIZE


def ssa_exinfo_offset(ssaframesize: int) -> int:
    """Offset of MISC.EXINFO within an SSA frame: immediately below GPRSGX (SDM 38.9.2)."""
    return ssa_gprsgx_offset(ssaframesize) - EXINFO.SIZE


@struct_dataclass
@dataclass(frozen=True)
class PAGEINFO(Struct):
    """Page Information, the ENCLS page-operation parameter block (SDM 38.10), 32 bytes,
    32-byte aligned. ``secinfo`` holds the PCMD pointer for EWB/ELDB/ELDU."""

    NAME: ClassVar[str] = "PAGEINFO"
    SIZE: ClassVar[int] = 32
    ALIGN: ClassVar[int] = 32
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("linaddr", 0, 8), Field("srcpge", 8, 8), Field("secinfo", 16, 8),
        Field("secs", 24, 8),
    )

    linaddr: int = 0
    srcpge: int = 0
    secinfo: int = 0
    secs: int = 0


@struct_dataclass
@dataclass(frozen=True)
class SECINFO(Struct):
    """Security Information (SDM 38.11), 64 bytes, 64-byte aligned."""

    NAME: ClassVar[str] = "SECINFO"
    SIZE: ClassVar[int] = 64
    ALIGN: ClassVar[int] = 64
    LAYOUT: ClassVar[tuple[Field, ...]] = (Field("flags", 0, 8),)

    flags: int = 0

    @property
    def page_type(self) -> int:
        return (self.flags >> SECINFO_PAGE_TYPE_SHIFT) & 0xFF

    @property
    def rwx(self) -> int:
        return self.flags & int(SECINFO_RWX)

    @classmethod
    def of(cls, page_type: PageType, rwx: int = 0, extra: int = 0) -> SECINFO:
        return cls((int(page_type) << SECINFO_PAGE_TYPE_SHIFT) | rwx | extra)


@struct_dataclass
@dataclass(frozen=True)
class PCMD(Struct):
    """Paging Crypto MetaData (SDM 38.12), 128 bytes, 128-byte aligned."""

    NAME: ClassVar[str] = "PCMD"
    SIZE: ClassVar[int] = 128
    ALIGN: ClassVar[int] = 128
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("secinfo", 0, 64, SECINFO), Field("enclaveid", 64, 8), Field("mac", 112, 16, bytes),
    )

    secinfo: SECINFO = field(default_factory=SECINFO)
    enclaveid: int = 0
    mac: bytes = _z(16)


@struct_dataclass
@dataclass(frozen=True)
class SIGSTRUCT(Struct):
    """Enclave Signature Structure (SDM 38.13), 1808 bytes; EINIT needs it 4 KiB aligned.

    ``header`` and ``header2`` are constants; ``modulus``, ``signature``, ``q1`` and ``q2`` are
    little-endian 384-byte integers stored as bytes. The signed bytes are [0:128] || [900:1028].
    """

    NAME: ClassVar[str] = "SIGSTRUCT"
    SIZE: ClassVar[int] = 1808
    ALIGN: ClassVar[int] = 4096
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("header", 0, 16, bytes),
        Field("vendor", 16, 4),
        Field("date", 20, 4),
        Field("header2", 24, 16, bytes),
        Field("swdefined", 40, 4),
        Field("modulus", 128, 384, bytes),
        Field("exponent", 512, 4),
        Field("signature", 516, 384, bytes),
        Field("miscselect", 900, 4),
        Field("miscmask", 904, 4),
        Field("cet_attributes", 908, 1),
        Field("cet_attributes_mask", 909, 1),
        Field("isvfamilyid", 912, 16, bytes),
        Field("attributes", 928, 16, ATTRIBUTES),
        Field("attributemask", 944, 16, ATTRIBUTES),
        Field("enclavehash", 960, 32, bytes),
        Field("isvextprodid", 1008, 16, bytes),
        Field("isvprodid", 1024, 2),
        Field("isvsvn", 1026, 2),
        Field("q1", 1040, 384, bytes),
        Field("q2", 1424, 384, bytes),
    )

    header: bytes = _z(16)
    vendor: int = 0
    date: int = 0
    header2: bytes = _z(16)
    swdefined: int = 0
    modulus: bytes = _z(384)
    exponent: int = 0
    signature: bytes = _z(384)
    miscselect: int = 0
    miscmask: int = 0
    cet_attributes: int = 0
    cet_attributes_mask: int = 0
    isvfamilyid: bytes = _z(16)
    attributes: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    attributemask: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    enclavehash: bytes = _z(32)
    isvextprodid: bytes = _z(16)
    isvprodid: int = 0
    isvsvn: int = 0
    q1: bytes = _z(384)
    q2: bytes = _z(384)


SIGSTRUCT_SIGNED_RANGES = ((0, 128), (900, 1028))
"""Byte ranges of SIGSTRUCT covered by the signature (SDM 38.13, "signed" column)."""


def sigstruct_signed_bytes(raw: bytes) -> bytes:
    """The 256 bytes of a SIGSTRUCT image that its RSA signature covers."""
    return b"".join(raw[a:b] for a, b in SIGSTRUCT_SIGNED_RANGES)


@struct_dataclass
@dataclass(frozen=True)
class EINITTOKEN(Struct):
    """EINIT token (SDM 38.14), 304 bytes, 512-byte aligned. The MAC covers bytes [0:192]."""

    NAME: ClassVar[str] = "EINITTOKEN"
    SIZE: ClassVar[int] = 304
    ALIGN: ClassVar[int] = 512
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("valid", 0, 4),
        Field("attributes", 48, 16, ATTRIBUTES),
        Field("mrenclave", 64, 32, bytes),
        Field("mrsigner", 128, 32, bytes),
        Field("cpusvnle", 192, 16, bytes),
        Field("isvprodidle", 208, 2),
        Field("isvsvnle", 210, 2),
        Field("maskedmiscselectle", 236, 4),
        Field("maskedattributesle", 240, 16, ATTRIBUTES),
        Field("keyid", 256, 32, bytes),
        Field("mac", 288, 16, bytes),
    )

    valid: int = 0
    attributes: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    mrenclave: bytes = _z(32)
    mrsigner: bytes = _z(32)
    cpusvnle: bytes = _z(16)
    isvprodidle: int = 0
    isvsvnle: int = 0
    maskedmiscselectle: int = 0
    maskedattributesle: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    keyid: bytes = _z(32)
    mac: bytes = _z(16)


EINITTOKEN_MAC_RANGE = (0, 192)


@struct_dataclass
@dataclass(frozen=True)
class REPORTBODY(Struct):
    """The 384-byte body of a REPORT (SDM 38.15), the part its MAC covers."""

    NAME: ClassVar[str] = "REPORTBODY"
    SIZE: ClassVar[int] = 384
    ALIGN: ClassVar[int] = 1
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("cpusvn", 0, 16, bytes),
        Field("miscselect", 16, 4),
        Field("cet_attributes", 20, 1),
        Field("isvextprodid", 32, 16, bytes),
        Field("attributes", 48, 16, ATTRIBUTES),
        Field("mrenclave", 64, 32, bytes),
        Field("mrsigner", 128, 32, bytes),
        Field("configid", 192, 64, bytes),
        Field("isvprodid", 256, 2),
        Field("isvsvn", 258, 2),
        Field("configsvn", 260, 2),
        Field("isvfamilyid", 304, 16, bytes),
        Field("reportdata", 320, 64, bytes),
    )

    cpusvn: bytes = _z(16)
    miscselect: int = 0
    cet_attributes: int = 0
    isvextprodid: bytes = _z(16)
    attributes: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    mrenclave: bytes = _z(32)
    mrsigner: bytes = _z(32)
    configid: bytes = _z(64)
    isvprodid: int = 0
    isvsvn: int = 0
    configsvn: int = 0
    isvfamilyid: bytes = _z(16)
    reportdata: bytes = _z(64)


@struct_dataclass
@dataclass(frozen=True)
class REPORT(Struct):
    """REPORT (SDM 38.15), 432 bytes, 512-byte aligned: body, KEYID and the CMAC over the body."""

    NAME: ClassVar[str] = "REPORT"
    SIZE: ClassVar[int] = 432
    ALIGN: ClassVar[int] = 512
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("body", 0, 384, REPORTBODY),
        Field("keyid", 384, 32, bytes),
        Field("mac", 416, 16, bytes),
    )

    body: REPORTBODY = field(default_factory=REPORTBODY)
    keyid: bytes = _z(32)
    mac: bytes = _z(16)


@struct_dataclass
@dataclass(frozen=True)
class TARGETINFO(Struct):
    """Report target information (SDM 38.16), 512 bytes, 512-byte aligned."""

    NAME: ClassVar[str] = "TARGETINFO"
    SIZE: ClassVar[int] = 512
    ALIGN: ClassVar[int] = 512
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("measurement", 0, 32, bytes),
        Field("attributes", 32, 16, ATTRIBUTES),
        Field("cet_attributes", 48, 1),
        Field("configsvn", 50, 2),
        Field("miscselect", 52, 4),
        Field("configid", 64, 64, bytes),
    )

    measurement: bytes = _z(32)
    attributes: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    cet_attributes: int = 0
    configsvn: int = 0
    miscselect: int = 0
    configid: bytes = _z(64)


@struct_dataclass
@dataclass(frozen=True)
class KEYREQUEST(Struct):
    """Key request (SDM 38.18), 512 bytes, 512-byte aligned."""

    NAME: ClassVar[str] = "KEYREQUEST"
    SIZE: ClassVar[int] = 512
    ALIGN: ClassVar[int] = 512
    LAYOUT: ClassVar[tuple[Field, ...]] = (
        Field("keyname", 0, 2),
        Field("keypolicy", 2, 2),
        Field("isvsvn", 4, 2),
        Field("cpusvn", 8, 16, bytes),
        Field("attributemask", 24, 16, ATTRIBUTES),
        Field("keyid", 40, 32, bytes),
        Field("miscmask", 72, 4),
        Field("configsvn", 76, 2),
    )

    keyname: int = 0
    keypolicy: int = 0
    isvsvn: int = 0
    cpusvn: bytes = _z(16)
    attributemask: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    keyid: bytes = _z(32)
    miscmask: int = 0
    configsvn: int = 0
