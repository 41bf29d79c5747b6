"""Architectural constants of Intel SGX: leaf numbers, error codes, page types and flag bits.

Sources: Intel SDM Vol. 3D ch. 38-41 ("Enclave Instructions and Intel SGX Data Structures"),
Linux ``arch/x86/include/asm/sgx.h`` and Intel's ``common/inc/internal/arch.h``.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

PAGE_SIZE = 4096
"""Size of an EPC page (SDM 34.3)."""

EEXTEND_CHUNK = 256
"""Bytes measured by one EEXTEND (SDM EEXTEND)."""

VA_SLOTS_PER_PAGE = 512
"""A version-array page holds 512 eight-byte version slots (SDM 38.14 EPA)."""


class EnclsLeaf(IntEnum):
    """ENCLS leaf functions, selected by EAX (SDM Table 38-1; Linux ``enum sgx_encls_function``)."""

    ECREATE = 0x00
    EADD = 0x01
    EINIT = 0x02
    EREMOVE = 0x03
    EDBGRD = 0x04
    EDBGWR = 0x05
    EEXTEND = 0x06
    ELDB = 0x07
    ELDU = 0x08
    EBLOCK = 0x09
    EPA = 0x0A
    EWB = 0x0B
    ETRACK = 0x0C
    EAUG = 0x0D
    EMODPR = 0x0E
    EMODT = 0x0F
    ERDINFO = 0x10
    ETRACKC = 0x11
    ELDBC = 0x12
    ELDUC = 0x13


class EncluLeaf(IntEnum):
    """ENCLU leaf functions, selected by EAX (SDM Table 38-2; Intel ``inst.h``)."""

    EREPORT = 0x00
    EGETKEY = 0x01
    EENTER = 0x02
    ERESUME = 0x03
    EEXIT = 0x04
    EACCEPT = 0x05
    EMODPE = 0x06
    EACCEPTCOPY = 0x07
    EVERIFYREPORT2 = 0x08
    EDECCSSA = 0x09


class SgxError(IntEnum):
    """Status codes returned in RAX by ENCLS/ENCLU leaves (SDM Table 38-4 "Error or Information
    Codes for Intel SGX Instructions"; Intel ``isgx_user.h``)."""

    SGX_SUCCESS = 0
    SGX_INVALID_SIG_STRUCT = 1
    SGX_INVALID_ATTRIBUTE = 2
    SGX_BLKSTATE = 3
    SGX_INVALID_MEASUREMENT = 4
    SGX_NOTBLOCKABLE = 5
    SGX_PG_INVLD = 6
    SGX_EPC_PAGE_CONFLICT = 7
    SGX_INVALID_SIGNATURE = 8
    SGX_MAC_COMPARE_FAIL = 9
    SGX_PAGE_NOT_BLOCKED = 10
    SGX_NOT_TRACKED = 11
    SGX_VA_SLOT_OCCUPIED = 12
    SGX_CHILD_PRESENT = 13
    SGX_ENCLAVE_ACT = 14
    SGX_ENTRYEPOCH_LOCKED = 15
    SGX_INVALID_EINITTOKEN = 16
    SGX_PREV_TRK_INCMPL = 17
    SGX_PG_IS_SECS = 18
    SGX_PAGE_ATTRIBUTES_MISMATCH = 19
    SGX_PAGE_NOT_MODIFIABLE = 20
    SGX_PAGE_NOT_DEBUGGABLE = 21
    SGX_INVALID_REPORTMACSTRUCT = 28
    SGX_INVALID_CPUSVN = 32
    SGX_INVALID_ISVSVN = 64
    SGX_UNMASKED_EVENT = 128
    SGX_INVALID_KEYNAME = 256


class PageType(IntEnum):
    """EPCM page types, SECINFO.FLAGS bits 15:8 (SDM Table 38-5)."""

    PT_SECS = 0
    PT_TCS = 1
    PT_REG = 2
    PT_VA = 3
    PT_TRIM = 4
    PT_SS_FIRST = 5
    PT_SS_REST = 6


class SecinfoFlags(IntFlag):
    """SECINFO.FLAGS permission and state bits (SDM 38.11.1). PAGE_TYPE lives in bits 15:8."""

    R = 1 << 0
    W = 1 << 1
    X = 1 << 2
    PENDING = 1 << 3
    MODIFIED = 1 << 4
    PR = 1 << 5


SECINFO_RWX = SecinfoFlags.R | SecinfoFlags.W | SecinfoFlags.X
SECINFO_PAGE_TYPE_SHIFT = 8
SECINFO_PAGE_TYPE_MASK = 0xFF << SECINFO_PAGE_TYPE_SHIFT
SECINFO_FLAGS_VALID = int(SecinfoFlags.R | SecinfoFlags.W | SecinfoFlags.X | SecinfoFlags.PENDING
                          | SecinfoFlags.MODIFIED | SecinfoFlags.PR) | SECINFO_PAGE_TYPE_MASK
"""Bits of SECINFO.FLAGS that are defined; any other bit set is a reserved-bit violation."""


def secinfo_flags(page_type: PageType, rwx: int = 0, extra: int = 0) -> int:
    """Compose a SECINFO.FLAGS value from a page type, R/W/X bits and state bits."""
    return (int(page_type) << SECINFO_PAGE_TYPE_SHIFT) | (rwx & int(SECINFO_RWX)) | extra


class AttributesFlags(IntFlag):
    """SECS.ATTRIBUTES.FLAGS (SDM Table 38-3; Intel ``sgx_attributes.h``)."""

    INIT = 1 << 0
    DEBUG = 1 << 1
    MODE64BIT = 1 << 2
    PROVISIONKEY = 1 << 4
    EINITTOKEN_KEY = 1 << 5
    CET = 1 << 6
    KSS = 1 << 7
    AEXNOTIFY = 1 << 10


ATTRIBUTES_FLAGS_DEFINED = int(
    AttributesFlags.INIT | AttributesFlags.DEBUG | AttributesFlags.MODE64BIT
    | AttributesFlags.PROVISIONKEY | AttributesFlags.EINITTOKEN_KEY | AttributesFlags.CET
    | AttributesFlags.KSS | AttributesFlags.AEXNOTIFY
)
"""Every ATTRIBUTES.FLAGS bit the SDM defines; the rest are reserved."""


class Xfrm(IntFlag):
    """XFRM bits, in XCR0 format (SDM 38.7.2.2)."""

    X87 = 1 << 0
    SSE = 1 << 1
    AVX = 1 << 2
    BNDREGS = 1 << 3
    BNDCSR = 1 << 4
    OPMASK = 1 << 5
    ZMM_HI256 = 1 << 6
    HI16_ZMM = 1 << 7
    PKRU = 1 << 9
    AMX_TILECFG = 1 << 17
    AMX_TILEDATA = 1 << 18


XFRM_LEGACY = int(Xfrm.X87 | Xfrm.SSE)
"""XFRM bits 0 and 1 must always be set (ECREATE #GP otherwise)."""


class MiscSelect(IntFlag):
    """MISCSELECT bits (SDM 38.7.2.3)."""

    EXINFO = 1 << 0
    CPINFO = 1 << 1


class KeyName(IntEnum):
    """KEYREQUEST.KEYNAME (SDM Table 38-22)."""

    EINITTOKEN_KEY = 0
    PROVISION_KEY = 1
    PROVISION_SEAL_KEY = 2
    REPORT_KEY = 3
    SEAL_KEY = 4


class KeyPolicy(IntFlag):
    """KEYREQUEST.KEYPOLICY (SDM Table 38-23; Intel ``sgx_key.h``)."""

    MRENCLAVE = 1 << 0
    MRSIGNER = 1 << 1
    NOISVPRODID = 1 << 2
    CONFIGID = 1 << 3
    ISVFAMILYID = 1 << 4
    ISVEXTPRODID = 1 << 5


KEYPOLICY_DEFINED = 0x3F
KEYPOLICY_KSS = int(KeyPolicy.NOISVPRODID | KeyPolicy.CONFIGID | KeyPolicy.ISVFAMILYID
                    | KeyPolicy.ISVEXTPRODID)
"""KEYPOLICY bits that need SECS.ATTRIBUTES.KSS (SDM EGETKEY: #GP otherwise)."""


class TcsFlags(IntFlag):
    """TCS.FLAGS (SDM 38.8.1)."""

    DBGOPTIN = 1 << 0
    AEXNOTIFY = 1 << 1


class Vector(IntEnum):
    """Exception vectors the SGX leaves raise or an AEX reports (SDM Vol. 3A Table 6-1)."""

    DE = 0
    DB = 1
    BP = 3
    BR = 5
    UD = 6
    NM = 7
    GP = 13
    PF = 14
    MF = 16
    AC = 17
    XM = 19
    CP = 21


class Pfec(IntFlag):
    """Page-fault error code bits (SDM Vol. 3A 4.7); SGX is bit 15 for EPCM-induced faults."""

    P = 1 << 0
    W = 1 << 1
    U = 1 << 2
    RSVD = 1 << 3
    I = 1 << 4  # noqa: E741 - the SDM's name
    PK = 1 << 5
    SS = 1 << 6
    SGX = 1 << 15


class Msr(IntEnum):
    """SGX-related model-specific registers (SDM Vol. 4)."""

    IA32_FEATURE_CONTROL = 0x3A
    IA32_SGXLEPUBKEYHASH0 = 0x8C
    IA32_SGXLEPUBKEYHASH1 = 0x8D
    IA32_SGXLEPUBKEYHASH2 = 0x8E
    IA32_SGXLEPUBKEYHASH3 = 0x8F


class FeatureControl(IntFlag):
    """IA32_FEATURE_CONTROL bits that matter for SGX (SDM Vol. 4 Table 2-2; QEMU ``cpu.h``)."""

    LOCKED = 1 << 0
    VMXON_INSIDE_SMX = 1 << 1
    VMXON_OUTSIDE_SMX = 1 << 2
    SGX_LC = 1 << 17
    SGX = 1 << 18
    LMCE = 1 << 20


INTEL_LE_PUBKEY_HASH: tuple[int, int, int, int] = (
    0xA6053E051270B7AC,
    0x6CFBE8BA8B3B413D,
    0xC4916D99F2B3735D,
    0xD4F8C05909F9BB3B,
)
"""Reset value of IA32_SGXLEPUBKEYHASH0..3: the hash of Intel's launch-enclave key
(Linux ``arch/x86/kvm/vmx/sgx.c``, QEMU ``x86_cpu_set_sgxlepubkeyhash``)."""

SIGSTRUCT_HEADER = bytes.fromhex("06000000E10000000000010000000000")
SIGSTRUCT_HEADER2 = bytes.fromhex("01010000600000006000000001000000")
SIGSTRUCT_VENDORS = (0x0000, 0x8086)
SIGSTRUCT_EXPONENT = 3

SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")
"""DER DigestInfo prefix for SHA-256 in an EMSA-PKCS1-v1_5 encoding (RFC 8017 9.2)."""

HARDCODED_PKCS1_5_PADDING = b"\x00\x01" + b"\xff" * 330 + b"\x00" + SHA256_DIGESTINFO
"""The upper 352 bytes of the PKCS#1 v1.5 encoded message that EINIT stores in SECS.PADDING and
EGETKEY/EREPORT bind into keys (SDM EGETKEY "HARDCODED_PKCS1_5_PADDING")."""

assert len(HARDCODED_PKCS1_5_PADDING) == 352
