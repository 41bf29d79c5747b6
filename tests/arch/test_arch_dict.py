"""The dictionary (JSON) form of vsgx.arch structures: nesting, and exact error messages that name
the path of the offending field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.arch import (
    ATTRIBUTES,
    KEYREQUEST,
    PCMD,
    REPORT,
    SECINFO,
    SECS,
    SIGSTRUCT,
    TARGETINFO,
    Struct,
    StructError,
    parse_hex,
)


def error(cls: type[Struct], obj: Any, where: str = "") -> str:
    with pytest.raises(StructError) as exc:
        cls.from_dict(obj, where=where)
    return str(exc.value)


# -- valid input -------------------------------------------------------------------------------


def test_nested_attributes() -> None:
    secs = SECS.from_dict({
        "size": 0x4000,
        "baseaddr": 0x10000,
        "ssaframesize": 1,
        "attributes": {"flags": 0x4, "xfrm": 3},
        "mrenclave": "ab" * 32,
        "isvsvn": 7,
    })
    assert secs.attributes == ATTRIBUTES(flags=4, xfrm=3)
    assert secs.mrenclave == b"\xab" * 32
    assert secs.mrsigner == bytes(32)  # missing fields are zero
    assert secs.isvsvn == 7
    raw = secs.to_bytes()
    assert raw[48] == 4 and raw[56] == 3 and raw[64:96] == b"\xab" * 32 and raw[258] == 7


def test_missing_nested_fields_are_zero() -> None:
    assert SECS.from_dict({"attributes": {"xfrm": 3}}).attributes == ATTRIBUTES(0, 3)
    assert SECS.from_dict({"attributes": {}}).attributes == ATTRIBUTES()


def test_hex_is_case_insensitive() -> None:
    assert SECS.from_dict({"mrsigner": "AbCd" * 16}).mrsigner == b"\xab\xcd" * 16


def test_doubly_nested() -> None:
    report = REPORT.from_dict({"body": {"attributes": {"flags": 2}, "isvprodid": 5},
                               "mac": "11" * 16})
    assert report.body.attributes.flags == 2
    assert report.body.isvprodid == 5
    pcmd = PCMD.from_dict({"secinfo": {"flags": 0x205}, "enclaveid": 9})
    assert pcmd.secinfo == SECINFO(0x205)


def test_to_dict_shape() -> None:
    d = SECS(size=8192, attributes=ATTRIBUTES(1, 3)).to_dict()
    assert d["size"] == 8192
    assert d["attributes"] == {"flags": 1, "xfrm": 3}
    assert d["mrenclave"] == "00" * 32
    assert list(d) == ["size", "baseaddr", "ssaframesize", "miscselect", "attributes",
                       "mrenclave", "mrsigner", "configid", "isvprodid", "isvsvn", "configsvn"]


def test_int_bounds_accepted() -> None:
    assert KEYREQUEST.from_dict({"keyname": 0xFFFF}).keyname == 0xFFFF
    top = (1 << 64) - 1
    assert SECS.from_dict({"attributes": {"flags": top}}).attributes.flags == top
    assert SIGSTRUCT.from_dict({"cet_attributes": 255}).cet_attributes == 255


# -- errors: exact messages naming the path ----------------------------------------------------


def test_unknown_key() -> None:
    assert error(SECS, {"bogus": 1}) == "secs.bogus: not a field of SECS"
    assert error(SECS, {"attributes": {"flagz": 1}}) == (
        "secs.attributes.flagz: not a field of ATTRIBUTES")
    # several unknown keys: the first in sorted order is named
    assert error(SECS, {"zeta": 1, "alpha": 2, "size": 3}) == "secs.alpha: not a field of SECS"
    # field names are lower case; the SDM's upper-case spelling is not accepted
    assert error(SECS, {"SIZE": 1}) == "secs.SIZE: not a field of SECS"
    # reserved areas have no name
    assert error(PCMD, {"reserved": 0}) == "pcmd.reserved: not a field of PCMD"


def test_not_an_object() -> None:
    assert error(SECS, []) == "secs: expected an object with SECS fields"
    assert error(SECS, "x") == "secs: expected an object with SECS fields"
    assert error(SECS, {"attributes": 3}) == (
        "secs.attributes: expected an object with ATTRIBUTES fields")
    assert error(REPORT, {"body": None}) == "report.body: expected an object with REPORTBODY fields"


@pytest.mark.parametrize("bad", [True, False, "1", 1.0, None, [1], {"flags": 1}])
def test_int_field_wrong_type(bad: Any) -> None:
    assert error(SECS, {"attributes": {"flags": bad}}) == (
        "secs.attributes.flags: expected an integer")
    assert error(SECS, {"size": bad}) == "secs.size: expected an integer"


def test_int_field_out_of_range() -> None:
    assert error(SECS, {"attributes": {"flags": 1 << 64}}) == (
        "secs.attributes.flags: 18446744073709551616 does not fit in 8 bytes")
    assert error(SECS, {"attributes": {"xfrm": -1}}) == (
        "secs.attributes.xfrm: -1 does not fit in 8 bytes")
    assert error(SECS, {"isvsvn": 0x10000}) == "secs.isvsvn: 65536 does not fit in 2 bytes"
    assert error(SECS, {"ssaframesize": 1 << 32}) == (
        "secs.ssaframesize: 4294967296 does not fit in 4 bytes")
    assert error(TARGETINFO, {"cet_attributes": 256}) == (
        "targetinfo.cet_attributes: 256 does not fit in 1 bytes")
    assert error(PCMD, {"secinfo": {"flags": -5}}) == (
        "pcmd.secinfo.flags: -5 does not fit in 8 bytes")


@settings(deadline=None, max_examples=50)
@given(st.sampled_from([("size", 8), ("ssaframesize", 4), ("isvprodid", 2), ("configsvn", 2)]),
       st.one_of(st.integers(max_value=-1), st.integers(min_value=1 << 64)))
def test_int_out_of_range_property(field: tuple[str, int], value: int) -> None:
    name, size = field
    assert error(SECS, {name: value}) == f"secs.{name}: {value} does not fit in {size} bytes"


def test_hex_wrong_length() -> None:
    assert error(SECS, {"mrenclave": "00" * 31}) == (
        "secs.mrenclave: expected 32 bytes (64 hex digits), got 31")
    assert error(SECS, {"mrenclave": "00" * 33}) == (
        "secs.mrenclave: expected 32 bytes (64 hex digits), got 33")
    assert error(SECS, {"configid": ""}) == (
        "secs.configid: expected 64 bytes (128 hex digits), got 0")
    assert error(REPORT, {"body": {"reportdata": "ff"}}) == (
        "report.body.reportdata: expected 64 bytes (128 hex digits), got 1")
    assert error(PCMD, {"mac": "00" * 15}) == "pcmd.mac: expected 16 bytes (32 hex digits), got 15"


@pytest.mark.parametrize("bad", ["zz" * 32, "0x" + "00" * 31, "0" * 63, "00" * 31 + "g0", "é" * 64])
def test_hex_not_hex(bad: str) -> None:
    assert error(SECS, {"mrsigner": bad}) == "secs.mrsigner: not a valid hex string"


@pytest.mark.parametrize("bad", [0, None, b"\x00" * 32, ["00"] * 32, True])
def test_hex_not_a_string(bad: Any) -> None:
    assert error(SECS, {"mrsigner": bad}) == "secs.mrsigner: expected a hex string"


def test_where_prefix() -> None:
    assert error(SECS, {"attributes": {"flags": "x"}}, where="ops[3].secs") == (
        "ops[3].secs.attributes.flags: expected an integer")
    assert error(SIGSTRUCT, {"attributemask": {"xfrm": -1}}, where="sig") == (
        "sig.attributemask.xfrm: -1 does not fit in 8 bytes")
    assert error(KEYREQUEST, [], where="req") == "req: expected an object with KEYREQUEST fields"


def test_first_bad_field_in_layout_order() -> None:
    # unknown keys are reported before any value error; then fields in layout order
    assert error(SECS, {"isvsvn": -1, "bogus": 0}) == "secs.bogus: not a field of SECS"
    assert error(SECS, {"isvsvn": -1, "size": "x"}) == "secs.size: expected an integer"


def test_parse_hex() -> None:
    assert parse_hex("0102", None, "p") == b"\x01\x02"
    assert parse_hex("", None, "p") == b""
    with pytest.raises(StructError, match=r"^p\.q: expected 2 bytes \(4 hex digits\), got 1$"):
        parse_hex("01", 2, "p.q")


def test_struct_error_is_value_error() -> None:
    assert issubclass(StructError, ValueError)
