"""EGETKEY and EREPORT (SDM Vol. 3D EGETKEY/EREPORT; reference §4): every status code and fault,
register-level operand checks, REPORT MAC verification, and the key-hierarchy properties the
acceptance criteria name (per-enclave, per-signer, per-platform, per-boot)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from vsgx.arch import (
    ATTRIBUTES,
    KEYREQUEST,
    PAGE_SIZE,
    REPORT,
    TARGETINFO,
    AttributesFlags,
    EncluLeaf,
    KeyName,
    KeyPolicy,
    SgxError,
    Vector,
)
from vsgx.cpu import SgxFeatures
from vsgx.cpu.enclu import getkey, report
from vsgx.crypto import report_mac

MODE64 = int(AttributesFlags.MODE64BIT)
DEBUG = int(AttributesFlags.DEBUG)
PROV = int(AttributesFlags.PROVISIONKEY)
KSS = int(AttributesFlags.KSS)
MRENCLAVE, MRSIGNER = int(KeyPolicy.MRENCLAVE), int(KeyPolicy.MRSIGNER)
KEYID = hashlib.sha256(b"request keyid").digest()


def _key(plat: Any, enc: Any, **fields: Any) -> bytes:
    status, key = getkey(plat.cpu, enc.ctx, KEYREQUEST(**fields))
    assert status.ok and not status.zf, status
    assert key is not None and len(key) == 16
    return key


def _beyond(cpusvn: bytes) -> bytes:
    out = bytearray(cpusvn)
    i = next(k for k, b in enumerate(out) if b < 0xFF)
    out[i] = 0xFF
    return bytes(out)


# -- EGETKEY status codes -------------------------------------------------------------------------

@pytest.mark.parametrize("keyname", [5, 6, 0x100, 0xFFFF])
def test_egetkey_invalid_keyname(plat: Any, enclave: Any, assert_status: Any,
                                 keyname: int) -> None:
    status, key = getkey(plat.cpu, enclave.ctx, KEYREQUEST(keyname=keyname))
    assert_status(status, SgxError.SGX_INVALID_KEYNAME, zf=True, cf=False)
    assert key is None


@pytest.mark.parametrize("keyname", [KeyName.PROVISION_KEY, KeyName.PROVISION_SEAL_KEY])
def test_egetkey_provision_without_provisionkey(plat: Any, enclave: Any, assert_status: Any,
                                                keyname: KeyName) -> None:
    status, key = getkey(plat.cpu, enclave.ctx, KEYREQUEST(keyname=keyname))
    assert_status(status, SgxError.SGX_INVALID_ATTRIBUTE, zf=True)
    assert key is None


def test_egetkey_einittoken_without_einittoken_key(plat: Any, enclave: Any,
                                                   assert_status: Any) -> None:
    status, key = getkey(plat.cpu, enclave.ctx, KEYREQUEST(keyname=KeyName.EINITTOKEN_KEY))
    assert_status(status, SgxError.SGX_INVALID_ATTRIBUTE, zf=True)
    assert key is None


@pytest.mark.parametrize("keyname", [KeyName.SEAL_KEY, KeyName.PROVISION_KEY,
                                     KeyName.PROVISION_SEAL_KEY, KeyName.EINITTOKEN_KEY])
def test_egetkey_isvsvn_above_enclave(plat: Any, assert_status: Any, keyname: KeyName) -> None:
    enc = plat.build_enclave(flags=MODE64 | PROV | int(AttributesFlags.EINITTOKEN_KEY),
                             isvsvn=3)
    _key(plat, enc, keyname=keyname, isvsvn=3)
    _key(plat, enc, keyname=keyname, isvsvn=2)
    status, key = getkey(plat.cpu, enc.ctx, KEYREQUEST(keyname=keyname, isvsvn=4))
    assert_status(status, SgxError.SGX_INVALID_ISVSVN, zf=True, cf=False)
    assert key is None


@pytest.mark.parametrize("keyname", [KeyName.SEAL_KEY, KeyName.PROVISION_KEY,
                                     KeyName.PROVISION_SEAL_KEY, KeyName.EINITTOKEN_KEY])
def test_egetkey_cpusvn_beyond_platform(plat: Any, assert_status: Any, keyname: KeyName) -> None:
    enc = plat.build_enclave(flags=MODE64 | PROV | int(AttributesFlags.EINITTOKEN_KEY))
    cpusvn = plat.cpu.platform.cpusvn
    _key(plat, enc, keyname=keyname, cpusvn=cpusvn)
    status, key = getkey(plat.cpu, enc.ctx, KEYREQUEST(keyname=keyname, cpusvn=_beyond(cpusvn)))
    assert_status(status, SgxError.SGX_INVALID_CPUSVN, zf=True, cf=False)
    assert key is None


def test_egetkey_report_key_ignores_svns(plat: Any, enclave: Any) -> None:
    """The REPORT key uses CR_CPUSVN and no ISVSVN: the request's SVNs are not checked."""
    a = _key(plat, enclave, keyname=KeyName.REPORT_KEY, keyid=KEYID)
    b = _key(plat, enclave, keyname=KeyName.REPORT_KEY, keyid=KEYID, isvsvn=0xFFFF,
             cpusvn=b"\xff" * 16)
    assert a == b


@pytest.mark.parametrize("policy", [0x40, 0x80, 0x100, 0x8000])
def test_egetkey_reserved_keypolicy_gp(plat: Any, enclave: Any, assert_fault: Any,
                                       policy: int) -> None:
    with assert_fault(Vector.GP):
        getkey(plat.cpu, enclave.ctx, KEYREQUEST(keyname=KeyName.SEAL_KEY, keypolicy=policy))


@pytest.mark.parametrize("policy", [KeyPolicy.NOISVPRODID, KeyPolicy.CONFIGID,
                                    KeyPolicy.ISVFAMILYID, KeyPolicy.ISVEXTPRODID])
def test_egetkey_kss_policy_without_kss_gp(plat: Any, enclave: Any, assert_fault: Any,
                                           policy: KeyPolicy) -> None:
    with assert_fault(Vector.GP):
        getkey(plat.cpu, enclave.ctx,
               KEYREQUEST(keyname=KeyName.SEAL_KEY, keypolicy=MRSIGNER | int(policy)))


def test_egetkey_configsvn_without_kss_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    with assert_fault(Vector.GP):
        getkey(plat.cpu, enclave.ctx, KEYREQUEST(keyname=KeyName.SEAL_KEY, configsvn=1))


@pytest.fixture
def kss_enclave(make_platform: Any) -> tuple[Any, Any]:
    plat = make_platform(features=SgxFeatures(kss=True))
    enc = plat.build_enclave(flags=MODE64 | KSS | PROV,
                             secs_fields={"configid": b"\x07" * 64, "configsvn": 5},
                             isvfamilyid=b"\x0f" * 16, isvextprodid=b"\x0e" * 16)
    return plat, enc


def test_egetkey_kss_policies_allowed_with_kss(kss_enclave: tuple[Any, Any]) -> None:
    plat, enc = kss_enclave
    keys = {policy: _key(plat, enc, keyname=KeyName.SEAL_KEY, keypolicy=MRSIGNER | policy)
            for policy in (0, 0x04, 0x08, 0x10, 0x20)}
    assert len(set(keys.values())) == len(keys)  # every policy bit changes the key


@pytest.mark.parametrize("keyname", [KeyName.SEAL_KEY, KeyName.PROVISION_SEAL_KEY])
def test_egetkey_configsvn_above_enclave_invalid_isvsvn(kss_enclave: tuple[Any, Any],
                                                        assert_status: Any,
                                                        keyname: KeyName) -> None:
    plat, enc = kss_enclave
    _key(plat, enc, keyname=keyname, configsvn=5)
    status, key = getkey(plat.cpu, enc.ctx, KEYREQUEST(keyname=keyname, configsvn=6))
    assert_status(status, SgxError.SGX_INVALID_ISVSVN, zf=True)
    assert key is None


# -- EGETKEY register level -----------------------------------------------------------------------

def _egetkey(plat: Any, enc: Any, request: KEYREQUEST | bytes, kr_la: int | None = None,
             out_la: int | None = None) -> Any:
    kr_la = enc.rw_la(0) if kr_la is None else kr_la
    out_la = enc.rw_la(1) + 0x30 if out_la is None else out_la
    raw = request.to_bytes() if isinstance(request, KEYREQUEST) else request
    if enc.base <= kr_la < enc.base + enc.size and (kr_la & ~0xFFF) in enc.pages:
        plat.enclave_write(enc, kr_la, raw)
    return plat.cpu.enclu(EncluLeaf.EGETKEY, enc.ctx, kr_la, out_la)


def test_enclu_egetkey_writes_key(plat: Any, enclave: Any, assert_status: Any) -> None:
    request = KEYREQUEST(keyname=KeyName.SEAL_KEY, keypolicy=MRENCLAVE, keyid=KEYID)
    out_la = enclave.rw_la(1) + 0x30
    plat.enclave_write(enclave, out_la - 16, b"\xee" * 48)
    result = _egetkey(plat, enclave, request, out_la=out_la)
    assert_status(result, SgxError.SGX_SUCCESS, zf=False)
    assert plat.enclave_read(enclave, out_la, 16) == _key(plat, enclave, keyname=4,
                                                          keypolicy=MRENCLAVE, keyid=KEYID)
    # Only the 16 key bytes are written.
    assert plat.enclave_read(enclave, out_la - 16, 16) == b"\xee" * 16
    assert plat.enclave_read(enclave, out_la + 16, 16) == b"\xee" * 16


@pytest.mark.parametrize("request_fields,code", [
    ({"keyname": 9}, SgxError.SGX_INVALID_KEYNAME),
    ({"keyname": KeyName.PROVISION_KEY}, SgxError.SGX_INVALID_ATTRIBUTE),
    ({"keyname": KeyName.SEAL_KEY, "isvsvn": 2}, SgxError.SGX_INVALID_ISVSVN),
    ({"keyname": KeyName.SEAL_KEY, "cpusvn": b"\xff" * 16}, SgxError.SGX_INVALID_CPUSVN),
])
def test_enclu_egetkey_error_leaves_output_unchanged(plat: Any, enclave: Any,
                                                     assert_status: Any,
                                                     request_fields: dict[str, Any],
                                                     code: SgxError) -> None:
    if "cpusvn" in request_fields:
        request_fields["cpusvn"] = _beyond(plat.cpu.platform.cpusvn)
    out_la = enclave.rw_la(1) + 0x30
    plat.enclave_write(enclave, out_la, b"\xa5" * 16)
    result = _egetkey(plat, enclave, KEYREQUEST(**request_fields), out_la=out_la)
    assert_status(result, code, zf=True, cf=False)
    assert plat.enclave_read(enclave, out_la, 16) == b"\xa5" * 16


@pytest.mark.parametrize("kr_off,out_off", [
    pytest.param(0x100, 0x1030, id="keyrequest-not-512-aligned"),
    pytest.param(0x0, 0x1038, id="output-not-16-aligned"),
])
def test_enclu_egetkey_misaligned_gp(plat: Any, enclave: Any, assert_fault: Any, kr_off: int,
                                     out_off: int) -> None:
    with assert_fault(Vector.GP):
        _egetkey(plat, enclave, KEYREQUEST(keyname=4), enclave.rw_la(0) + kr_off,
                 enclave.rw_la(0) + out_off)


@pytest.mark.parametrize("which", ["keyrequest", "output"])
@pytest.mark.parametrize("where", ["below", "above"])
def test_enclu_egetkey_outside_elrange_gp(plat: Any, enclave: Any, assert_fault: Any,
                                          which: str, where: str) -> None:
    outside = enclave.base - PAGE_SIZE if where == "below" else enclave.base + enclave.size
    plat.enclave_write(enclave, enclave.rw_la(0), KEYREQUEST(keyname=4).to_bytes())
    kr = outside if which == "keyrequest" else enclave.rw_la(0)
    out = outside if which == "output" else enclave.rw_la(1)
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EGETKEY, enclave.ctx, kr, out)


def test_enclu_egetkey_keyrequest_reserved_gp(plat: Any, enclave: Any,
                                              assert_fault: Any) -> None:
    raw = bytearray(KEYREQUEST(keyname=4).to_bytes())
    raw[100] = 1
    with assert_fault(Vector.GP):
        _egetkey(plat, enclave, bytes(raw))


@pytest.mark.parametrize("where", ["read-only", "tcs", "pending", "unmapped"])
def test_enclu_egetkey_output_page_pf(plat: Any, enclave: Any, assert_fault: Any,
                                      where: str) -> None:
    if where == "read-only":
        out = enclave.ro_la
    elif where == "tcs":
        out = enclave.tcs_la
    elif where == "pending":
        out = enclave.free_la(0)
        plat.eaug(enclave, out)
    else:
        out = enclave.free_la(3)
    with assert_fault(Vector.PF, pfec_sgx=where != "unmapped", address=out):
        _egetkey(plat, enclave, KEYREQUEST(keyname=4), out_la=out)


@pytest.mark.parametrize("where", ["pending", "tcs", "unmapped"])
def test_enclu_egetkey_keyrequest_page_pf(plat: Any, enclave: Any, assert_fault: Any,
                                          where: str) -> None:
    if where == "pending":
        kr = enclave.free_la(0)
        plat.eaug(enclave, kr)
    elif where == "tcs":
        kr = enclave.tcs_la
    else:
        kr = enclave.free_la(3)
    with assert_fault(Vector.PF, address=kr):
        plat.cpu.enclu(EncluLeaf.EGETKEY, enclave.ctx, kr, enclave.rw_la(1))


# -- EREPORT --------------------------------------------------------------------------------------

def _targetinfo(plat: Any, enc: Any) -> TARGETINFO:
    secs = plat.cpu.enclaves[enc.secs].secs
    return TARGETINFO(measurement=secs.mrenclave, attributes=secs.attributes,
                      miscselect=secs.miscselect)


def _ereport(plat: Any, enc: Any, target: TARGETINFO, data: bytes) -> REPORT:
    ti_la, rd_la, out_la = enc.rw_la(0), enc.rw_la(0) + 0x200, enc.rw_la(1)
    plat.enclave_write(enc, ti_la, target.to_bytes())
    plat.enclave_write(enc, rd_la, data)
    result = plat.cpu.enclu(EncluLeaf.EREPORT, enc.ctx, ti_la, rd_la, out_la)
    assert result.status.ok and not result.status.zf
    return REPORT.from_bytes(plat.enclave_read(enc, out_la, REPORT.SIZE))


def _verify(plat: Any, verifier: Any, rep: REPORT | bytes) -> bool:
    raw = rep.to_bytes() if isinstance(rep, REPORT) else rep
    keyid = raw[384:416]
    key = _key(plat, verifier, keyname=KeyName.REPORT_KEY, keyid=keyid)
    return report_mac(key, raw[:384]) == raw[416:432]


@pytest.fixture
def pair(plat: Any) -> tuple[Any, Any]:
    """Two initialised enclaves on one platform: a reporter and a target (verifier)."""
    return plat.build_enclave(), plat.build_enclave()


def test_ereport_mac_verifies_with_targets_report_key(plat: Any, pair: tuple[Any, Any]) -> None:
    reporter, target = pair
    data = hashlib.sha512(b"report data").digest()
    rep = _ereport(plat, reporter, _targetinfo(plat, target), data)
    secs = plat.cpu.enclaves[reporter.secs].secs
    body = rep.body
    assert body.mrenclave == secs.mrenclave and body.mrsigner == secs.mrsigner
    assert body.attributes == secs.attributes and body.attributes.flags & AttributesFlags.INIT
    assert (body.isvprodid, body.isvsvn) == (secs.isvprodid, secs.isvsvn)
    assert body.cpusvn == plat.cpu.platform.cpusvn
    assert body.reportdata == data
    assert rep.keyid == plat.cpu.boot.report_keyid
    assert _verify(plat, target, rep)
    assert rep == report(plat.cpu, reporter.ctx, _targetinfo(plat, target), data)


def test_ereport_not_verifiable_by_other_enclave(plat: Any, pair: tuple[Any, Any]) -> None:
    reporter, target = pair
    rep = _ereport(plat, reporter, _targetinfo(plat, target), bytes(64))
    third = plat.build_enclave()
    assert not _verify(plat, third, rep)
    self_rep = _ereport(plat, reporter, _targetinfo(plat, reporter), bytes(64))
    assert _verify(plat, reporter, self_rep) and not _verify(plat, target, self_rep)


@pytest.mark.parametrize("offset", [0, 15, 16, 48, 56, 64, 95, 128, 256, 258, 320, 383])
def test_ereport_any_body_byte_flip_breaks_mac(plat: Any, pair: tuple[Any, Any],
                                               offset: int) -> None:
    reporter, target = pair
    raw = bytearray(_ereport(plat, reporter, _targetinfo(plat, target), bytes(64)).to_bytes())
    raw[offset] ^= 0x01
    assert not _verify(plat, target, bytes(raw))


def test_ereport_mac_tied_to_boot_keyid(plat: Any, pair: tuple[Any, Any]) -> None:
    """Verification uses the REPORT's KEYID: a different KEYID gives a different key."""
    reporter, target = pair
    raw = bytearray(_ereport(plat, reporter, _targetinfo(plat, target), bytes(64)).to_bytes())
    raw[384] ^= 1
    assert not _verify(plat, target, bytes(raw))


@pytest.mark.parametrize("which,delta", [("targetinfo", 0x100), ("reportdata", 0x40),
                                         ("output", 0x10)])
def test_ereport_misaligned_gp(plat: Any, enclave: Any, assert_fault: Any, which: str,
                               delta: int) -> None:
    regs = {"targetinfo": enclave.rw_la(0), "reportdata": enclave.rw_la(0) + 0x200,
            "output": enclave.rw_la(1)}
    regs[which] += delta
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EREPORT, enclave.ctx, regs["targetinfo"], regs["reportdata"],
                       regs["output"])


@pytest.mark.parametrize("which", ["targetinfo", "reportdata", "output"])
def test_ereport_outside_elrange_gp(plat: Any, enclave: Any, assert_fault: Any,
                                    which: str) -> None:
    regs = {"targetinfo": enclave.rw_la(0), "reportdata": enclave.rw_la(0) + 0x200,
            "output": enclave.rw_la(1)}
    regs[which] = enclave.base + enclave.size
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EREPORT, enclave.ctx, regs["targetinfo"], regs["reportdata"],
                       regs["output"])


def test_ereport_output_read_only_pf(plat: Any, enclave: Any, assert_fault: Any) -> None:
    plat.enclave_write(enclave, enclave.rw_la(0), _targetinfo(plat, enclave).to_bytes())
    with assert_fault(Vector.PF, pfec_sgx=True, address=enclave.ro_la):
        plat.cpu.enclu(EncluLeaf.EREPORT, enclave.ctx, enclave.rw_la(0), enclave.rw_la(0) + 0x200,
                       enclave.ro_la)


def test_ereport_targetinfo_reserved_gp(plat: Any, enclave: Any, assert_fault: Any) -> None:
    raw = bytearray(_targetinfo(plat, enclave).to_bytes())
    raw[200] = 1
    plat.enclave_write(enclave, enclave.rw_la(0), bytes(raw))
    with assert_fault(Vector.GP):
        plat.cpu.enclu(EncluLeaf.EREPORT, enclave.ctx, enclave.rw_la(0), enclave.rw_la(0) + 0x200,
                       enclave.rw_la(1))


# -- key hierarchy --------------------------------------------------------------------------------

SEAL_ENCLAVE = {"keyname": KeyName.SEAL_KEY, "keypolicy": MRENCLAVE, "keyid": KEYID}
SEAL_SIGNER = {"keyname": KeyName.SEAL_KEY, "keypolicy": MRSIGNER, "keyid": KEYID}


def test_seal_keys_per_enclave_and_per_signer(plat: Any) -> None:
    a, b = plat.build_enclave(tag=1), plat.build_enclave(tag=2)
    assert plat.cpu.enclaves[a.secs].secs.mrenclave != plat.cpu.enclaves[b.secs].secs.mrenclave
    assert plat.cpu.enclaves[a.secs].secs.mrsigner == plat.cpu.enclaves[b.secs].secs.mrsigner
    assert _key(plat, a, **SEAL_ENCLAVE) != _key(plat, b, **SEAL_ENCLAVE)
    assert _key(plat, a, **SEAL_SIGNER) == _key(plat, b, **SEAL_SIGNER)
    # Same MRENCLAVE (same contents), separate instance: same MRENCLAVE-policy key.
    a2 = plat.build_enclave(tag=1)
    assert _key(plat, a, **SEAL_ENCLAVE) == _key(plat, a2, **SEAL_ENCLAVE)


def test_seal_key_policy_none_and_both(plat: Any) -> None:
    a, b = plat.build_enclave(tag=1), plat.build_enclave(tag=2)
    both = {"keyname": KeyName.SEAL_KEY, "keypolicy": MRENCLAVE | MRSIGNER}
    assert _key(plat, a, **both) != _key(plat, b, **both)
    assert len({_key(plat, a, **SEAL_ENCLAVE), _key(plat, a, **SEAL_SIGNER),
                _key(plat, a, **both), _key(plat, a, keyname=KeyName.SEAL_KEY)}) == 4


def test_seal_key_depends_on_request_fields(plat: Any) -> None:
    enc = plat.build_enclave(isvsvn=2)
    base = _key(plat, enc, **SEAL_SIGNER)
    variants = [
        _key(plat, enc, **{**SEAL_SIGNER, "isvsvn": 1}),
        _key(plat, enc, **{**SEAL_SIGNER, "keyid": bytes(32)}),
        _key(plat, enc, **{**SEAL_SIGNER, "cpusvn": b"\x01" + bytes(15)}),
        _key(plat, enc, **{**SEAL_SIGNER, "attributemask": ATTRIBUTES(MODE64, 0)}),
    ]
    assert len({base, *variants}) == 5


def test_seal_key_binds_debug_attribute(plat: Any) -> None:
    """INIT and DEBUG always enter the key: a debug build cannot unseal production data."""
    prod = plat.build_enclave(tag=1)
    dbg = plat.build_enclave(tag=1, flags=MODE64 | DEBUG)
    assert _key(plat, prod, **SEAL_SIGNER) != _key(plat, dbg, **SEAL_SIGNER)


def test_keys_differ_between_platforms(make_platform: Any) -> None:
    p1, p2 = make_platform(seed=b"platform one"), make_platform(seed=b"platform two")
    e1, e2 = p1.build_enclave(tag=7), p2.build_enclave(tag=7)
    assert p1.cpu.enclaves[e1.secs].secs.mrenclave == p2.cpu.enclaves[e2.secs].secs.mrenclave
    for request in (SEAL_ENCLAVE, SEAL_SIGNER):
        assert _key(p1, e1, **request) != _key(p2, e2, **request)
    report_key = {"keyname": KeyName.REPORT_KEY, "keyid": KEYID}
    assert _key(p1, e1, **report_key) != _key(p2, e2, **report_key)


def test_keys_equal_for_same_seed_on_two_processors(make_platform: Any) -> None:
    p1, p2 = make_platform(seed=b"same host"), make_platform(seed=b"same host")
    e1, e2 = p1.build_enclave(tag=7), p2.build_enclave(tag=7)
    for request in (SEAL_ENCLAVE, SEAL_SIGNER,
                    {"keyname": KeyName.REPORT_KEY, "keyid": KEYID}):
        assert _key(p1, e1, **request) == _key(p2, e2, **request)


def test_seal_keys_survive_reboot(make_platform: Any) -> None:
    """Sealing keys derive from per-platform secrets only, not per-boot ones."""
    p1 = make_platform(seed=b"host", boot=0)
    p2 = make_platform(seed=b"host", boot=1)
    assert p1.cpu.boot != p2.cpu.boot
    e1, e2 = p1.build_enclave(tag=3), p2.build_enclave(tag=3)
    assert _key(p1, e1, **SEAL_ENCLAVE) == _key(p2, e2, **SEAL_ENCLAVE)


def test_provision_key_requires_provisionkey(plat: Any, assert_status: Any) -> None:
    plain = plat.build_enclave(tag=1)
    status, _ = getkey(plat.cpu, plain.ctx, KEYREQUEST(keyname=KeyName.PROVISION_KEY))
    assert_status(status, SgxError.SGX_INVALID_ATTRIBUTE, zf=True)
    a = plat.build_enclave(tag=1, flags=MODE64 | PROV)
    b = plat.build_enclave(tag=2, flags=MODE64 | PROV)
    prov_a = _key(plat, a, keyname=KeyName.PROVISION_KEY)
    # The provisioning key names the signer and product, not the enclave build.
    assert prov_a == _key(plat, b, keyname=KeyName.PROVISION_KEY)
    assert prov_a != _key(plat, a, keyname=KeyName.PROVISION_SEAL_KEY)
    assert prov_a != _key(plat, a, keyname=KeyName.SEAL_KEY, keypolicy=MRSIGNER)


def test_provision_key_is_independent_of_owner_epoch(make_platform: Any) -> None:
    """PROVISION_KEY excludes OWNEREPOCH and SEAL_FUSES (SDM EGETKEY table): two platforms
    that share only the device root key derive the same provisioning key."""
    from dataclasses import replace

    p1, p2 = make_platform(seed=b"host"), make_platform(seed=b"host")
    secrets = p2.cpu.platform
    p2.cpu.platform = replace(secrets, owner_epoch=bytes(16), seal_fuses=b"\x01" * 16)
    e1 = p1.build_enclave(tag=3, flags=MODE64 | PROV)
    e2 = p2.build_enclave(tag=3, flags=MODE64 | PROV)
    assert _key(p1, e1, keyname=KeyName.PROVISION_KEY) == _key(p2, e2,
                                                                keyname=KeyName.PROVISION_KEY)
    assert _key(p1, e1, **SEAL_SIGNER) != _key(p2, e2, **SEAL_SIGNER)


def test_key_names_give_distinct_keys(plat: Any) -> None:
    enc = plat.build_enclave(flags=MODE64 | PROV | int(AttributesFlags.EINITTOKEN_KEY))
    keys = [_key(plat, enc, keyname=name, keyid=KEYID) for name in KeyName]
    assert len(set(keys)) == len(KeyName)
