"""Key derivation for EGETKEY, EREPORT and EINIT's token check (SDM Vol. 3D EGETKEY, EREPORT,
EINIT).

Every SGX key is ``AES-128-CMAC(device root key, KEYDEPENDENCIES)``. Which fields enter
KEYDEPENDENCIES depends on the key name and the request's KEYPOLICY (the SDM EGETKEY tables).
KEYDEPENDENCIES has no architectural byte layout and the hardware's root key is fused and
secret, so an emulator only has to be deterministic; vsgx packs the fields in ASYLO/OpenSGX
order (see :meth:`KeyDependencies.to_bytes`) and draws its root secrets from a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vsgx.arch.constants import HARDCODED_PKCS1_5_PADDING, KeyName, KeyPolicy
from vsgx.arch.structs import ATTRIBUTES, EINITTOKEN, EINITTOKEN_MAC_RANGE, KEYREQUEST, TARGETINFO
from vsgx.crypto.cmac import aes_cmac

_U32_MASK = 0xFFFFFFFF
_ALWAYS_BOUND = ATTRIBUTES(flags=0x3)
"""INIT and DEBUG enter every key's ATTRIBUTES whatever ATTRIBUTEMASK says (SDM EGETKEY)."""


def _check_lengths(obj: object, sizes: dict[str, int]) -> None:
    for name, size in sizes.items():
        value = getattr(obj, name)
        if len(value) != size:
            raise ValueError(f"{type(obj).__name__}.{name} must be {size} bytes, "
                             f"got {len(value)}")


def _hkdf(seed: bytes, label: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(seed)


@dataclass(frozen=True)
class PlatformSecrets:
    """Per emulated host ("fused"): root keys that never change for that host.

    :meth:`from_seed` derives each secret as HKDF-SHA256(seed, info = ``b"vsgx/platform/"`` +
    the field name). CPUSVN has bit 0 of its first byte forced to 1, so it is never all zero
    (software reads an all-zero CPUSVN as "unset"; Intel's simulator replaces it).
    """

    device_root_key: bytes
    seal_fuses: bytes
    owner_epoch: bytes
    cpusvn: bytes

    def __post_init__(self) -> None:
        _check_lengths(self, {"device_root_key": 16, "seal_fuses": 16, "owner_epoch": 16,
                              "cpusvn": 16})

    @classmethod
    def from_seed(cls, seed: bytes) -> PlatformSecrets:
        derived = {f.name: _hkdf(seed, b"vsgx/platform/" + f.name.encode(), 16)
                   for f in fields(cls)}
        cpusvn = derived["cpusvn"]
        derived["cpusvn"] = bytes([cpusvn[0] | 1]) + cpusvn[1:]
        return cls(**derived)


@dataclass(frozen=True)
class BootSecrets:
    """Per power cycle: lost on reset/migration.

    :meth:`from_seed` derives each secret as HKDF-SHA256(seed, info = ``b"vsgx/boot/"`` + the
    field name + ``b"/"`` + the boot number as a little-endian u64).
    """

    paging_key: bytes
    report_keyid: bytes

    def __post_init__(self) -> None:
        _check_lengths(self, {"paging_key": 16, "report_keyid": 32})

    @classmethod
    def from_seed(cls, seed: bytes, boot: int) -> BootSecrets:
        if not 0 <= boot < 1 << 64:
            raise ValueError(f"boot number {boot} does not fit in 64 bits")
        suffix = b"/" + boot.to_bytes(8, "little")
        return cls(paging_key=_hkdf(seed, b"vsgx/boot/paging_key" + suffix, 16),
                   report_keyid=_hkdf(seed, b"vsgx/boot/report_keyid" + suffix, 32))

    @classmethod
    def random(cls) -> BootSecrets:
        return cls(paging_key=os.urandom(16), report_keyid=os.urandom(32))


@dataclass(frozen=True)
class EnclaveIdentity:
    """The SECS fields keys and reports bind to."""

    attributes: ATTRIBUTES
    miscselect: int
    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    configid: bytes = bytes(64)
    configsvn: int = 0
    isvfamilyid: bytes = bytes(16)
    isvextprodid: bytes = bytes(16)
    padding: bytes = HARDCODED_PKCS1_5_PADDING
    """SECS.PADDING as EINIT stored it."""

    def __post_init__(self) -> None:
        _check_lengths(self, {"mrenclave": 32, "mrsigner": 32, "configid": 64,
                              "isvfamilyid": 16, "isvextprodid": 16, "padding": 352})


_KEYDEP_LAYOUT: tuple[tuple[str, int], ...] = (
    ("keyname", 2), ("isvprodid", 2), ("isvsvn", 2), ("ownerepoch", 16), ("attributes", 16),
    ("attributemask", 16), ("mrenclave", 32), ("mrsigner", 32), ("keyid", 32),
    ("seal_key_fuses", 16), ("cpusvn", 16), ("padding", 352), ("miscselect", 4),
    ("miscmask", 4), ("keypolicy", 2), ("configsvn", 2), ("isvextprodid", 16),
    ("isvfamilyid", 16), ("configid", 64),
)


@dataclass(frozen=True)
class KeyDependencies:
    """TMP_KEYDEPENDENCIES of the SDM EGETKEY pseudo-code; every field defaults to zero."""

    keyname: int = 0
    isvprodid: int = 0
    isvsvn: int = 0
    ownerepoch: bytes = bytes(16)
    attributes: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    attributemask: ATTRIBUTES = field(default_factory=ATTRIBUTES)
    mrenclave: bytes = bytes(32)
    mrsigner: bytes = bytes(32)
    keyid: bytes = bytes(32)
    seal_key_fuses: bytes = bytes(16)
    cpusvn: bytes = bytes(16)
    padding: bytes = bytes(352)
    miscselect: int = 0
    miscmask: int = 0
    keypolicy: int = 0
    configsvn: int = 0
    isvextprodid: bytes = bytes(16)
    isvfamilyid: bytes = bytes(16)
    configid: bytes = bytes(64)

    def to_bytes(self) -> bytes:
        """The 642-byte packed serialisation, integers little-endian, no padding between
        fields (offset: field, size):

        0 KEYNAME 2 · 2 ISVPRODID 2 · 4 ISVSVN 2 · 6 OWNEREPOCH 16 · 22 ATTRIBUTES 16 ·
        38 ATTRIBUTESMASK 16 · 54 MRENCLAVE 32 · 86 MRSIGNER 32 · 118 KEYID 32 ·
        150 SEAL_KEY_FUSES 16 · 166 CPUSVN 16 · 182 PADDING 352 · 534 MISCSELECT 4 ·
        538 MISCMASK 4 · 542 KEYPOLICY 2 · 544 CONFIGSVN 2 · 546 ISVEXTPRODID 16 ·
        562 ISVFAMILYID 16 · 578 CONFIGID 64.
        """
        parts: list[bytes] = []
        for name, size in _KEYDEP_LAYOUT:
            value = getattr(self, name)
            if isinstance(value, ATTRIBUTES):
                raw = value.to_bytes()
            elif isinstance(value, int):
                if not 0 <= value < 1 << (8 * size):
                    raise ValueError(f"KeyDependencies.{name}={value} does not fit {size} bytes")
                raw = value.to_bytes(size, "little")
            else:
                raw = bytes(value)
                if len(raw) != size:
                    raise ValueError(f"KeyDependencies.{name} must be {size} bytes, "
                                     f"got {len(raw)}")
            parts.append(raw)
        return b"".join(parts)


def derive_key(platform: PlatformSecrets, deps: KeyDependencies) -> bytes:
    """The 128-bit key: AES-128-CMAC(device root key, KEYDEPENDENCIES)."""
    return aes_cmac(platform.device_root_key, deps.to_bytes())


def _policy(request: KEYREQUEST, bit: KeyPolicy, value: bytes) -> bytes:
    return value if request.keypolicy & bit else bytes(len(value))


def egetkey_dependencies(request: KEYREQUEST, identity: EnclaveIdentity,
                         platform: PlatformSecrets, boot: BootSecrets) -> KeyDependencies:
    """KEYDEPENDENCIES for an EGETKEY request from the enclave ``identity`` (SDM EGETKEY,
    the per-KEYNAME tables). The caller has already applied EGETKEY's checks (KEYNAME range,
    KEYPOLICY/KSS, ATTRIBUTES, CPUSVN, ISVSVN). No EGETKEY derivation reads the per-boot
    secrets: even the REPORT key takes its KEYID from the request, so ``boot`` only keeps the
    call shape the processor model uses."""
    name = request.keyname
    tmp_attributes = (request.attributemask | _ALWAYS_BOUND) & identity.attributes
    tmp_misc = request.miscmask & identity.miscselect
    not_miscmask = ~request.miscmask & _U32_MASK
    isvprodid = 0 if request.keypolicy & KeyPolicy.NOISVPRODID else identity.isvprodid
    configsvn = request.configsvn if request.keypolicy & KeyPolicy.CONFIGID else 0

    if name == KeyName.SEAL_KEY:
        return KeyDependencies(
            keyname=name, isvprodid=isvprodid, isvsvn=request.isvsvn,
            ownerepoch=platform.owner_epoch, attributes=tmp_attributes,
            attributemask=request.attributemask,
            mrenclave=_policy(request, KeyPolicy.MRENCLAVE, identity.mrenclave),
            mrsigner=_policy(request, KeyPolicy.MRSIGNER, identity.mrsigner),
            keyid=request.keyid, seal_key_fuses=platform.seal_fuses, cpusvn=request.cpusvn,
            padding=identity.padding, miscselect=tmp_misc, miscmask=not_miscmask,
            keypolicy=request.keypolicy, configsvn=configsvn,
            isvextprodid=_policy(request, KeyPolicy.ISVEXTPRODID, identity.isvextprodid),
            isvfamilyid=_policy(request, KeyPolicy.ISVFAMILYID, identity.isvfamilyid),
            configid=_policy(request, KeyPolicy.CONFIGID, identity.configid))
    if name == KeyName.REPORT_KEY:
        return KeyDependencies(
            keyname=name, ownerepoch=platform.owner_epoch, attributes=identity.attributes,
            mrenclave=identity.mrenclave, keyid=request.keyid,
            seal_key_fuses=platform.seal_fuses, cpusvn=platform.cpusvn,
            padding=HARDCODED_PKCS1_5_PADDING, miscselect=identity.miscselect,
            configsvn=identity.configsvn, configid=identity.configid)
    if name == KeyName.EINITTOKEN_KEY:
        return KeyDependencies(
            keyname=name, isvprodid=identity.isvprodid, isvsvn=request.isvsvn,
            ownerepoch=platform.owner_epoch, attributes=tmp_attributes,
            mrsigner=identity.mrsigner, keyid=request.keyid,
            seal_key_fuses=platform.seal_fuses, cpusvn=request.cpusvn,
            padding=identity.padding, miscselect=tmp_misc)
    if name == KeyName.PROVISION_KEY:
        return KeyDependencies(
            keyname=name, isvprodid=identity.isvprodid, isvsvn=request.isvsvn,
            attributes=tmp_attributes, attributemask=request.attributemask,
            mrsigner=identity.mrsigner, cpusvn=request.cpusvn, padding=identity.padding,
            miscselect=tmp_misc, miscmask=not_miscmask)
    if name == KeyName.PROVISION_SEAL_KEY:
        return KeyDependencies(
            keyname=name, isvprodid=isvprodid, isvsvn=request.isvsvn,
            attributes=tmp_attributes, attributemask=request.attributemask,
            mrsigner=identity.mrsigner, seal_key_fuses=platform.seal_fuses,
            cpusvn=request.cpusvn, padding=identity.padding, miscselect=tmp_misc,
            miscmask=not_miscmask, keypolicy=request.keypolicy, configsvn=configsvn,
            isvextprodid=_policy(request, KeyPolicy.ISVEXTPRODID, identity.isvextprodid),
            isvfamilyid=_policy(request, KeyPolicy.ISVFAMILYID, identity.isvfamilyid),
            configid=_policy(request, KeyPolicy.CONFIGID, identity.configid))
    raise ValueError(f"KEYNAME {name} is not defined (SGX_INVALID_KEYNAME)")


def report_key_dependencies(target: TARGETINFO, report_padding: bytes,
                            platform: PlatformSecrets, keyid: bytes) -> KeyDependencies:
    """KEYDEPENDENCIES of the report key EREPORT MACs with: the target's MEASUREMENT,
    ATTRIBUTES, MISCSELECT, CONFIGID and CONFIGSVN, the platform's OWNEREPOCH, SEAL_FUSES and
    CPUSVN, ``keyid`` (CR_REPORT_KEYID) and the reporting enclave's SECS.PADDING (SDM EREPORT).
    The target re-derives the same key with EGETKEY(REPORT_KEY, KEYID=keyid)."""
    return KeyDependencies(
        keyname=KeyName.REPORT_KEY, ownerepoch=platform.owner_epoch,
        attributes=target.attributes, mrenclave=target.measurement, keyid=keyid,
        seal_key_fuses=platform.seal_fuses, cpusvn=platform.cpusvn, padding=report_padding,
        miscselect=target.miscselect, configsvn=target.configsvn, configid=target.configid)


def report_mac(report_key: bytes, body: bytes) -> bytes:
    """REPORT.MAC: AES-128-CMAC over the 384-byte REPORTBODY (SDM EREPORT)."""
    if len(body) != 384:
        raise ValueError(f"REPORTBODY is 384 bytes, got {len(body)}")
    return aes_cmac(report_key, body)


def einittoken_dependencies(token: EINITTOKEN, le_pubkey_hash: bytes,
                            platform: PlatformSecrets) -> KeyDependencies:
    """KEYDEPENDENCIES of the EINITTOKEN key EINIT checks a token's MAC with (SDM EINIT):
    the token's launch-enclave fields, MRSIGNER = IA32_SGXLEPUBKEYHASH (``le_pubkey_hash``, 32
    bytes), KEYID from the token, OWNEREPOCH and SEAL_FUSES, PADDING = HARDCODED."""
    if len(le_pubkey_hash) != 32:
        raise ValueError(f"the LE public-key hash is 32 bytes, got {len(le_pubkey_hash)}")
    return KeyDependencies(
        keyname=KeyName.EINITTOKEN_KEY, isvprodid=token.isvprodidle, isvsvn=token.isvsvnle,
        ownerepoch=platform.owner_epoch, attributes=token.maskedattributesle,
        mrsigner=le_pubkey_hash, keyid=token.keyid, seal_key_fuses=platform.seal_fuses,
        cpusvn=token.cpusvnle, padding=HARDCODED_PKCS1_5_PADDING,
        miscselect=token.maskedmiscselectle)


def einittoken_mac(key: bytes, token_image: bytes) -> bytes:
    """EINITTOKEN.MAC: AES-128-CMAC over token bytes [0:192] (SDM EINIT, "only 192 bytes of
    EINITTOKEN are CMACed")."""
    if len(token_image) != EINITTOKEN.SIZE:
        raise ValueError(f"EINITTOKEN is {EINITTOKEN.SIZE} bytes, got {len(token_image)}")
    start, stop = EINITTOKEN_MAC_RANGE
    return aes_cmac(key, token_image[start:stop])
