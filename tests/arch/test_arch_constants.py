"""Constants of vsgx.arch against the architecture reference (shared/reference/
sgx-architecture.md, which cites the Intel SDM Vol. 3D ch. 38-41, Intel linux-sgx and Linux)."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from vsgx.arch import (
    ATTRIBUTES_FLAGS_DEFINED,
    EEXTEND_CHUNK,
    HARDCODED_PKCS1_5_PADDING,
    INTEL_LE_PUBKEY_HASH,
    KEYPOLICY_DEFINED,
    KEYPOLICY_KSS,
    PAGE_SIZE,
    SECINFO,
    SECINFO_FLAGS_VALID,
    SECINFO_RWX,
    SHA256_DIGESTINFO,
    SIGSTRUCT_EXPONENT,
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
    SIGSTRUCT_VENDORS,
    VA_SLOTS_PER_PAGE,
    XFRM_LEGACY,
    AttributesFlags,
    EnclsLeaf,
    EncluLeaf,
    FeatureControl,
    KeyName,
    KeyPolicy,
    MiscSelect,
    Msr,
    PageType,
    Pfec,
    SecinfoFlags,
    SgxError,
    TcsFlags,
    Xfrm,
    secinfo_flags,
)

# Reference section 5, "Error codes in RAX", every entry.
ERROR_CODES = {
    "INVALID_SIG_STRUCT": 1,
    "INVALID_ATTRIBUTE": 2,
    "BLKSTATE": 3,
    "INVALID_MEASUREMENT": 4,
    "NOTBLOCKABLE": 5,
    "PG_INVLD": 6,
    "EPC_PAGE_CONFLICT": 7,
    "INVALID_SIGNATURE": 8,
    "MAC_COMPARE_FAIL": 9,
    "PAGE_NOT_BLOCKED": 10,
    "NOT_TRACKED": 11,
    "VA_SLOT_OCCUPIED": 12,
    "CHILD_PRESENT": 13,
    "ENCLAVE_ACT": 14,
    "ENTRYEPOCH_LOCKED": 15,
    "INVALID_EINITTOKEN": 16,
    "PREV_TRK_INCMPL": 17,
    "PG_IS_SECS": 18,
    "PAGE_ATTRIBUTES_MISMATCH": 19,
    "PAGE_NOT_MODIFIABLE": 20,
    "PAGE_NOT_DEBUGGABLE": 21,
    "INVALID_REPORTMACSTRUCT": 28,
    "INVALID_CPUSVN": 32,
    "INVALID_ISVSVN": 64,
    "UNMASKED_EVENT": 128,
    "INVALID_KEYNAME": 256,
}


def test_sgx_error_codes_exact() -> None:
    expected = {"SGX_SUCCESS": 0} | {f"SGX_{k}": v for k, v in ERROR_CODES.items()}
    assert {e.name: e.value for e in SgxError} == expected
    assert len({e.value for e in SgxError}) == len(expected)  # no aliases


def test_encls_leaves() -> None:
    expected = {
        "ECREATE": 0x0, "EADD": 0x1, "EINIT": 0x2, "EREMOVE": 0x3, "EDBGRD": 0x4, "EDBGWR": 0x5,
        "EEXTEND": 0x6, "ELDB": 0x7, "ELDU": 0x8, "EBLOCK": 0x9, "EPA": 0xA, "EWB": 0xB,
        "ETRACK": 0xC, "EAUG": 0xD, "EMODPR": 0xE, "EMODT": 0xF, "ERDINFO": 0x10,
        "ETRACKC": 0x11, "ELDBC": 0x12, "ELDUC": 0x13,
    }
    assert {e.name: e.value for e in EnclsLeaf} == expected


def test_enclu_leaves() -> None:
    expected = {
        "EREPORT": 0, "EGETKEY": 1, "EENTER": 2, "ERESUME": 3, "EEXIT": 4, "EACCEPT": 5,
        "EMODPE": 6, "EACCEPTCOPY": 7, "EVERIFYREPORT2": 8, "EDECCSSA": 9,
    }
    assert {e.name: e.value for e in EncluLeaf} == expected


def test_page_types() -> None:
    expected = {"PT_SECS": 0, "PT_TCS": 1, "PT_REG": 2, "PT_VA": 3, "PT_TRIM": 4,
                "PT_SS_FIRST": 5, "PT_SS_REST": 6}
    assert {e.name: e.value for e in PageType} == expected


def test_keyname() -> None:
    expected = {"EINITTOKEN_KEY": 0, "PROVISION_KEY": 1, "PROVISION_SEAL_KEY": 2,
                "REPORT_KEY": 3, "SEAL_KEY": 4}
    assert {e.name: e.value for e in KeyName} == expected


def test_keypolicy() -> None:
    expected = {"MRENCLAVE": 0x01, "MRSIGNER": 0x02, "NOISVPRODID": 0x04, "CONFIGID": 0x08,
                "ISVFAMILYID": 0x10, "ISVEXTPRODID": 0x20}
    assert {e.name: e.value for e in KeyPolicy} == expected
    assert KEYPOLICY_DEFINED == 0x3F
    assert KEYPOLICY_KSS == 0x3C  # every bit but MRENCLAVE/MRSIGNER needs KSS


def test_secinfo_flag_bits() -> None:
    expected = {"R": 1, "W": 2, "X": 4, "PENDING": 8, "MODIFIED": 0x10, "PR": 0x20}
    assert {e.name: e.value for e in SecinfoFlags} == expected
    assert SECINFO_RWX == 0x7
    assert SECINFO_FLAGS_VALID == 0xFF3F  # bits 5:0 and PAGE_TYPE 15:8


def test_secinfo_helpers() -> None:
    rw = SecinfoFlags.R | SecinfoFlags.W
    rx = SecinfoFlags.R | SecinfoFlags.X
    assert secinfo_flags(PageType.PT_TCS) == 0x100
    assert secinfo_flags(PageType.PT_REG, rw) == 0x203
    assert secinfo_flags(PageType.PT_REG, rx) == 0x205
    assert secinfo_flags(PageType.PT_SECS) == 0
    assert secinfo_flags(PageType.PT_VA) == 0x300
    assert secinfo_flags(PageType.PT_TRIM, extra=SecinfoFlags.MODIFIED) == 0x410
    assert secinfo_flags(PageType.PT_REG, rw, SecinfoFlags.PENDING) == 0x20B
    assert secinfo_flags(PageType.PT_REG, 0xFF) == 0x207  # only R/W/X taken from rwx
    assert SECINFO.of(PageType.PT_TCS).flags == 0x100
    assert SECINFO.of(PageType.PT_REG, rw).flags == 0x203
    assert SECINFO.of(PageType.PT_REG, rx).flags == 0x205
    # the first 8 bytes of an EADD'ed SECINFO as measured (reference worked example)
    assert SECINFO.of(PageType.PT_REG, rx).to_bytes()[:8].hex() == "0502000000000000"
    assert SECINFO.of(PageType.PT_REG, rx).to_bytes()[8:] == bytes(56)


@given(st.sampled_from(list(PageType)), st.integers(0, 7), st.integers(0, 7))
def test_secinfo_flags_composition(pt: PageType, rwx: int, state: int) -> None:
    flags = secinfo_flags(pt, rwx, state << 3)
    assert flags & 0x7 == rwx
    assert (flags >> 3) & 0x7 == state
    assert (flags >> 8) & 0xFF == pt
    assert flags & ~SECINFO_FLAGS_VALID == 0


def test_attributes_flags() -> None:
    expected = {"INIT": 0x1, "DEBUG": 0x2, "MODE64BIT": 0x4, "PROVISIONKEY": 0x10,
                "EINITTOKEN_KEY": 0x20, "CET": 0x40, "KSS": 0x80, "AEXNOTIFY": 0x400}
    assert {e.name: e.value for e in AttributesFlags} == expected
    assert ATTRIBUTES_FLAGS_DEFINED == 0x4F7  # bit 3 and bits 8, 9 reserved
    assert XFRM_LEGACY == 3 == Xfrm.X87 | Xfrm.SSE


def test_misc_tcs_flags() -> None:
    assert {e.name: e.value for e in MiscSelect} == {"EXINFO": 1, "CPINFO": 2}
    assert {e.name: e.value for e in TcsFlags} == {"DBGOPTIN": 1, "AEXNOTIFY": 2}


def test_msrs_feature_control_pfec() -> None:
    assert Msr.IA32_FEATURE_CONTROL.value == 0x3A
    assert [Msr[f"IA32_SGXLEPUBKEYHASH{i}"] for i in range(4)] == [0x8C, 0x8D, 0x8E, 0x8F]
    assert FeatureControl.SGX_LC == 1 << 17
    assert FeatureControl.SGX == 1 << 18
    assert FeatureControl.LOCKED.value == 1
    assert Pfec.SGX == 1 << 15


def test_sizes() -> None:
    assert PAGE_SIZE == 4096
    assert EEXTEND_CHUNK == 256
    assert VA_SLOTS_PER_PAGE == 512
    assert VA_SLOTS_PER_PAGE * 8 == PAGE_SIZE


def test_sigstruct_constants() -> None:
    assert SIGSTRUCT_HEADER.hex() == "06000000e10000000000010000000000"
    assert SIGSTRUCT_HEADER2.hex() == "01010000600000006000000001000000"
    assert SIGSTRUCT_VENDORS == (0, 0x8086)
    assert SIGSTRUCT_EXPONENT == 3


def test_hardcoded_pkcs1_5_padding() -> None:
    digestinfo = bytes.fromhex("3031300d060960864801650304020105000420")
    assert SHA256_DIGESTINFO == digestinfo
    assert len(HARDCODED_PKCS1_5_PADDING) == 352
    assert HARDCODED_PKCS1_5_PADDING == b"\x00\x01" + b"\xff" * 330 + b"\x00" + digestinfo
    # the SDM's form, as a 2816-bit little-endian value: [15:0] = 0100H, [2655:16] all ones,
    # [2815:2656] = 2004..3000H
    value = int.from_bytes(HARDCODED_PKCS1_5_PADDING, "little")
    assert value & 0xFFFF == 0x0100
    assert (value >> 16) & ((1 << 2640) - 1) == (1 << 2640) - 1
    assert (value >> 2656).to_bytes(20, "big").hex() == (
        "2004000501020403650148866009060d30313000")
    # it is the first 352 bytes of a 384-byte EMSA-PKCS1-v1_5 SHA-256 encoding
    digest = hashlib.sha256(b"anything").digest()
    em = HARDCODED_PKCS1_5_PADDING + digest
    assert len(em) == 384
    assert em[352:] == digest


def test_intel_le_pubkey_hash() -> None:
    assert INTEL_LE_PUBKEY_HASH == (
        0xA6053E051270B7AC,
        0x6CFBE8BA8B3B413D,
        0xC4916D99F2B3735D,
        0xD4F8C05909F9BB3B,
    )
    # MSR[0x8C + i] is the little-endian u64 of MRSIGNER[8i : 8i + 8]
    mrsigner = b"".join(v.to_bytes(8, "little") for v in INTEL_LE_PUBKEY_HASH)
    assert len(mrsigner) == 32
    assert mrsigner[:8].hex() == "acb77012053e05a6"
