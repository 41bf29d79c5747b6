"""Malformed ``vsgx isa`` scripts: each is refused with one exact, one-line message that names
where the problem is (``ops[3].secs.size: ...``); through the CLI that is ``vsgx isa: MESSAGE``
on stderr and exit code 2, with nothing on stdout.

Key-file cases use placeholders (``@KEY``, ``@RSA2048``, ...) that the test replaces with the
session's key files from ``conftest.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from vsgx.isa import ScriptError, run_script

ECREATE: dict[str, Any] = {"op": "ECREATE", "epc": 0,
                           "secs": {"size": 16384, "baseaddr": 65536, "ssaframesize": 1}}
EADD: dict[str, Any] = {"op": "EADD", "epc": 1, "secs_epc": 0, "linaddr": 65536,
                        "secinfo": {"flags": 0x203}}
OP_NAMES = ("ECREATE, EADD, EEXTEND, EINIT, EREMOVE, EDBGRD, EDBGWR, EPA, EBLOCK, ETRACK, EWB, "
            "ELDU, ELDB, EAUG, EMODPR, EMODT, EREPORT, EGETKEY, EACCEPT, EACCEPTCOPY, EMODPE, "
            "WRMSR, RDMSR")
PAGE_FORMS = 'expected {"fill": BYTE}, {"hex": "..."} or {"tcs": {...}}'


def ops(*items: dict[str, Any]) -> dict[str, Any]:
    return {"ops": list(items)}


def einit(key: Any = "@KEY", **extra: Any) -> dict[str, Any]:
    sigstruct = {"key": key, **extra.pop("sigstruct", {})}
    return {"op": "EINIT", "secs_epc": 0, "sigstruct": sigstruct, **extra}


# (id, script as JSON text or a document, the exact ScriptError message)
CASES: list[tuple[str, str | dict[str, Any], str]] = [
    # -- the document ----------------------------------------------------------------------
    ("not-json", "{", "not valid JSON: Expecting property name enclosed in double quotes "
                      "at line 1 column 2"),
    ("empty", "", "not valid JSON: Expecting value at line 1 column 1"),
    ("trailing-data", '{"ops": []}\n]', "not valid JSON: Extra data at line 2 column 1"),
    ("deeply-nested", "[" * 100_000, "not valid JSON: nested too deeply"),
    ("huge-integer-literal", '{"ops": [], "platform": {"epc": ' + "9" * 5000 + "}}",
     "not valid JSON: @INT_LIMIT_DETAIL"),
    ("top-level-list", "[]", 'the script must be a JSON object with "ops"'),
    ("top-level-string", '"ops"', 'the script must be a JSON object with "ops"'),
    ("unknown-top-level-key", {"ops": [], "plat": {}},
     "plat: unknown top-level key (expected platform, ops)"),
    ("ops-missing", {"platform": {}}, "ops: expected a list of op objects"),
    ("ops-not-a-list", {"ops": {"op": "EPA", "epc": 0}}, "ops: expected a list of op objects"),
    # -- platform --------------------------------------------------------------------------
    ("platform-not-object", {"platform": ["8M"], "ops": []}, "platform: expected an object"),
    ("platform-unknown-key", {"platform": {"epcsize": "8M"}, "ops": []},
     "platform.epcsize: unknown key "
     "(expected one of epc, feature_control, flc, kss, seed, sgx2)"),
    ("epc-7X", {"platform": {"epc": "7X"}, "ops": []}, "platform.epc: invalid size '7X'"),
    ("epc-fraction-without-unit", {"platform": {"epc": "1.5"}, "ops": []},
     "platform.epc: invalid size '1.5': fractions need a unit suffix"),
    ("epc-not-page-multiple", {"platform": {"epc": 5000}, "ops": []},
     "platform.epc: 5000 is not a positive multiple of 4096"),
    ("epc-6K", {"platform": {"epc": "6K"}, "ops": []},
     "platform.epc: 6144 is not a positive multiple of 4096"),
    ("epc-zero", {"platform": {"epc": 0}, "ops": []},
     "platform.epc: 0 is not a positive multiple of 4096"),
    ("epc-bool", {"platform": {"epc": True}, "ops": []}, "platform.epc: expected an integer"),
    ("sgx2-yes", {"platform": {"sgx2": "yes"}, "ops": []},
     "platform.sgx2: expected true or false"),
    ("flc-1", {"platform": {"flc": 1}, "ops": []}, "platform.flc: expected true or false"),
    ("seed-int", {"platform": {"seed": 7}, "ops": []}, "platform.seed: expected a string"),
    ("seed-lone-surrogate", '{"platform": {"seed": "\\udc80"}, "ops": []}',
     "platform.seed: not valid Unicode text"),
    ("epc-too-large-to-allocate", {"platform": {"epc": "1E"}, "ops": []},
     "platform.epc: cannot allocate 1152921504606846976 bytes of EPC: Cannot allocate memory"),
    ("feature-control-string", {"platform": {"feature_control": "0x40001"}, "ops": []},
     "platform.feature_control: expected an integer"),
    ("feature-control-reserved-bit", {"platform": {"feature_control": 8}, "ops": []},
     "platform.feature_control: WRMSR 0x3a: reserved bits set in 0x8"),
    ("feature-control-lc-without-flc",
     {"platform": {"flc": False, "feature_control": 0x60001}, "ops": []},
     "platform.feature_control: WRMSR 0x3a: SGX launch control is not supported"),
    # -- ops and operands ------------------------------------------------------------------
    ("op-not-object", {"ops": [["EPA", 0]]}, "ops[0]: expected an object"),
    ("op-missing", {"ops": [{"epc": 0}]}, "ops[0].op: expected the leaf mnemonic as a string"),
    ("op-not-string", {"ops": [{"op": 0x0E}]},
     "ops[0].op: expected the leaf mnemonic as a string"),
    ("op-unknown", ops({"op": "EFOO"}),
     f"ops[0].op: unknown op 'EFOO' (expected one of {OP_NAMES})"),
    ("op-with-newline", ops({"op": "E\nADD"}),
     f"ops[0].op: unknown op 'E\\nADD' (expected one of {OP_NAMES})"),
    ("op-lower-case", ops({"op": "EPA", "epc": 0}, {"op": "epa", "epc": 1}),
     f"ops[1].op: unknown op 'epa' (expected one of {OP_NAMES})"),
    ("operand-missing", ops({"op": "EREMOVE"}), "ops[0].epc: missing"),
    ("later-op-operand-missing", ops({"op": "EPA", "epc": 0}, {"op": "EPA"}),
     "ops[1].epc: missing"),
    ("integer-as-string", ops({"op": "EREMOVE", "epc": "3"}), "ops[0].epc: expected an integer"),
    ("bool-as-integer", ops({"op": "EREMOVE", "epc": True}), "ops[0].epc: expected an integer"),
    ("float-as-integer", ops({"op": "EREMOVE", "epc": 1.0}), "ops[0].epc: expected an integer"),
    ("null-as-integer", ops({"op": "EDBGRD", "epc": 0, "offset": None}),
     "ops[0].offset: expected an integer"),
    ("negative-epc", ops({"op": "EREMOVE", "epc": -1}),
     "ops[0].epc: -1 is out of range [0, 1099511627776]"),
    ("va-slot-512", ops({"op": "EWB", "epc": 1, "va_epc": 0, "va_slot": 512}),
     "ops[0].va_slot: 512 is out of range [0, 511]"),
    ("offset-4096", ops({"op": "EDBGRD", "epc": 0, "offset": 4096}),
     "ops[0].offset: 4096 is out of range [0, 4095]"),
    ("eextend-offset-4096", ops({"op": "EEXTEND", "secs_epc": 0, "epc": 1, "offset": 4096}),
     "ops[0].offset: 4096 is out of range [0, 4095]"),
    ("msr-beyond-32-bits", ops({"op": "RDMSR", "msr": 1 << 32}),
     "ops[0].msr: 4294967296 is out of range [0, 4294967295]"),
    ("wrmsr-value-beyond-64-bits", ops({"op": "WRMSR", "msr": 0x8C, "value": 1 << 64}),
     "ops[0].value: 18446744073709551616 is out of range [0, 18446744073709551615]"),
    ("unknown-operand", ops({"op": "EPA", "epc": 0, "secs_epc": 0}),
     "ops[0].secs_epc: not an operand of EPA"),
    ("unknown-operand-on-a-faulting-op", ops({"op": "EREMOVE", "epc": 99999, "bogus": 1}),
     "ops[0].bogus: not an operand of EREMOVE"),
    ("unknown-operand-after-success", ops({"op": "RDMSR", "msr": 0x3A, "value": 5}),
     "ops[0].value: not an operand of RDMSR"),
    ("lehash-choice", ops(einit(lehash="intel")), "ops[0].lehash: expected one of signer, keep"),
    # -- structures ------------------------------------------------------------------------
    ("struct-unknown-field", ops({**ECREATE, "secs": {"size": 16384, "foo": 1}}),
     "ops[0].secs.foo: not a field of SECS"),
    ("struct-not-object", ops({**ECREATE, "secs": 16384}),
     "ops[0].secs: expected an object with SECS fields"),
    ("struct-field-type", ops({**ECREATE, "secs": {"size": "16K"}}),
     "ops[0].secs.size: expected an integer"),
    ("struct-field-too-wide", ops({**ECREATE, "secs": {"ssaframesize": 1 << 32}}),
     "ops[0].secs.ssaframesize: 4294967296 does not fit in 4 bytes"),
    ("struct-nested-field", ops({**ECREATE, "secs": {"attributes": {"flags": True}}}),
     "ops[0].secs.attributes.flags: expected an integer"),
    ("struct-nested-unknown", ops({**ECREATE, "secs": {"attributes": {"xfrm": 3, "x": 1}}}),
     "ops[0].secs.attributes.x: not a field of ATTRIBUTES"),
    ("struct-hex-length", ops({**ECREATE, "secs": {"mrenclave": "00"}}),
     "ops[0].secs.mrenclave: expected 32 bytes (64 hex digits), got 1"),
    ("secinfo-not-object", ops({"op": "EMODPR", "epc": 0, "secinfo": 0x201}),
     "ops[0].secinfo: expected an object with SECINFO fields"),
    ("secinfo-missing", ops({"op": "EMODT", "epc": 0}), "ops[0].secinfo: missing"),
    # -- hex strings and pages -------------------------------------------------------------
    ("hex-wrong-length", ops({"op": "EDBGWR", "epc": 0, "data": "0102"}),
     "ops[0].data: expected 8 bytes (16 hex digits), got 2"),
    ("hex-non-hex", ops({"op": "EDBGWR", "epc": 0, "data": "zz" * 8}),
     "ops[0].data: not a valid hex string"),
    ("hex-not-string", ops({"op": "EDBGWR", "epc": 0, "data": 5}),
     "ops[0].data: expected a hex string"),
    ("page-two-keys", ops({**EADD, "page": {"fill": 0, "hex": "00" * 4096}}),
     f"ops[0].page: {PAGE_FORMS}"),
    ("page-unknown-key", ops({**EADD, "page": {"zero": True}}), f"ops[0].page: {PAGE_FORMS}"),
    ("page-not-object", ops({**EADD, "page": "00"}), f"ops[0].page: {PAGE_FORMS}"),
    ("page-fill-256", ops({**EADD, "page": {"fill": 256}}),
     "ops[0].page.fill: expected a byte value 0..255"),
    ("page-fill-bool", ops({**EADD, "page": {"fill": True}}),
     "ops[0].page.fill: expected a byte value 0..255"),
    ("page-hex-short", ops({**EADD, "page": {"hex": "00" * 4095}}),
     "ops[0].page.hex: expected 4096 bytes (8192 hex digits), got 4095"),
    ("page-tcs-unknown-field", ops({**EADD, "page": {"tcs": {"entry": 4096}}}),
     "ops[0].page.tcs.entry: not a field of TCS"),
    # -- EINIT: SIGSTRUCT, key, EINITTOKEN -------------------------------------------------
    ("sigstruct-not-object", ops({"op": "EINIT", "secs_epc": 0, "sigstruct": "generate"}),
     "ops[0].sigstruct: expected an object"),
    ("sigstruct-key-not-string", ops(einit(5)),
     'ops[0].sigstruct.key: expected "generate" or the path of a PEM file'),
    ("sigstruct-key-missing-file", ops(einit("@MISSING")),
     "ops[0].sigstruct.key: cannot read @MISSING: No such file or directory"),
    ("sigstruct-key-directory", ops(einit("@DIR")),
     "ops[0].sigstruct.key: cannot read @DIR: Is a directory"),
    ("sigstruct-key-nul", ops(einit("a\u0000b")),
     "ops[0].sigstruct.key: cannot read a\u0000b: embedded null byte"),
    ("sigstruct-key-not-pem", ops(einit("@NOTPEM")),
     "ops[0].sigstruct.key: signing key is not a readable PEM private key: @NOTPEM_DETAIL"),
    ("sigstruct-key-rsa2048", ops(einit("@RSA2048")),
     "ops[0].sigstruct.key: signing key must be RSA-3072 with public exponent 3, "
     "got RSA-2048 e=65537"),
    ("sigstruct-key-ec", ops(einit("@EC")),
     "ops[0].sigstruct.key: signing key must be RSA-3072 with public exponent 3, "
     "got EC secp256r1"),
    ("sigstruct-unknown-field", ops(einit(sigstruct={"foo": 1})),
     "ops[0].sigstruct.foo: not a field of SIGSTRUCT"),
    ("sigstruct-enclavehash-length", ops(einit(sigstruct={"enclavehash": "00"})),
     "ops[0].sigstruct.enclavehash: expected 32 bytes (64 hex digits), got 1"),
    ("sigstruct-after-signing-not-object", ops(einit(sigstruct={"after_signing": []})),
     "ops[0].sigstruct.after_signing: expected an object"),
    ("sigstruct-after-signing-field", ops(einit(sigstruct={"after_signing": {"exp": 3}})),
     "ops[0].sigstruct.after_signing.exp: not a field of SIGSTRUCT"),
    ("einittoken-not-object", ops(einit(einittoken=1)), "ops[0].einittoken: expected an object"),
    ("einittoken-unknown-field", ops(einit(einittoken={"foo": 1})),
     "ops[0].einittoken.foo: not a field of EINITTOKEN"),
    ("einittoken-mac-length", ops(einit(einittoken={"mac": "00"})),
     "ops[0].einittoken.mac: expected 16 bytes (32 hex digits), got 1"),
    ("einittoken-mac-not-string", ops(einit(einittoken={"mac": 0})),
     'ops[0].einittoken.mac: expected "auto" or a hex string'),
    ("einittoken-attributes-string", ops(einit(einittoken={"attributes": "secs"})),
     "ops[0].einittoken.attributes: expected an object with ATTRIBUTES fields"),
    # -- ELDU / ELDB -----------------------------------------------------------------------
    ("evicted-not-an-ewb", ops({"op": "EPA", "epc": 0},
                               {"op": "ELDU", "epc": 1, "va_epc": 0, "evicted": 0}),
     "ops[1].evicted: ops[0] is not an EWB that wrote a page"),
    ("evicted-in-the-future", ops({"op": "EPA", "epc": 0},
                                  {"op": "ELDB", "epc": 1, "va_epc": 0, "evicted": 1}),
     "ops[1].evicted: 1 is out of range [0, 0]"),
    ("eldu-without-evicted-or-pcmd", ops({"op": "ELDU", "epc": 1, "va_epc": 0}),
     "ops[0].pcmd: missing"),
    ("eldu-without-page", ops({"op": "ELDU", "epc": 1, "va_epc": 0, "pcmd": "00" * 128}),
     "ops[0].page: missing"),
    # -- ENCLU -----------------------------------------------------------------------------
    ("tcs-not-integer", ops({"op": "EGETKEY", "secs_epc": 0, "tcs": "1"}),
     "ops[0].tcs: expected an integer"),
    ("enclu-secs-missing", ops({"op": "EREPORT"}), "ops[0].secs_epc: missing"),
    ("tcs-beyond-the-epc", {"platform": {"epc": "1M"},
                            "ops": [{"op": "EGETKEY", "secs_epc": 0, "tcs": 256}]},
     "ops[0].tcs: 256 is out of range [0, 255]"),
    # Malformed operands are reported even where the leaf would fault (no enclave here).
    ("keyrequest-field-too-wide",
     ops({"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 1 << 16}}),
     "ops[0].keyrequest.keyname: 65536 does not fit in 2 bytes"),
    ("reportdata-length", ops({"op": "EREPORT", "secs_epc": 0, "reportdata": "00"}),
     "ops[0].reportdata: expected 64 bytes (128 hex digits), got 1"),
    ("reportdata-null", ops({"op": "EREPORT", "secs_epc": 0, "reportdata": None}),
     "ops[0].reportdata: expected a hex string"),
    ("targetinfo-field", ops({"op": "EREPORT", "secs_epc": 0, "targetinfo": {"mrenclave": 1}}),
     "ops[0].targetinfo.mrenclave: not a field of TARGETINFO"),
    ("eaccept-secinfo-missing", ops({"op": "EACCEPT", "secs_epc": 0, "linaddr": 4096}),
     "ops[0].secinfo: missing"),
    ("eacceptcopy-src-missing",
     ops({"op": "EACCEPTCOPY", "secs_epc": 0, "linaddr": 4096, "secinfo": {"flags": 515}}),
     "ops[0].src: missing"),
]

# Cases the runner gets wrong today (see the reasons); each states the message it should give.
NULL_OBJECTS: list[tuple[str, str | dict[str, Any], str]] = [
    ("sigstruct-null", ops({"op": "EINIT", "secs_epc": 0, "sigstruct": None}),
     "ops[0].sigstruct: expected an object"),
    ("einittoken-null", ops(einit(einittoken=None)),
     "ops[0].einittoken: expected an object"),
]


@pytest.fixture(scope="module")
def placeholders(pem_key: str, rsa2048_key: str, ec_key: str, not_pem_key: str,
                 key_dir: Path) -> dict[str, str]:
    try:
        serialization.load_pem_private_key(Path(not_pem_key).read_bytes(), password=None)
    except ValueError as exc:
        detail = str(exc)
    else:  # pragma: no cover - the fixture file is not a key
        raise AssertionError("not_pem_key loaded as a key")
    try:
        int("9" * 5000)
    except ValueError as exc:
        int_limit = str(exc)
    else:  # pragma: no cover - only without Python's integer-string limit
        pytest.skip("no integer string conversion limit")
    return {"@NOTPEM_DETAIL": detail, "@INT_LIMIT_DETAIL": int_limit, "@NOTPEM": not_pem_key,
            "@KEY": pem_key,
            "@RSA2048": rsa2048_key, "@EC": ec_key, "@MISSING": str(key_dir / "missing.pem"),
            "@DIR": str(key_dir)}


def render(script: str | dict[str, Any], subst: dict[str, str]) -> str:
    text = script if isinstance(script, str) else json.dumps(script)
    for name, value in subst.items():      # longest names first: @NOTPEM_DETAIL before @NOTPEM
        text = text.replace(name, value)
    return text


def expected_message(message: str, subst: dict[str, str]) -> str:
    for name, value in subst.items():
        message = message.replace(name, value)
    return message


def test_the_table_is_large_and_unambiguous() -> None:
    assert len(CASES) >= 25
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("script", "message"), [pytest.param(s, m, id=i) for i, s, m in CASES])
def test_malformed_script_message(script: str | dict[str, Any], message: str,
                                  placeholders: dict[str, str]) -> None:
    with pytest.raises(ScriptError) as exc:
        run_script(render(script, placeholders))
    assert str(exc.value) == expected_message(message, placeholders)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("script", "message"), [pytest.param(s, m, id=i)
                                               for i, s, m in NULL_OBJECTS])
def test_null_is_not_an_absent_object(script: str | dict[str, Any], message: str,
                                      placeholders: dict[str, str]) -> None:
    with pytest.raises(ScriptError) as exc:
        run_script(render(script, placeholders))
    assert str(exc.value) == message


@pytest.mark.parametrize("epc", ['"8E"', '"15E"', "9223372036854775808"])
def test_epc_beyond_ssize_t_is_a_script_error(epc: str) -> None:
    with pytest.raises(ScriptError, match=r"^platform\.epc: "):
        run_script('{"platform": {"epc": ' + epc + '}, "ops": []}')


def test_script_error_is_a_value_error() -> None:
    assert issubclass(ScriptError, ValueError)


# -- through the CLI --------------------------------------------------------------------------

CLI_CASES = ["not-json", "sigstruct-key-missing-file", "page-fill-256"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_cli_reports_malformed_script_on_one_line(case_id: str, placeholders: dict[str, str],
                                                  tmp_path: Path) -> None:
    _, script, message = next(c for c in CASES if c[0] == case_id)
    path = tmp_path / "script.json"
    path.write_text(render(script, placeholders))
    proc = subprocess.run([sys.executable, "-m", "vsgx.cli", "isa", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"vsgx isa: {expected_message(message, placeholders)}\n"
    assert proc.stderr.startswith("vsgx isa: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
