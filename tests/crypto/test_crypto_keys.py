"""EGETKEY/EREPORT/EINIT key derivation: the SDM tables, policies, determinism and MACs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest

from vsgx.arch import (
    ATTRIBUTES,
    EINITTOKEN,
    HARDCODED_PKCS1_5_PADDING,
    KEYREQUEST,
    REPORTBODY,
    TARGETINFO,
    KeyName,
    KeyPolicy,
)
from vsgx.crypto import (
    BootSecrets,
    EnclaveIdentity,
    KeyDependencies,
    PlatformSecrets,
    aes_cmac,
    derive_key,
    egetkey_dependencies,
    einittoken_dependencies,
    einittoken_mac,
    report_key_dependencies,
    report_mac,
)

PLATFORM = PlatformSecrets.from_seed(b"host-a")
BOOT = BootSecrets.from_seed(b"host-a", 1)
ALL_POLICIES = int(KeyPolicy.MRENCLAVE | KeyPolicy.MRSIGNER | KeyPolicy.NOISVPRODID
                   | KeyPolicy.CONFIGID | KeyPolicy.ISVFAMILYID | KeyPolicy.ISVEXTPRODID)


def fill(n: int, byte: int) -> bytes:
    return bytes([byte]) * n


IDENTITY = EnclaveIdentity(
    attributes=ATTRIBUTES(0x0F7, 0xE7), miscselect=0x5, mrenclave=fill(32, 0xE1),
    mrsigner=fill(32, 0x51), isvprodid=0x1111, isvsvn=9, configid=fill(64, 0xC1),
    configsvn=4, isvfamilyid=fill(16, 0xF1), isvextprodid=fill(16, 0xD1),
    padding=fill(352, 0xAD))


def request(keyname: int, keypolicy: int = ALL_POLICIES, **changes: Any) -> KEYREQUEST:
    base = KEYREQUEST(keyname=keyname, keypolicy=keypolicy, isvsvn=3, cpusvn=fill(16, 0xC5),
                      attributemask=ATTRIBUTES(0x0F0, 0xFF), keyid=fill(32, 0x1D),
                      miscmask=0x4, configsvn=2)
    return base.replace(**changes)


def deps(keyname: int, keypolicy: int = ALL_POLICIES, identity: EnclaveIdentity = IDENTITY,
         platform: PlatformSecrets = PLATFORM, **changes: Any) -> KeyDependencies:
    return egetkey_dependencies(request(keyname, keypolicy, **changes), identity, platform, BOOT)


def key(keyname: int, keypolicy: int = ALL_POLICIES, identity: EnclaveIdentity = IDENTITY,
        platform: PlatformSecrets = PLATFORM, **changes: Any) -> bytes:
    return derive_key(platform, deps(keyname, keypolicy, identity, platform, **changes))


# -- the SDM EGETKEY table, all policy bits set ---------------------------------------------

KR = request(KeyName.SEAL_KEY)
TMP_ATTR = ATTRIBUTES(0x0F3, 0xE7)  # (KR.ATTRIBUTEMASK | 0x3) & SECS.ATTRIBUTES
TMP_MISC = 0x4  # KR.MISCMASK & SECS.MISCSELECT
NOT_MISCMASK = 0xFFFFFFFB

EXPECTED: dict[KeyName, dict[str, Any]] = {
    KeyName.SEAL_KEY: dict(
        isvfamilyid=IDENTITY.isvfamilyid, isvextprodid=IDENTITY.isvextprodid, isvprodid=0,
        isvsvn=3, ownerepoch=PLATFORM.owner_epoch, attributes=TMP_ATTR,
        attributemask=KR.attributemask, mrenclave=IDENTITY.mrenclave,
        mrsigner=IDENTITY.mrsigner, keyid=KR.keyid, seal_key_fuses=PLATFORM.seal_fuses,
        cpusvn=KR.cpusvn, padding=IDENTITY.padding, miscselect=TMP_MISC, miscmask=NOT_MISCMASK,
        keypolicy=ALL_POLICIES, configid=IDENTITY.configid, configsvn=2),
    KeyName.REPORT_KEY: dict(
        ownerepoch=PLATFORM.owner_epoch, attributes=IDENTITY.attributes,
        mrenclave=IDENTITY.mrenclave, keyid=KR.keyid, seal_key_fuses=PLATFORM.seal_fuses,
        cpusvn=PLATFORM.cpusvn, padding=HARDCODED_PKCS1_5_PADDING, miscselect=0x5,
        configid=IDENTITY.configid, configsvn=4),
    KeyName.EINITTOKEN_KEY: dict(
        isvprodid=0x1111, isvsvn=3, ownerepoch=PLATFORM.owner_epoch, attributes=TMP_ATTR,
        mrsigner=IDENTITY.mrsigner, keyid=KR.keyid, seal_key_fuses=PLATFORM.seal_fuses,
        cpusvn=KR.cpusvn, padding=IDENTITY.padding, miscselect=TMP_MISC),
    KeyName.PROVISION_KEY: dict(
        isvprodid=0x1111, isvsvn=3, attributes=TMP_ATTR, attributemask=KR.attributemask,
        mrsigner=IDENTITY.mrsigner, cpusvn=KR.cpusvn, padding=IDENTITY.padding,
        miscselect=TMP_MISC, miscmask=NOT_MISCMASK),
    KeyName.PROVISION_SEAL_KEY: dict(
        isvfamilyid=IDENTITY.isvfamilyid, isvextprodid=IDENTITY.isvextprodid, isvprodid=0,
        isvsvn=3, attributes=TMP_ATTR, attributemask=KR.attributemask,
        mrsigner=IDENTITY.mrsigner, seal_key_fuses=PLATFORM.seal_fuses, cpusvn=KR.cpusvn,
        padding=IDENTITY.padding, miscselect=TMP_MISC, miscmask=NOT_MISCMASK,
        keypolicy=ALL_POLICIES, configid=IDENTITY.configid, configsvn=2),
}


@pytest.mark.parametrize("name", list(KeyName))
def test_egetkey_table(name: KeyName) -> None:
    expected = KeyDependencies(keyname=name, **EXPECTED[name])
    assert deps(name) == expected


def test_keyname_out_of_range() -> None:
    with pytest.raises(ValueError, match="KEYNAME"):
        deps(5)


def test_every_keyname_gives_a_different_key() -> None:
    keys = {key(name) for name in KeyName}
    assert len(keys) == len(KeyName)
    assert all(len(k) == 16 for k in keys)


# -- KEYPOLICY ------------------------------------------------------------------------------

POLICY_FIELDS: dict[KeyPolicy, dict[str, Any]] = {
    # bit -> the fields it switches and their value when the bit is clear
    KeyPolicy.MRENCLAVE: {"mrenclave": bytes(32)},
    KeyPolicy.MRSIGNER: {"mrsigner": bytes(32)},
    KeyPolicy.NOISVPRODID: {"isvprodid": IDENTITY.isvprodid},
    KeyPolicy.CONFIGID: {"configid": bytes(64), "configsvn": 0},
    KeyPolicy.ISVFAMILYID: {"isvfamilyid": bytes(16)},
    KeyPolicy.ISVEXTPRODID: {"isvextprodid": bytes(16)},
}
PROV_SEAL_IGNORES = {KeyPolicy.MRENCLAVE, KeyPolicy.MRSIGNER}


@pytest.mark.parametrize("bit", list(POLICY_FIELDS))
@pytest.mark.parametrize("name", [KeyName.SEAL_KEY, KeyName.PROVISION_SEAL_KEY])
def test_each_policy_bit_switches_exactly_its_fields(name: KeyName, bit: KeyPolicy) -> None:
    with_bit = deps(name, ALL_POLICIES)
    without = deps(name, ALL_POLICIES & ~bit)
    changes = {} if (name == KeyName.PROVISION_SEAL_KEY and bit in PROV_SEAL_IGNORES) \
        else POLICY_FIELDS[bit]
    assert without == dataclasses.replace(with_bit, keypolicy=ALL_POLICIES & ~bit, **changes)
    assert derive_key(PLATFORM, with_bit) != derive_key(PLATFORM, without)


@pytest.mark.parametrize("name", [KeyName.REPORT_KEY, KeyName.EINITTOKEN_KEY,
                                  KeyName.PROVISION_KEY])
def test_policy_is_ignored_by_other_keys(name: KeyName) -> None:
    assert len({key(name, policy) for policy in (0, 1, 2, 4, 8, 16, 32, ALL_POLICIES)}) == 1


OTHER_ENCLAVE = dataclasses.replace(IDENTITY, mrenclave=fill(32, 0xE2))
OTHER_SIGNER = dataclasses.replace(IDENTITY, mrsigner=fill(32, 0x52))


def test_seal_mrenclave_policy() -> None:
    pol = int(KeyPolicy.MRENCLAVE)
    assert key(KeyName.SEAL_KEY, pol) != key(KeyName.SEAL_KEY, pol, OTHER_ENCLAVE)
    assert key(KeyName.SEAL_KEY, pol) == key(KeyName.SEAL_KEY, pol, OTHER_SIGNER)


def test_seal_mrsigner_policy() -> None:
    pol = int(KeyPolicy.MRSIGNER)
    assert key(KeyName.SEAL_KEY, pol) == key(KeyName.SEAL_KEY, pol, OTHER_ENCLAVE)
    assert key(KeyName.SEAL_KEY, pol) != key(KeyName.SEAL_KEY, pol, OTHER_SIGNER)


def test_seal_both_policies() -> None:
    pol = int(KeyPolicy.MRENCLAVE | KeyPolicy.MRSIGNER)
    base = key(KeyName.SEAL_KEY, pol)
    assert base != key(KeyName.SEAL_KEY, pol, OTHER_ENCLAVE)
    assert base != key(KeyName.SEAL_KEY, pol, OTHER_SIGNER)
    assert base != key(KeyName.SEAL_KEY, int(KeyPolicy.MRENCLAVE))
    assert base != key(KeyName.SEAL_KEY, int(KeyPolicy.MRSIGNER))


def test_noisvprodid_policy() -> None:
    other_product = dataclasses.replace(IDENTITY, isvprodid=0x2222)
    pol = int(KeyPolicy.MRSIGNER)
    assert key(KeyName.SEAL_KEY, pol) != key(KeyName.SEAL_KEY, pol, other_product)
    pol |= KeyPolicy.NOISVPRODID
    assert key(KeyName.SEAL_KEY, pol) == key(KeyName.SEAL_KEY, pol, other_product)


def test_request_svn_and_cpusvn_bind_the_seal_key() -> None:
    base = key(KeyName.SEAL_KEY)
    assert base != key(KeyName.SEAL_KEY, isvsvn=2)
    assert base != key(KeyName.SEAL_KEY, cpusvn=fill(16, 0x01))
    assert base != key(KeyName.SEAL_KEY, keyid=fill(32, 0x2D))


def test_attributes_always_bind_init_and_debug() -> None:
    debug = dataclasses.replace(IDENTITY, attributes=ATTRIBUTES(0x0F7, 0xE7))
    production = dataclasses.replace(IDENTITY, attributes=ATTRIBUTES(0x0F5, 0xE7))
    zero_mask = ATTRIBUTES()
    a = deps(KeyName.SEAL_KEY, identity=debug, attributemask=zero_mask)
    b = deps(KeyName.SEAL_KEY, identity=production, attributemask=zero_mask)
    assert (a.attributes, b.attributes) == (ATTRIBUTES(0x3), ATTRIBUTES(0x1))


# -- platform secrets -----------------------------------------------------------------------


def test_provision_key_ignores_owner_epoch_and_seal_fuses() -> None:
    other = dataclasses.replace(PLATFORM, owner_epoch=fill(16, 1), seal_fuses=fill(16, 2))
    assert key(KeyName.PROVISION_KEY) == key(KeyName.PROVISION_KEY, platform=other)
    assert key(KeyName.SEAL_KEY) != key(KeyName.SEAL_KEY, platform=other)


def test_provision_seal_key_uses_seal_fuses_not_owner_epoch() -> None:
    new_owner = dataclasses.replace(PLATFORM, owner_epoch=fill(16, 1))
    new_fuses = dataclasses.replace(PLATFORM, seal_fuses=fill(16, 2))
    name = KeyName.PROVISION_SEAL_KEY
    assert key(name) == key(name, platform=new_owner)
    assert key(name) != key(name, platform=new_fuses)


def test_seeds_are_deterministic_and_distinct() -> None:
    assert PlatformSecrets.from_seed(b"host-a") == PLATFORM
    other = PlatformSecrets.from_seed(b"host-b")
    assert len({PLATFORM.device_root_key, PLATFORM.seal_fuses, PLATFORM.owner_epoch,
                PLATFORM.cpusvn, other.device_root_key}) == 5
    for name in KeyName:
        assert key(name) != key(name, platform=other)
    assert any(PLATFORM.cpusvn)
    assert PLATFORM.cpusvn[0] & 1


def test_secrets_are_identical_across_processes() -> None:
    code = ("from vsgx.crypto import PlatformSecrets, BootSecrets\n"
            "p = PlatformSecrets.from_seed(b'host-a'); b = BootSecrets.from_seed(b'host-a', 1)\n"
            "print(p.device_root_key.hex(), p.seal_fuses.hex(), p.owner_epoch.hex(),"
            " p.cpusvn.hex(), b.paging_key.hex(), b.report_keyid.hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [PLATFORM.device_root_key.hex(), PLATFORM.seal_fuses.hex(),
                   PLATFORM.owner_epoch.hex(), PLATFORM.cpusvn.hex(), BOOT.paging_key.hex(),
                   BOOT.report_keyid.hex()]


def test_boot_secrets() -> None:
    assert BootSecrets.from_seed(b"host-a", 1) == BOOT
    assert BootSecrets.from_seed(b"host-a", 2) != BOOT
    assert BootSecrets.from_seed(b"host-b", 1) != BOOT
    assert BOOT.paging_key not in (PLATFORM.device_root_key, PLATFORM.seal_fuses)
    assert BootSecrets.random() != BootSecrets.random()
    assert (len(BOOT.paging_key), len(BOOT.report_keyid)) == (16, 32)
    with pytest.raises(ValueError):
        BootSecrets.from_seed(b"x", -1)


def test_secret_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="device_root_key"):
        PlatformSecrets(bytes(15), bytes(16), bytes(16), bytes(16))
    with pytest.raises(ValueError, match="report_keyid"):
        BootSecrets(bytes(16), bytes(16))
    with pytest.raises(ValueError, match="mrenclave"):
        dataclasses.replace(IDENTITY, mrenclave=bytes(31))


# -- serialisation --------------------------------------------------------------------------


def test_keydependencies_layout() -> None:
    d = KeyDependencies(keyname=0x0403, isvprodid=0x0201, attributes=ATTRIBUTES(0xAA, 0xBB),
                        padding=HARDCODED_PKCS1_5_PADDING, miscselect=0x11223344,
                        configid=fill(64, 0xCC))
    raw = d.to_bytes()
    assert len(raw) == 642
    assert raw[0:4] == bytes([3, 4, 1, 2])
    assert raw[22:38] == ATTRIBUTES(0xAA, 0xBB).to_bytes()
    assert raw[182:534] == HARDCODED_PKCS1_5_PADDING
    assert raw[534:538] == bytes.fromhex("44332211")
    assert raw[578:642] == fill(64, 0xCC)
    assert KeyDependencies().to_bytes() == bytes(642)


@pytest.mark.parametrize("changes", [{"keyname": 1 << 16}, {"miscselect": -1},
                                     {"mrenclave": bytes(31)}, {"padding": bytes(353)}])
def test_keydependencies_rejects_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        KeyDependencies(**changes).to_bytes()


def test_derive_key_is_cmac_under_root_key() -> None:
    d = deps(KeyName.SEAL_KEY)
    assert derive_key(PLATFORM, d) == aes_cmac(PLATFORM.device_root_key, d.to_bytes())


# -- EREPORT --------------------------------------------------------------------------------

TARGET = TARGETINFO(measurement=IDENTITY.mrenclave, attributes=IDENTITY.attributes,
                    configsvn=IDENTITY.configsvn, miscselect=IDENTITY.miscselect,
                    configid=IDENTITY.configid)


def test_report_key_equals_targets_egetkey_report_key() -> None:
    ereport = report_key_dependencies(TARGET, HARDCODED_PKCS1_5_PADDING, PLATFORM,
                                      BOOT.report_keyid)
    egetkey = egetkey_dependencies(
        KEYREQUEST(keyname=KeyName.REPORT_KEY, keyid=BOOT.report_keyid), IDENTITY, PLATFORM,
        BOOT)
    assert ereport == egetkey
    assert derive_key(PLATFORM, ereport) == derive_key(PLATFORM, egetkey)


def test_report_key_equivalence_ignores_other_request_fields() -> None:
    ereport = report_key_dependencies(TARGET, HARDCODED_PKCS1_5_PADDING, PLATFORM,
                                      BOOT.report_keyid)
    assert ereport == deps(KeyName.REPORT_KEY, keyid=BOOT.report_keyid)


def test_report_key_binds_target_and_keyid() -> None:
    base = report_key_dependencies(TARGET, HARDCODED_PKCS1_5_PADDING, PLATFORM, fill(32, 1))
    for changed in (TARGET.replace(measurement=fill(32, 2)),
                    TARGET.replace(attributes=ATTRIBUTES(0x7, 0x3)),
                    TARGET.replace(miscselect=0), TARGET.replace(configsvn=1),
                    TARGET.replace(configid=bytes(64))):
        other = report_key_dependencies(changed, HARDCODED_PKCS1_5_PADDING, PLATFORM,
                                        fill(32, 1))
        assert derive_key(PLATFORM, other) != derive_key(PLATFORM, base)
    other_keyid = report_key_dependencies(TARGET, HARDCODED_PKCS1_5_PADDING, PLATFORM,
                                          fill(32, 2))
    assert derive_key(PLATFORM, other_keyid) != derive_key(PLATFORM, base)
    assert report_key_dependencies(TARGET, fill(352, 0xAD), PLATFORM, fill(32, 1)) \
        .padding == fill(352, 0xAD)


def test_report_mac_is_cmac_over_the_body() -> None:
    report_key = derive_key(PLATFORM, deps(KeyName.REPORT_KEY))
    body = REPORTBODY(cpusvn=PLATFORM.cpusvn, mrenclave=fill(32, 9),
                      reportdata=fill(64, 7)).to_bytes()
    mac = report_mac(report_key, body)
    assert mac == aes_cmac(report_key, body)
    assert mac != report_mac(report_key, body[:-1] + b"\x01")
    with pytest.raises(ValueError):
        report_mac(report_key, body + bytes(32))


# -- EINIT token ----------------------------------------------------------------------------

TOKEN = EINITTOKEN(
    valid=1, attributes=ATTRIBUTES(0x4, 0x3), mrenclave=fill(32, 0xE1),
    mrsigner=fill(32, 0x51), cpusvnle=fill(16, 0xC3), isvprodidle=0x20, isvsvnle=0x21,
    maskedmiscselectle=0x1, maskedattributesle=ATTRIBUTES(0x34, 0x3), keyid=fill(32, 0x7E))
LE_HASH = fill(32, 0x1E)


def test_einittoken_dependencies_fields() -> None:
    assert einittoken_dependencies(TOKEN, LE_HASH, PLATFORM) == KeyDependencies(
        keyname=KeyName.EINITTOKEN_KEY, isvprodid=0x20, isvsvn=0x21,
        ownerepoch=PLATFORM.owner_epoch, attributes=ATTRIBUTES(0x34, 0x3), mrsigner=LE_HASH,
        keyid=TOKEN.keyid, seal_key_fuses=PLATFORM.seal_fuses, cpusvn=TOKEN.cpusvnle,
        padding=HARDCODED_PKCS1_5_PADDING, miscselect=0x1)
    with pytest.raises(ValueError):
        einittoken_dependencies(TOKEN, bytes(16), PLATFORM)


def test_einittoken_key_matches_the_launch_enclaves_egetkey() -> None:
    """The LE derives the same key with EGETKEY(EINITTOKEN_KEY) when its own identity matches
    the token's LE fields and its request carries the token's KEYID/CPUSVN/ISVSVN."""
    launch_enclave = EnclaveIdentity(
        attributes=ATTRIBUTES(0x34, 0x3), miscselect=0x1, mrenclave=fill(32, 0x33),
        mrsigner=LE_HASH, isvprodid=0x20, isvsvn=0x21)
    le_request = KEYREQUEST(keyname=KeyName.EINITTOKEN_KEY, isvsvn=0x21, cpusvn=TOKEN.cpusvnle,
                            attributemask=ATTRIBUTES(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF),
                            keyid=TOKEN.keyid, miscmask=0xFFFFFFFF)
    assert egetkey_dependencies(le_request, launch_enclave, PLATFORM, BOOT) == \
        einittoken_dependencies(TOKEN, LE_HASH, PLATFORM)


def test_einittoken_mac_covers_only_the_first_192_bytes() -> None:
    token_key = derive_key(PLATFORM, einittoken_dependencies(TOKEN, LE_HASH, PLATFORM))
    image = TOKEN.to_bytes()
    mac = einittoken_mac(token_key, image)
    assert mac == aes_cmac(token_key, image[:192])
    assert einittoken_mac(token_key, TOKEN.replace(keyid=fill(32, 0)).to_bytes()) == mac
    assert einittoken_mac(token_key, TOKEN.replace(mrenclave=fill(32, 0)).to_bytes()) != mac
    with pytest.raises(ValueError):
        einittoken_mac(token_key, image[:192])
