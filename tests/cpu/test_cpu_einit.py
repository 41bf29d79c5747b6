"""EINIT: every status code and fault of SDM EINIT (reference §3), on the FLC path and the
EINITTOKEN path. Every error must leave ZF=1, CF=0 and the enclave uninitialised."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from vsgx.arch import (
    ATTRIBUTES,
    EINITTOKEN,
    HARDCODED_PKCS1_5_PADDING,
    INTEL_LE_PUBKEY_HASH,
    SECS,
    AttributesFlags,
    EnclsLeaf,
    MiscSelect,
    SgxError,
    Vector,
)
from vsgx.crypto import mrsigner

MODE64 = int(AttributesFlags.MODE64BIT)
DEBUG = int(AttributesFlags.DEBUG)
LE_HASH = hashlib.sha256(b"some launch enclave's signer").digest()


def _fails(plat: Any, enc: Any, result: Any, code: SgxError, assert_status: Any) -> None:
    assert_status(result, code, zf=True, cf=False)
    state = plat.cpu.enclaves[enc.secs]
    assert not state.initialized
    assert not state.secs.attributes.flags & AttributesFlags.INIT


@pytest.fixture
def uninit(plat: Any) -> Any:
    """An enclave that has been built and measured but not initialised."""
    return plat.build_enclave(init=False)


def test_einit_success_commits_identity(plat: Any, uninit: Any, assert_status: Any) -> None:
    sig = plat.sign(uninit.secs, isvprodid=0x1234, isvsvn=0x42)
    result = plat.einit(uninit.secs, sig=sig)
    assert_status(result, SgxError.SGX_SUCCESS, zf=False, cf=False)
    state = plat.cpu.enclaves[uninit.secs]
    assert state.initialized
    stored = SECS.from_bytes(plat.epc_bytes(uninit.secs), strict=False)
    for secs in (state.secs, stored):
        assert secs.mrenclave == sig.enclavehash
        assert secs.mrsigner == mrsigner(sig.modulus) == hashlib.sha256(sig.modulus).digest()
        assert (secs.isvprodid, secs.isvsvn) == (0x1234, 0x42)
        assert secs.attributes.flags & AttributesFlags.INIT
    assert state.padding == HARDCODED_PKCS1_5_PADDING


def test_einit_twice_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        plat.einit(enclave.secs, sig=enclave.sig)


@pytest.mark.parametrize("which", ["sigstruct", "token", "secs"])
def test_einit_misaligned_operands_gp(plat: Any, uninit: Any, assert_fault: Any,
                                      which: str) -> None:
    kwargs = {"sigstruct": {"sig_pa": plat.SIGSTRUCT_PA + 0x800},
              "token": {"token_pa": plat.TOKEN_PA + 0x100},
              "secs": {"secs_pa": plat.pa(uninit.secs) + 0x40}}[which]
    with assert_fault(Vector.GP):
        plat.einit(uninit.secs, **kwargs)


def test_einit_secs_not_a_secs_pf(plat: Any, uninit: Any, assert_fault: Any) -> None:
    target = uninit.rw(0)
    with assert_fault(Vector.PF, pfec_sgx=True, address=plat.pa(target)):
        plat.einit(uninit.secs, secs_pa=plat.pa(target))


def test_einit_secs_not_epc_pf(plat: Any, uninit: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.PF):
        plat.einit(uninit.secs, secs_pa=plat.FREE_PA)


# -- SGX_INVALID_SIG_STRUCT -----------------------------------------------------------------------

@pytest.mark.parametrize("offset,value", [
    pytest.param(0, 0x07, id="header"),
    pytest.param(12, 0x80, id="header-type-bit31"),
    pytest.param(24, 0x00, id="header2"),
    pytest.param(16, 0x34, id="vendor"),
    pytest.param(512, 0x05, id="exponent"),
    pytest.param(44, 0x01, id="reserved-44"),
    pytest.param(127, 0x01, id="reserved-127"),
    pytest.param(910, 0x01, id="reserved-910"),
    pytest.param(1000, 0x01, id="reserved-992"),
    pytest.param(1030, 0x01, id="reserved-1028"),
])
def test_einit_malformed_sigstruct(plat: Any, uninit: Any, assert_status: Any, offset: int,
                                   value: int) -> None:
    raw = bytearray(plat.sign(uninit.secs).to_bytes())
    raw[offset] = value if raw[offset] != value else value ^ 0xFF
    result = plat.einit(uninit.secs, raw_sig=bytes(raw))
    _fails(plat, uninit, result, SgxError.SGX_INVALID_SIG_STRUCT, assert_status)


def test_einit_vendor_8086_accepted(plat: Any, uninit: Any, assert_status: Any) -> None:
    assert_status(plat.einit(uninit.secs, vendor=0x8086), SgxError.SGX_SUCCESS)


def test_einit_isvfamilyid_without_kss(plat: Any, uninit: Any, assert_status: Any) -> None:
    result = plat.einit(uninit.secs, isvfamilyid=b"\x01" * 16)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_SIG_STRUCT, assert_status)


def test_einit_isvextprodid_without_kss_accepted(plat: Any, uninit: Any,
                                                 assert_status: Any) -> None:
    result = plat.einit(uninit.secs, isvextprodid=b"\x01" * 16)
    assert_status(result, SgxError.SGX_SUCCESS)


# -- SGX_INVALID_SIGNATURE ------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [
    pytest.param(20, id="signed-date"),
    pytest.param(1026, id="signed-isvsvn"),
    pytest.param(960, id="signed-enclavehash"),
    pytest.param(516, id="signature"),
    pytest.param(128, id="modulus"),
    pytest.param(1040, id="q1"),
    pytest.param(1424, id="q2"),
])
def test_einit_bad_signature(plat: Any, uninit: Any, assert_status: Any, offset: int) -> None:
    raw = bytearray(plat.sign(uninit.secs).to_bytes())
    raw[offset] ^= 0x01
    result = plat.einit(uninit.secs, raw_sig=bytes(raw))
    _fails(plat, uninit, result, SgxError.SGX_INVALID_SIGNATURE, assert_status)


# -- SGX_INVALID_MEASUREMENT ----------------------------------------------------------------------

def test_einit_enclavehash_mismatch(plat: Any, uninit: Any, assert_status: Any) -> None:
    result = plat.einit(uninit.secs, enclavehash=hashlib.sha256(b"other").digest())
    _fails(plat, uninit, result, SgxError.SGX_INVALID_MEASUREMENT, assert_status)


def test_einit_measurement_covers_later_eextend(plat: Any, assert_status: Any) -> None:
    """A SIGSTRUCT over a prefix of the build no longer matches after one more EEXTEND."""
    enc = plat.build_enclave(init=False)
    sig = plat.sign(enc.secs)
    plat.encls(EnclsLeaf.EEXTEND, plat.pa(enc.secs), plat.pa(enc.tcs))
    _fails(plat, enc, plat.einit(enc.secs, sig=sig), SgxError.SGX_INVALID_MEASUREMENT,
           assert_status)


# -- SGX_INVALID_ATTRIBUTE ------------------------------------------------------------------------

def test_einit_attribute_mask_mismatch(plat: Any, uninit: Any, assert_status: Any) -> None:
    """SIGSTRUCT requires DEBUG (under an all-ones mask); the SECS is a production enclave."""
    result = plat.einit(uninit.secs, attributes=ATTRIBUTES(MODE64 | DEBUG, 3))
    _fails(plat, uninit, result, SgxError.SGX_INVALID_ATTRIBUTE, assert_status)


def test_einit_attribute_mismatch_outside_mask_ok(plat: Any, uninit: Any,
                                                  assert_status: Any) -> None:
    result = plat.einit(uninit.secs, attributes=ATTRIBUTES(MODE64 | DEBUG, 3),
                        attributemask=ATTRIBUTES(~DEBUG & (1 << 64) - 1, (1 << 64) - 1))
    assert_status(result, SgxError.SGX_SUCCESS)


def test_einit_xfrm_mask_mismatch(plat: Any, uninit: Any, assert_status: Any) -> None:
    result = plat.einit(uninit.secs, attributes=ATTRIBUTES(MODE64, 7))
    _fails(plat, uninit, result, SgxError.SGX_INVALID_ATTRIBUTE, assert_status)


def test_einit_miscselect_mask_mismatch(plat: Any, assert_status: Any) -> None:
    enc = plat.build_enclave(miscselect=int(MiscSelect.EXINFO), init=False)
    result = plat.einit(enc.secs, miscselect=0, miscmask=int(MiscSelect.EXINFO))
    _fails(plat, enc, result, SgxError.SGX_INVALID_ATTRIBUTE, assert_status)
    assert_status(plat.einit(enc.secs, miscselect=0, miscmask=0), SgxError.SGX_SUCCESS)


def test_einit_einittoken_key_attribute_with_non_le_signer(plat: Any, assert_status: Any) -> None:
    enc = plat.build_enclave(flags=MODE64 | int(AttributesFlags.EINITTOKEN_KEY), init=False)
    result = plat.einit(enc.secs, lehash=None)  # MSRs keep Intel's LE hash
    _fails(plat, enc, result, SgxError.SGX_INVALID_ATTRIBUTE, assert_status)


def test_einit_einittoken_key_attribute_with_le_signer(plat: Any, assert_status: Any) -> None:
    enc = plat.build_enclave(flags=MODE64 | int(AttributesFlags.EINITTOKEN_KEY), init=False)
    assert_status(plat.einit(enc.secs), SgxError.SGX_SUCCESS)  # FLC: signer == LE hash


# -- SGX_INVALID_EINITTOKEN (FLC path) ------------------------------------------------------------

def test_einit_no_token_and_default_le_hash(plat: Any, uninit: Any, assert_status: Any) -> None:
    """Without a token, MRSIGNER must equal IA32_SGXLEPUBKEYHASH, which still holds the reset
    value (Intel's LE key hash)."""
    assert plat.lehash() == b"".join(v.to_bytes(8, "little") for v in INTEL_LE_PUBKEY_HASH)
    result = plat.einit(uninit.secs, lehash=None)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_EINITTOKEN, assert_status)


def test_einit_no_token_other_le_hash(plat: Any, uninit: Any, assert_status: Any) -> None:
    result = plat.einit(uninit.secs, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_EINITTOKEN, assert_status)


def test_einit_no_token_flc_success(plat: Any, uninit: Any, assert_status: Any) -> None:
    assert_status(plat.einit(uninit.secs), SgxError.SGX_SUCCESS, zf=False)


# -- EINITTOKEN path ------------------------------------------------------------------------------

def test_einit_token_success(plat: Any, uninit: Any, assert_status: Any) -> None:
    token = plat.make_token(uninit.secs, lehash=LE_HASH)
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    assert_status(result, SgxError.SGX_SUCCESS, zf=False, cf=False)
    assert plat.cpu.enclaves[uninit.secs].initialized


def test_einit_token_bad_mac(plat: Any, uninit: Any, assert_status: Any) -> None:
    token = plat.make_token(uninit.secs, lehash=LE_HASH)
    token = token.replace(mac=bytes(b ^ 1 for b in token.mac))
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_EINITTOKEN, assert_status)


def test_einit_token_maced_for_another_le(plat: Any, uninit: Any, assert_status: Any) -> None:
    """The EINITTOKEN key binds IA32_SGXLEPUBKEYHASH: a token MACed for another LE fails."""
    token = plat.make_token(uninit.secs, lehash=hashlib.sha256(b"other LE").digest())
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_EINITTOKEN, assert_status)


@pytest.mark.parametrize("offset,value", [
    pytest.param(0, 0x03, id="valid-bit1"),
    pytest.param(3, 0x80, id="valid-bit31"),
    pytest.param(4, 0x01, id="reserved-4"),
    pytest.param(100, 0x01, id="reserved-96"),
    pytest.param(170, 0x01, id="reserved-160"),
    pytest.param(220, 0x01, id="reserved-212"),
])
def test_einit_token_reserved_bits(plat: Any, uninit: Any, assert_status: Any, offset: int,
                                   value: int) -> None:
    """Reserved token bits are rejected even when the MAC (over bytes 0..191) covers them."""
    raw = bytearray(plat.make_token(uninit.secs, lehash=LE_HASH).to_bytes())
    raw[offset] |= value
    raw[288:304] = plat.token_mac(bytes(raw), LE_HASH)
    result = plat.einit(uninit.secs, token=bytes(raw), lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_EINITTOKEN, assert_status)


def test_einit_token_debug_le_cannot_launch_production(plat: Any, uninit: Any,
                                                       assert_status: Any) -> None:
    token = plat.make_token(uninit.secs, lehash=LE_HASH,
                            maskedattributesle=ATTRIBUTES(MODE64 | DEBUG, 3))
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_EINITTOKEN, assert_status)


def test_einit_token_debug_le_may_launch_debug(plat: Any, assert_status: Any) -> None:
    enc = plat.build_enclave(flags=MODE64 | DEBUG, init=False)
    token = plat.make_token(enc.secs, lehash=LE_HASH,
                            maskedattributesle=ATTRIBUTES(MODE64 | DEBUG, 3))
    assert_status(plat.einit(enc.secs, token=token, lehash=LE_HASH), SgxError.SGX_SUCCESS)


def test_einit_token_cpusvn_beyond_platform(plat: Any, uninit: Any, assert_status: Any) -> None:
    cpusvn = bytearray(plat.cpu.platform.cpusvn)
    i = next(k for k, b in enumerate(cpusvn) if b < 0xFF)
    cpusvn[i] = 0xFF  # one component above the platform's, the others equal
    token = plat.make_token(uninit.secs, lehash=LE_HASH, cpusvnle=bytes(cpusvn))
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_CPUSVN, assert_status)


def test_einit_token_older_cpusvn_ok(plat: Any, uninit: Any, assert_status: Any) -> None:
    token = plat.make_token(uninit.secs, lehash=LE_HASH, cpusvnle=bytes(16))
    assert_status(plat.einit(uninit.secs, token=token, lehash=LE_HASH), SgxError.SGX_SUCCESS)


@pytest.mark.parametrize("field", ["mrenclave", "mrsigner"])
def test_einit_token_identity_mismatch(plat: Any, uninit: Any, assert_status: Any,
                                       field: str) -> None:
    token = plat.make_token(uninit.secs, lehash=LE_HASH,
                            **{field: hashlib.sha256(field.encode()).digest()})
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_MEASUREMENT, assert_status)


def test_einit_token_attributes_mismatch(plat: Any, uninit: Any, assert_status: Any) -> None:
    """Token ATTRIBUTES != SECS.ATTRIBUTES ("SGX_INVALID_EINIT_ATTRIBUTE", reported as
    SGX_INVALID_ATTRIBUTE; the reference marks the exact code unverified)."""
    token = plat.make_token(uninit.secs, lehash=LE_HASH, attributes=ATTRIBUTES(MODE64 | DEBUG, 3))
    result = plat.einit(uninit.secs, token=token, lehash=LE_HASH)
    _fails(plat, uninit, result, SgxError.SGX_INVALID_ATTRIBUTE, assert_status)


def test_einit_invalid_token_ignored_when_valid_bit_clear(plat: Any, uninit: Any,
                                                          assert_status: Any) -> None:
    """VALID=0 selects the FLC path; the token's other fields are not examined."""
    token = EINITTOKEN(valid=0, mrenclave=b"\x01" * 32, mac=b"\x02" * 16)
    assert_status(plat.einit(uninit.secs, token=token), SgxError.SGX_SUCCESS)


def test_launch_enclave_flow(plat: Any, assert_status: Any) -> None:
    """End to end: a launch enclave (EINITTOKEN_KEY, signer = LE hash) gets the EINITTOKEN key
    with EGETKEY, MACs a token for another enclave, and EINIT accepts that token."""
    from vsgx.arch import KEYREQUEST, KeyName
    from vsgx.cpu.enclu import getkey
    from vsgx.crypto import einittoken_mac

    le = plat.build_enclave(flags=MODE64 | int(AttributesFlags.EINITTOKEN_KEY), isvprodid=0x20,
                            isvsvn=5)
    le_hash = plat.lehash()
    le_secs = plat.cpu.enclaves[le.secs].secs
    target = plat.build_enclave(init=False)
    request = KEYREQUEST(keyname=KeyName.EINITTOKEN_KEY, isvsvn=5, cpusvn=bytes(16),
                         keyid=hashlib.sha256(b"le keyid").digest())
    status, key = getkey(plat.cpu, le.ctx, request)
    assert_status(status, SgxError.SGX_SUCCESS)
    assert key is not None
    token = plat.make_token(
        target.secs, lehash=le_hash, cpusvnle=request.cpusvn, isvprodidle=le_secs.isvprodid,
        isvsvnle=request.isvsvn, keyid=request.keyid, maskedmiscselectle=0,
        maskedattributesle=ATTRIBUTES(le_secs.attributes.flags & 3, 0), mac=bytes(16))
    token = token.replace(mac=einittoken_mac(key, token.to_bytes()))
    result = plat.einit(target.secs, token=token, lehash=None)
    assert_status(result, SgxError.SGX_SUCCESS)
