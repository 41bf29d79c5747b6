"""Layouts, byte round trips and reserved-byte checks of every vsgx.arch structure.

The expected tables below are transcribed by hand from the architecture reference
(shared/reference/sgx-architecture.md section 1, which cites the Intel SDM Vol. 3D ch. 38 and
Intel ``arch.h``); they are deliberately not derived from the structures' own ``LAYOUT``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vsgx.arch as arch
from vsgx.arch import Struct, StructError

# name -> (SIZE, ALIGN, [(field, offset, size, kind)], [(reserved start, stop)])
# kind: "int" (little-endian unsigned), "bytes", or the name of a nested structure.
# ALIGN values the reference gives: SECS/TCS/SIGSTRUCT 4096 (TCS: EENTER RBX 4K-aligned;
# SIGSTRUCT: EINIT), PAGEINFO 32, SECINFO 64, PCMD 128, EINITTOKEN/REPORT/TARGETINFO/KEYREQUEST
# 512. ATTRIBUTES, REPORTBODY (1) and GPRSGX, EXINFO (8, their place in an SSA frame) are not
# operands of any leaf; their values are pinned here as they are.
EXPECTED: dict[str, tuple[int, int, list[tuple[str, int, int, str]], list[tuple[int, int]]]] = {
    "ATTRIBUTES": (16, 1, [("flags", 0, 8, "int"), ("xfrm", 8, 8, "int")], []),
    "SECS": (
        4096,
        4096,
        [
            ("size", 0, 8, "int"),
            ("baseaddr", 8, 8, "int"),
            ("ssaframesize", 16, 4, "int"),
            ("miscselect", 20, 4, "int"),
            ("attributes", 48, 16, "ATTRIBUTES"),
            ("mrenclave", 64, 32, "bytes"),
            ("mrsigner", 128, 32, "bytes"),
            ("configid", 192, 64, "bytes"),
            ("isvprodid", 256, 2, "int"),
            ("isvsvn", 258, 2, "int"),
            ("configsvn", 260, 2, "int"),
        ],
        [(24, 48), (96, 128), (160, 192), (262, 4096)],
    ),
    "TCS": (
        4096,
        4096,
        [
            ("state", 0, 8, "int"),
            ("flags", 8, 8, "int"),
            ("ossa", 16, 8, "int"),
            ("cssa", 24, 4, "int"),
            ("nssa", 28, 4, "int"),
            ("oentry", 32, 8, "int"),
            ("aep", 40, 8, "int"),
            ("ofsbasgx", 48, 8, "int"),
            ("ogsbasgx", 56, 8, "int"),
            ("fslimit", 64, 4, "int"),
            ("gslimit", 68, 4, "int"),
        ],
        [(72, 4096)],
    ),
    "GPRSGX": (
        184,
        8,
        [
            ("rax", 0, 8, "int"),
            ("rcx", 8, 8, "int"),
            ("rdx", 16, 8, "int"),
            ("rbx", 24, 8, "int"),
            ("rsp", 32, 8, "int"),
            ("rbp", 40, 8, "int"),
            ("rsi", 48, 8, "int"),
            ("rdi", 56, 8, "int"),
            ("r8", 64, 8, "int"),
            ("r9", 72, 8, "int"),
            ("r10", 80, 8, "int"),
            ("r11", 88, 8, "int"),
            ("r12", 96, 8, "int"),
            ("r13", 104, 8, "int"),
            ("r14", 112, 8, "int"),
            ("r15", 120, 8, "int"),
            ("rflags", 128, 8, "int"),
            ("rip", 136, 8, "int"),
            ("ursp", 144, 8, "int"),
            ("urbp", 152, 8, "int"),
            ("exitinfo", 160, 4, "int"),
            ("aexnotify", 167, 1, "int"),
            ("fsbase", 168, 8, "int"),
            ("gsbase", 176, 8, "int"),
        ],
        [(164, 167)],
    ),
    "EXINFO": (16, 8, [("maddr", 0, 8, "int"), ("errcd", 8, 4, "int")], [(12, 16)]),
    "PAGEINFO": (
        32,
        32,
        [
            ("linaddr", 0, 8, "int"),
            ("srcpge", 8, 8, "int"),
            ("secinfo", 16, 8, "int"),
            ("secs", 24, 8, "int"),
        ],
        [],
    ),
    "SECINFO": (64, 64, [("flags", 0, 8, "int")], [(8, 64)]),
    "PCMD": (
        128,
        128,
        [
            ("secinfo", 0, 64, "SECINFO"),
            ("enclaveid", 64, 8, "int"),
            ("mac", 112, 16, "bytes"),
        ],
        [(72, 112)],
    ),
    "SIGSTRUCT": (
        1808,
        4096,
        [
            ("header", 0, 16, "bytes"),
            ("vendor", 16, 4, "int"),
            ("date", 20, 4, "int"),
            ("header2", 24, 16, "bytes"),
            ("swdefined", 40, 4, "int"),
            ("modulus", 128, 384, "bytes"),
            ("exponent", 512, 4, "int"),
            ("signature", 516, 384, "bytes"),
            ("miscselect", 900, 4, "int"),
            ("miscmask", 904, 4, "int"),
            ("cet_attributes", 908, 1, "int"),
            ("cet_attributes_mask", 909, 1, "int"),
            ("isvfamilyid", 912, 16, "bytes"),
            ("attributes", 928, 16, "ATTRIBUTES"),
            ("attributemask", 944, 16, "ATTRIBUTES"),
            ("enclavehash", 960, 32, "bytes"),
            ("isvextprodid", 1008, 16, "bytes"),
            ("isvprodid", 1024, 2, "int"),
            ("isvsvn", 1026, 2, "int"),
            ("q1", 1040, 384, "bytes"),
            ("q2", 1424, 384, "bytes"),
        ],
        [(44, 128), (910, 912), (992, 1008), (1028, 1040)],
    ),
    "EINITTOKEN": (
        304,
        512,
        [
            ("valid", 0, 4, "int"),
            ("attributes", 48, 16, "ATTRIBUTES"),
            ("mrenclave", 64, 32, "bytes"),
            ("mrsigner", 128, 32, "bytes"),
            ("cpusvnle", 192, 16, "bytes"),
            ("isvprodidle", 208, 2, "int"),
            ("isvsvnle", 210, 2, "int"),
            ("maskedmiscselectle", 236, 4, "int"),
            ("maskedattributesle", 240, 16, "ATTRIBUTES"),
            ("keyid", 256, 32, "bytes"),
            ("mac", 288, 16, "bytes"),
        ],
        [(4, 48), (96, 128), (160, 192), (212, 236)],
    ),
    "REPORTBODY": (
        384,
        1,
        [
            ("cpusvn", 0, 16, "bytes"),
            ("miscselect", 16, 4, "int"),
            ("cet_attributes", 20, 1, "int"),
            ("isvextprodid", 32, 16, "bytes"),
            ("attributes", 48, 16, "ATTRIBUTES"),
            ("mrenclave", 64, 32, "bytes"),
            ("mrsigner", 128, 32, "bytes"),
            ("configid", 192, 64, "bytes"),
            ("isvprodid", 256, 2, "int"),
            ("isvsvn", 258, 2, "int"),
            ("configsvn", 260, 2, "int"),
            ("isvfamilyid", 304, 16, "bytes"),
            ("reportdata", 320, 64, "bytes"),
        ],
        [(21, 32), (96, 128), (160, 192), (262, 304)],
    ),
    "REPORT": (
        432,
        512,
        [("body", 0, 384, "REPORTBODY"), ("keyid", 384, 32, "bytes"), ("mac", 416, 16, "bytes")],
        [],
    ),
    "TARGETINFO": (
        512,
        512,
        [
            ("measurement", 0, 32, "bytes"),
            ("attributes", 32, 16, "ATTRIBUTES"),
            ("cet_attributes", 48, 1, "int"),
            ("configsvn", 50, 2, "int"),
            ("miscselect", 52, 4, "int"),
            ("configid", 64, 64, "bytes"),
        ],
        [(49, 50), (56, 64), (128, 512)],
    ),
    "KEYREQUEST": (
        512,
        512,
        [
            ("keyname", 0, 2, "int"),
            ("keypolicy", 2, 2, "int"),
            ("isvsvn", 4, 2, "int"),
            ("cpusvn", 8, 16, "bytes"),
            ("attributemask", 24, 16, "ATTRIBUTES"),
            ("keyid", 40, 32, "bytes"),
            ("miscmask", 72, 4, "int"),
            ("configsvn", 76, 2, "int"),
        ],
        [(6, 8), (78, 512)],
    ),
}

NAMES = sorted(EXPECTED)
SETTINGS = settings(deadline=None, max_examples=60)


def cls_of(name: str) -> type[Struct]:
    cls = getattr(arch, name)
    assert isinstance(cls, type) and issubclass(cls, Struct)
    return cls


def all_reserved(name: str) -> list[tuple[int, int]]:
    """Every reserved byte range of ``name``, nested structures included, in image offsets."""
    _, _, fields, reserved = EXPECTED[name]
    out = list(reserved)
    for _, offset, _, kind in fields:
        if kind in EXPECTED:
            out += [(offset + a, offset + b) for a, b in all_reserved(kind)]
    return sorted(out)


def all_int_fields(name: str, prefix: str = "") -> list[tuple[str, int, int]]:
    """(dotted path, image offset, size) of every integer field, nested ones included."""
    _, _, fields, _ = EXPECTED[name]
    out: list[tuple[str, int, int]] = []
    for field, offset, size, kind in fields:
        if kind == "int":
            out.append((prefix + field, offset, size))
        elif kind in EXPECTED:
            out += [(p, offset + o, s) for p, o, s in all_int_fields(kind, f"{prefix}{field}.")]
    return out


# -- the expected tables are self-consistent ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_expected_table_tiles_the_structure(name: str) -> None:
    size, _, fields, reserved = EXPECTED[name]
    spans = sorted([(o, o + s) for _, o, s, _ in fields] + reserved)
    pos = 0
    for start, stop in spans:
        assert start == pos, f"{name}: gap or overlap at {pos}"
        pos = stop
    assert pos == size
    for _, _, fsize, kind in fields:
        if kind in EXPECTED:
            assert EXPECTED[kind][0] == fsize


def test_every_structure_is_covered() -> None:
    exported = {n for n in arch.__all__ if isinstance(getattr(arch, n), type)
                and issubclass(getattr(arch, n), Struct) and getattr(arch, n) is not Struct}
    assert exported == set(EXPECTED)


# -- layouts against the reference -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_size_align_name(name: str) -> None:
    cls = cls_of(name)
    size, align, _, _ = EXPECTED[name]
    assert cls.NAME == name
    assert cls.SIZE == size
    assert cls.ALIGN == align
    assert len(cls.zero().to_bytes()) == size


@pytest.mark.parametrize("name", NAMES)
def test_field_offsets_sizes_kinds(name: str) -> None:
    cls = cls_of(name)
    _, _, fields, _ = EXPECTED[name]
    got = []
    for f in cls.LAYOUT:
        if f.kind is int:
            kind = "int"
        elif f.kind is bytes:
            kind = "bytes"
        else:
            kind = f.kind.__name__
        got.append((f.name, f.offset, f.size, kind))
    assert got == fields
    # the dataclass takes the same fields, in the same order, as keyword arguments
    assert [f.name for f in dataclasses.fields(getattr(arch, name))] == [f[0] for f in fields]


@pytest.mark.parametrize("name", NAMES)
def test_reserved_ranges(name: str) -> None:
    assert list(cls_of(name)._RESERVED) == EXPECTED[name][3]


def test_reference_spot_checks() -> None:
    """A few offsets quoted verbatim in the reference's prose."""
    secs = arch.SECS(attributes=arch.ATTRIBUTES(flags=0x1122, xfrm=0x3344)).to_bytes()
    assert secs[48:50] == b"\x22\x11" and secs[56:58] == b"\x44\x33"  # FLAGS @48, XFRM @56
    sig = arch.SIGSTRUCT(attributes=arch.ATTRIBUTES(flags=1, xfrm=3)).to_bytes()
    assert sig[928] == 1 and sig[936] == 3  # flags @928, xfrm @936
    pcmd = arch.PCMD(secinfo=arch.SECINFO(flags=0x205), enclaveid=7).to_bytes()
    assert pcmd[0:2] == b"\x05\x02" and pcmd[64] == 7
    assert arch.REPORT(mac=b"\xaa" * 16).to_bytes()[416:] == b"\xaa" * 16


# -- strategies --------------------------------------------------------------------------------


def field_spans(name: str) -> list[tuple[int, int]]:
    """(start, stop) of every non-nested field of ``name``, nested ones included, in order."""
    out: list[tuple[int, int]] = []
    for _, offset, size, kind in EXPECTED[name][2]:
        if kind in EXPECTED:
            out += [(offset + a, offset + b) for a, b in field_spans(kind)]
        else:
            out.append((offset, offset + size))
    return out


@st.composite
def images(draw: st.DrawFn, name: str) -> bytes:
    """A valid byte image of ``name``: random field values, reserved bytes zero.

    Every value of an n-byte field is in range, so one byte string covering all the fields is
    drawn and scattered to their offsets (one draw per image keeps the tests fast)."""
    spans = field_spans(name)
    total = sum(b - a for a, b in spans)
    blob = draw(st.binary(min_size=total, max_size=total))
    out = bytearray(EXPECTED[name][0])
    pos = 0
    for start, stop in spans:
        out[start:stop] = blob[pos : pos + stop - start]
        pos += stop - start
    return bytes(out)


def decoded(name: str, raw: bytes) -> dict[str, Any]:
    """The field values of an image, read with the expected table (not the code's LAYOUT)."""
    _, _, fields, _ = EXPECTED[name]
    out: dict[str, Any] = {}
    for field, offset, size, kind in fields:
        chunk = raw[offset : offset + size]
        if kind == "int":
            out[field] = int.from_bytes(chunk, "little")
        elif kind == "bytes":
            out[field] = chunk.hex()
        else:
            out[field] = decoded(kind, chunk)
    return out


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_bytes_round_trip(name: str, data: st.DataObject) -> None:
    cls = cls_of(name)
    raw = data.draw(images(name))
    obj = cls.from_bytes(raw)
    assert obj.to_bytes() == raw
    assert obj.to_dict() == decoded(name, raw)
    assert cls.from_dict(obj.to_dict()) == obj
    assert cls.from_bytes(bytearray(raw)) == obj
    assert cls.from_bytes(memoryview(raw)) == obj


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_construct_serialise_parse(name: str, data: st.DataObject) -> None:
    """Building with keyword arguments, then serialising, lands each value at its offset."""
    cls = cls_of(name)
    values = decoded(name, data.draw(images(name)))
    obj = cls.from_dict(values)
    raw = obj.to_bytes()
    assert decoded(name, raw) == values
    assert cls.from_bytes(raw) == obj
    assert obj.replace() == obj


@pytest.mark.parametrize("name", NAMES)
def test_zero(name: str) -> None:
    cls = cls_of(name)
    assert cls.zero() == cls() == cls.from_dict({})
    assert cls.zero().to_bytes() == bytes(cls.SIZE)


# -- length and reserved-byte checks -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None, max_examples=20)
@given(data=st.data())
def test_wrong_length_rejected(name: str, data: st.DataObject) -> None:
    cls = cls_of(name)
    length = data.draw(st.integers(0, cls.SIZE + 63).map(lambda n: n + (n >= cls.SIZE)))
    for strict in (True, False):
        with pytest.raises(StructError) as exc:
            cls.from_bytes(bytes(length), strict=strict)
        assert str(exc.value) == f"{name} must be {cls.SIZE} bytes, got {length}"


RESERVED_NAMES = [n for n in NAMES if all_reserved(n)]


def test_reserved_names() -> None:
    # every structure but ATTRIBUTES, PAGEINFO has reserved bytes; REPORT's are all in its body
    assert set(NAMES) - set(RESERVED_NAMES) == {"ATTRIBUTES", "PAGEINFO"}
    assert all_reserved("PCMD") == [(8, 64), (72, 112)]


@pytest.mark.parametrize("name", RESERVED_NAMES)
@SETTINGS
@given(data=st.data())
def test_nonzero_reserved_byte_rejected(name: str, data: st.DataObject) -> None:
    cls = cls_of(name)
    raw = bytearray(data.draw(images(name)))
    start, stop = data.draw(st.sampled_from(all_reserved(name)))
    offset = data.draw(st.integers(start, stop - 1))
    raw[offset] = data.draw(st.integers(1, 255))
    with pytest.raises(StructError) as exc:
        cls.from_bytes(raw)
    assert str(exc.value) == f"{name}: reserved byte at offset {offset} is not zero"
    assert cls.reserved_nonzero(raw) == offset

    lenient = cls.from_bytes(raw, strict=False)
    assert lenient.to_dict() == decoded(name, bytes(raw))
    raw[offset] = 0
    assert lenient.to_bytes() == bytes(raw)  # serialising writes reserved bytes as zero


@pytest.mark.parametrize("name", RESERVED_NAMES)
@settings(deadline=None, max_examples=30)
@given(data=st.data())
def test_lowest_nonzero_reserved_offset_reported(name: str, data: st.DataObject) -> None:
    cls = cls_of(name)
    raw = bytearray(data.draw(images(name)))
    every = [off for a, b in all_reserved(name) for off in range(a, b)]
    offsets = sorted(data.draw(st.lists(st.sampled_from(every), min_size=2, max_size=6,
                                        unique=True)))
    for off in offsets:
        raw[off] = 0xFF
    with pytest.raises(StructError, match=rf"^{name}: reserved byte at offset {offsets[0]} "):
        cls.from_bytes(raw)
    cls.from_bytes(raw, strict=False)


def test_pcmd_nested_secinfo_reserved() -> None:
    raw = bytearray(128)
    raw[0:8] = (0x205).to_bytes(8, "little")
    raw[63] = 1  # last reserved byte of the nested SECINFO
    with pytest.raises(StructError, match=r"^PCMD: reserved byte at offset 63 is not zero$"):
        arch.PCMD.from_bytes(raw)
    with pytest.raises(StructError, match=r"^SECINFO: reserved byte at offset 63 is not zero$"):
        arch.SECINFO.from_bytes(raw[:64])
    assert arch.PCMD.from_bytes(raw, strict=False).secinfo.flags == 0x205


def test_report_nested_body_reserved() -> None:
    raw = bytearray(432)
    raw[21] = 1
    with pytest.raises(StructError, match=r"^REPORT: reserved byte at offset 21 is not zero$"):
        arch.REPORT.from_bytes(raw)


# -- serialising rejects values that do not fit ------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_to_bytes_rejects_out_of_range(name: str) -> None:
    cls = cls_of(name)
    _, _, fields, _ = EXPECTED[name]
    for field, _, size, kind in fields:
        if kind == "int":
            for bad in (-1, 1 << (8 * size)):
                with pytest.raises(StructError) as exc:
                    cls().replace(**{field: bad}).to_bytes()
                assert str(exc.value) == f"{name}.{field}={bad} does not fit {size} bytes"
        elif kind == "bytes":
            with pytest.raises(StructError) as exc:
                cls().replace(**{field: bytes(size + 1)}).to_bytes()
            assert str(exc.value) == f"{name}.{field} must be {size} bytes"


# -- SSA frame helpers and EXITINFO ------------------------------------------------------------


@given(st.integers(1, 64))
def test_ssa_offsets(pages: int) -> None:
    gpr = arch.ssa_gprsgx_offset(pages)
    assert gpr == pages * 4096 - 184  # GPRSGX is the last 184 bytes of the frame
    assert arch.ssa_exinfo_offset(pages) == gpr - 16  # MISC.EXINFO right below it
    assert gpr % 8 == 0


def test_ssa_offsets_one_page() -> None:
    assert arch.ssa_gprsgx_offset(1) == 3912
    assert arch.ssa_exinfo_offset(1) == 3896


def test_exitinfo_examples() -> None:
    assert arch.EXITINFO_VALID == 0x8000_0000
    assert arch.EXITINFO_TYPE_HARDWARE == 3
    assert arch.EXITINFO_TYPE_SOFTWARE == 6
    assert arch.exitinfo(14, 3) == 0x8000_030E  # #PF, hardware exception
    assert arch.exitinfo(13, 3) == 0x8000_030D  # #GP
    assert arch.exitinfo(3, 6) == 0x8000_0603  # INT3, software exception
    assert arch.exitinfo(0, 3) == 0x8000_0300  # #DE


@given(st.integers(0, 255), st.integers(0, 7))
def test_exitinfo_fields(vector: int, exit_type: int) -> None:
    value = arch.exitinfo(vector, exit_type)
    assert value & 0xFF == vector  # bits 7:0
    assert (value >> 8) & 0x7 == exit_type  # bits 10:8
    assert value & 0x7FFF_F800 == 0  # bits 30:11 reserved
    assert value >> 31 == 1  # VALID
    gpr = arch.GPRSGX(exitinfo=value).to_bytes()
    assert int.from_bytes(gpr[160:164], "little") == value


# -- SIGSTRUCT / EINITTOKEN byte ranges --------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_sigstruct_signed_bytes(data: st.DataObject) -> None:
    raw = data.draw(images("SIGSTRUCT"))
    assert arch.SIGSTRUCT_SIGNED_RANGES == ((0, 128), (900, 1028))
    signed = arch.sigstruct_signed_bytes(raw)
    assert len(signed) == 256
    assert signed == raw[0:128] + raw[900:1028]


def test_einittoken_mac_range() -> None:
    assert arch.EINITTOKEN_MAC_RANGE == (0, 192)


# -- ATTRIBUTES and SECINFO helpers ------------------------------------------------------------


@given(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
       st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))
def test_attributes_and_or(f1: int, x1: int, f2: int, x2: int) -> None:
    a, b = arch.ATTRIBUTES(f1, x1), arch.ATTRIBUTES(f2, x2)
    assert a & b == arch.ATTRIBUTES(f1 & f2, x1 & x2)
    assert a | b == arch.ATTRIBUTES(f1 | f2, x1 | x2)


@given(st.sampled_from(list(arch.PageType)), st.integers(0, 7), st.integers(0, 7))
def test_secinfo_properties(pt: arch.PageType, rwx: int, state: int) -> None:
    extra = state << 3  # PENDING, MODIFIED, PR
    s = arch.SECINFO.of(pt, rwx, extra)
    assert s.flags == (int(pt) << 8) | rwx | extra == arch.secinfo_flags(pt, rwx, extra)
    assert s.page_type == int(pt)
    assert s.rwx == rwx


def test_field_offset_names_the_sdm_offsets() -> None:
    assert (arch.TCS.field_offset("cssa"), arch.TCS.field_offset("aep")) == (24, 40)
    assert arch.GPRSGX.field_offset("aexnotify") == 167
    with pytest.raises(KeyError, match="TCS has no field 'rip'"):
        arch.TCS.field_offset("rip")
