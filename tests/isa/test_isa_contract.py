"""The ``vsgx isa`` contract: scripts in, one JSON result per op out.

Most scripts run in-process through :func:`vsgx.isa.run_script`; a few go through the real
console script to check stdout JSON, exit codes and the one-line stderr. Scripts name a
session-wide PEM key file (see ``conftest.py``) rather than ``"key": "generate"`` unless
``"generate"`` itself is under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vsgx.arch import INTEL_LE_PUBKEY_HASH, PCMD, REPORT
from vsgx.isa import EPC_BASE, ScriptError, run_script

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "isa" / "quickstart.json"

BASE = 0x10_0000          # ELRANGE base of the enclaves built here (1 MiB)
SIZE = 0x4000             # four pages: TCS, two REG pages, one free slot for EAUG
PAGE = 4096
PFEC_SGX = 1 << 15
LEPUBKEYHASH0 = 0x8C
FEATURE_CONTROL = 0x3A

# SDM Vol. 3D Table 38-4: the codes every result's "code" must carry for its "status".
SDM_CODES = {
    "SGX_SUCCESS": 0, "SGX_INVALID_SIG_STRUCT": 1, "SGX_INVALID_ATTRIBUTE": 2,
    "SGX_INVALID_MEASUREMENT": 4, "SGX_PG_INVLD": 6, "SGX_INVALID_SIGNATURE": 8,
    "SGX_MAC_COMPARE_FAIL": 9,
    "SGX_PAGE_NOT_BLOCKED": 10, "SGX_NOT_TRACKED": 11, "SGX_VA_SLOT_OCCUPIED": 12,
    "SGX_INVALID_EINITTOKEN": 16, "SGX_PAGE_NOT_DEBUGGABLE": 21, "SGX_INVALID_CPUSVN": 32,
    "SGX_INVALID_ISVSVN": 64, "SGX_INVALID_KEYNAME": 256,
}

QUICKSTART_STATUSES = [
    "SGX_SUCCESS", "SGX_SUCCESS", "SGX_SUCCESS", "SGX_SUCCESS", "SGX_SUCCESS",  # build
    "SGX_SUCCESS",                                                              # EINIT
    "SGX_SUCCESS", "SGX_INVALID_ISVSVN",                                        # EGETKEY x2
    "SGX_SUCCESS",                                                              # EREPORT
    "SGX_SUCCESS", "SGX_SUCCESS", "SGX_NOT_TRACKED", "SGX_SUCCESS", "SGX_SUCCESS",  # paging
    "SGX_SUCCESS", "SGX_MAC_COMPARE_FAIL",                                      # ELDU, replay
]


# -- helpers ---------------------------------------------------------------------------------


def run(ops: list[dict[str, Any]], **platform: Any) -> list[dict[str, Any]]:
    doc: dict[str, Any] = {"ops": ops}
    if platform:
        doc["platform"] = platform
    return run_script(json.dumps(doc))


def outcome(result: dict[str, Any]) -> str:
    """The status name, or ``#GP``/``#PF``/``#UD`` when the leaf faulted."""
    if result["fault"] is not None:
        return "#" + result["fault"]["vector"]
    return str(result["status"])


def outcomes(results: list[dict[str, Any]]) -> list[str]:
    return [outcome(r) for r in results]


def build(key: str, *, flags: int = 4, secs: int = 0, base: int = BASE,
          einit: bool = True, **sigstruct: Any) -> list[dict[str, Any]]:
    """ECREATE + TCS + two REG pages (fill 0xAB, then zeros) [+ EINIT]. EPC pages used:
    ``secs`` .. ``secs + 3``; the page at ``base + 0x3000`` is left for EAUG."""
    ops: list[dict[str, Any]] = [
        {"op": "ECREATE", "epc": secs,
         "secs": {"size": SIZE, "baseaddr": base, "ssaframesize": 1,
                  "attributes": {"flags": flags, "xfrm": 3}}},
        {"op": "EADD", "epc": secs + 1, "secs_epc": secs, "linaddr": base,
         "secinfo": {"flags": 0x100}, "page": {"tcs": {"ossa": 0x2000, "nssa": 1,
                                                       "oentry": 0x1000}}},
        {"op": "EADD", "epc": secs + 2, "secs_epc": secs, "linaddr": base + PAGE,
         "secinfo": {"flags": 0x203}, "page": {"fill": 0xAB}},
        {"op": "EEXTEND", "epc": secs + 2, "secs_epc": secs, "offset": 0},
        {"op": "EADD", "epc": secs + 3, "secs_epc": secs, "linaddr": base + 2 * PAGE,
         "secinfo": {"flags": 0x203}, "page": {"fill": 0}},
    ]
    if einit:
        ops.append(einit_op(key, secs, **sigstruct))
    return ops


def einit_op(key: str, secs: int = 0, **sigstruct: Any) -> dict[str, Any]:
    return {"op": "EINIT", "secs_epc": secs, "sigstruct": {"key": key, **sigstruct}}


BUILT = ["SGX_SUCCESS"] * 5           # outcomes of build(..., einit=False)


def check_result_shape(result: dict[str, Any]) -> None:
    assert {"op", "status", "code", "fault"} <= set(result)
    if result["fault"] is None:
        assert result["status"] in SDM_CODES, result
        assert result["code"] == SDM_CODES[result["status"]]
    else:
        assert result["status"] is None and result["code"] is None
        fault = result["fault"]
        assert {"vector", "error_code", "address"} <= set(fault)
        assert fault["vector"] in ("GP", "PF", "UD")
        assert isinstance(fault["error_code"], int)
        assert fault["address"] is None or isinstance(fault["address"], int)


def is_hex(value: Any, digits: int) -> bool:
    return (isinstance(value, str) and len(value) == digits
            and all(c in "0123456789abcdef" for c in value))


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vsgx.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("vsgx isa: ")
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


# -- one full run whose outputs several tests inspect ------------------------------------------

REPORTDATA = bytes(range(64)).hex()


@pytest.fixture(scope="module")
def full(pem_key: str) -> list[dict[str, Any]]:
    ops = [*build(pem_key, flags=6, isvprodid=7, isvsvn=3),
        {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 4, "keypolicy": 1}},  # 6
        {"op": "EREPORT", "secs_epc": 0, "targetinfo": {"attributes": {"flags": 5}},
         "reportdata": REPORTDATA},                                                     # 7
        {"op": "EDBGRD", "epc": 2, "offset": 16},                                       # 8
        {"op": "EPA", "epc": 10},                                                       # 9
        {"op": "EBLOCK", "epc": 3},                                                     # 10
        {"op": "ETRACK", "secs_epc": 0},                                                # 11
        {"op": "EWB", "epc": 3, "va_epc": 10, "va_slot": 5},                            # 12
        {"op": "ELDU", "epc": 4, "va_epc": 10, "va_slot": 5, "secs_epc": 0,
         "evicted": 12},                                                                # 13
    ]
    return run(ops, epc="1M", seed="contract")


def test_full_run_statuses(full: list[dict[str, Any]]) -> None:
    assert outcomes(full) == BUILT + ["SGX_SUCCESS"] * 9
    assert [r["op"] for r in full] == [
        "ECREATE", "EADD", "EADD", "EEXTEND", "EADD", "EINIT", "EGETKEY", "EREPORT", "EDBGRD",
        "EPA", "EBLOCK", "ETRACK", "EWB", "ELDU"]
    for result in full:
        check_result_shape(result)
        assert result["fault"] is None


def test_einit_outputs_mrenclave_and_mrsigner(full: list[dict[str, Any]]) -> None:
    einit = full[5]
    assert is_hex(einit["mrenclave"], 64)
    assert is_hex(einit["mrsigner"], 64)
    assert "mrenclave" not in full[4] and "mrsigner" not in full[4]


def test_egetkey_outputs_a_128_bit_key(full: list[dict[str, Any]]) -> None:
    assert is_hex(full[6]["key"], 32)


def test_ereport_outputs_a_432_byte_report_matching_einit(full: list[dict[str, Any]]) -> None:
    report_hex = full[7]["report"]
    assert is_hex(report_hex, 864)
    raw = bytes.fromhex(report_hex)
    assert len(raw) == REPORT.SIZE == 432
    # Fixed SDM offsets within REPORTBODY (which starts at offset 0 of REPORT).
    assert raw[64:96].hex() == full[5]["mrenclave"]
    assert raw[128:160].hex() == full[5]["mrsigner"]
    assert raw[320:384].hex() == REPORTDATA
    assert int.from_bytes(raw[256:258], "little") == 7      # ISVPRODID from SIGSTRUCT
    assert int.from_bytes(raw[258:260], "little") == 3      # ISVSVN from SIGSTRUCT
    body = REPORT.from_bytes(raw).body
    assert body.attributes.flags == 0b111                   # INIT | DEBUG | MODE64BIT
    assert body.attributes.xfrm == 3


def test_edbgrd_outputs_eight_bytes(full: list[dict[str, Any]]) -> None:
    assert full[8]["data"] == "ab" * 8


def test_ewb_outputs_pcmd_and_sealed_page(full: list[dict[str, Any]]) -> None:
    ewb = full[12]
    assert is_hex(ewb["pcmd"], 256)
    assert is_hex(ewb["page"], 8192)
    assert ewb["page"] != "00" * PAGE                      # the zero page left encrypted
    pcmd = PCMD.from_bytes(bytes.fromhex(ewb["pcmd"]))
    assert pcmd.secinfo.flags == 0x203                      # PT_REG | R | W
    assert any(pcmd.mac)


def test_outputs_only_where_the_contract_puts_them(full: list[dict[str, Any]]) -> None:
    base_keys = {"op", "status", "code", "fault", "zf", "cf"}
    for result in full:
        assert set(result) - base_keys <= {
            "EINIT": {"mrenclave", "mrsigner"}, "EGETKEY": {"key"}, "EREPORT": {"report"},
            "EDBGRD": {"data"}, "EWB": {"pcmd", "page", "linaddr"},
        }.get(result["op"], set()), result["op"]


def test_zf_cf_follow_the_status(full: list[dict[str, Any]], pem_key: str) -> None:
    assert all(r["zf"] is False and r["cf"] is False for r in full)
    results = run([*build(pem_key),
        {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 4, "isvsvn": 9}}])
    assert outcome(results[-1]) == "SGX_INVALID_ISVSVN"
    assert results[-1]["zf"] is True and "key" not in results[-1]


# -- EDBGRD / EDBGWR --------------------------------------------------------------------------


def test_edbgrd_and_edbgwr_on_a_debug_enclave(pem_key: str) -> None:
    results = run([*build(pem_key, flags=6),
        {"op": "EDBGRD", "epc": 2, "offset": 8},
        {"op": "EDBGWR", "epc": 2, "offset": 8, "data": "0011223344556677"},
        {"op": "EDBGRD", "epc": 2, "offset": 8},
        {"op": "EDBGRD", "epc": 2, "offset": 0},
    ])
    assert outcomes(results[6:]) == ["SGX_SUCCESS"] * 4
    assert [r.get("data") for r in results[6:]] == [
        "ab" * 8, None, "0011223344556677", "ab" * 8]


def test_edbgrd_on_a_production_enclave(pem_key: str) -> None:
    # SDM EDBGRD/EDBGWR: a PENDING or MODIFIED page is SGX_PAGE_NOT_DEBUGGABLE (checked
    # first); any other page of an enclave without ATTRIBUTES.DEBUG is #GP(0).
    results = run([*build(pem_key, flags=4),
                   {"op": "EDBGRD", "epc": 2},
                   {"op": "EDBGWR", "epc": 2, "data": "00" * 8},
                   {"op": "EAUG", "epc": 4, "secs_epc": 0, "linaddr": BASE + 3 * PAGE},
                   {"op": "EDBGRD", "epc": 4}])
    assert outcomes(results[6:]) == ["#GP", "#GP", "SGX_SUCCESS", "SGX_PAGE_NOT_DEBUGGABLE"]
    assert results[6]["fault"]["error_code"] == 0
    pending = results[9]
    assert pending["code"] == 21 and pending["zf"] is True
    assert all("data" not in r for r in results[6:])


# -- faults -----------------------------------------------------------------------------------


def test_eadd_outside_elrange_is_gp_and_the_script_goes_on(pem_key: str) -> None:
    ops = build(pem_key, einit=False)
    ops[4]["linaddr"] = BASE + SIZE                          # first byte past ELRANGE
    ops.append({**ops[4], "linaddr": BASE + 2 * PAGE})      # the same page, inside
    results = run(ops)
    assert outcomes(results) == ["SGX_SUCCESS"] * 4 + ["#GP", "SGX_SUCCESS"]
    fault = results[4]["fault"]
    assert fault["vector"] == "GP" and fault["error_code"] == 0 and fault["address"] is None
    check_result_shape(results[4])


@pytest.mark.parametrize("index", [1, 0])
def test_eadd_to_a_used_epc_page_is_pf_on_that_page(pem_key: str, index: int) -> None:
    ops = build(pem_key, einit=False)
    ops.append({"op": "EADD", "epc": index, "secs_epc": 0, "linaddr": BASE + 3 * PAGE,
                "secinfo": {"flags": 0x203}, "page": {"fill": 1}})
    ops.append({**ops[-1], "epc": 7})                       # a free page: works
    results = run(ops)
    assert outcomes(results) == [*BUILT, "#PF", "SGX_SUCCESS"]
    fault = results[5]["fault"]
    assert fault["vector"] == "PF"
    assert fault["error_code"] & PFEC_SGX
    assert fault["address"] == EPC_BASE + PAGE * index
    check_result_shape(results[5])


def test_many_faults_in_a_row_each_get_a_result() -> None:
    ops = [{"op": "EREMOVE", "epc": 100000}, {"op": "EBLOCK", "epc": 100000},
           {"op": "EGETKEY", "secs_epc": 0}, {"op": "ETRACK", "secs_epc": 0},
           {"op": "EPA", "epc": 0}, {"op": "EPA", "epc": 0}]
    results = run(ops)
    assert len(results) == len(ops)
    for result in results:
        check_result_shape(result)
    assert all(r["fault"] is not None for r in results[:4])
    assert results[2]["fault"]["vector"] == "GP"             # ENCLU outside an enclave
    assert outcomes(results[4:]) == ["SGX_SUCCESS", "#PF"]
    assert results[5]["fault"]["address"] == EPC_BASE


# -- MSRs -------------------------------------------------------------------------------------


def test_wrmsr_lepubkeyhash_with_flexible_launch_control() -> None:
    results = run([
        {"op": "RDMSR", "msr": LEPUBKEYHASH0 + i} for i in range(4)] + [
        {"op": "WRMSR", "msr": LEPUBKEYHASH0, "value": 0x1122334455667788},
        {"op": "RDMSR", "msr": LEPUBKEYHASH0},
        {"op": "RDMSR", "msr": FEATURE_CONTROL},
    ], flc=True)
    assert outcomes(results) == ["SGX_SUCCESS"] * 7
    # A fresh platform holds Intel's launch-enclave key hash.
    assert [r["value"] for r in results[:4]] == list(INTEL_LE_PUBKEY_HASH)
    assert results[0]["value"] == 0xA6053E051270B7AC
    assert results[5]["value"] == 0x1122334455667788
    assert results[6]["value"] == 0x60001                     # LOCKED | SGX_LC | SGX


def test_lepubkeyhash_without_flexible_launch_control_faults() -> None:
    # SDM Vol. 4 Table 2-2: IA32_SGXLEPUBKEYHASHn is readable only when CPUID.(7,0):ECX[30]
    # (SGX_LC) is set, and writable only with IA32_FEATURE_CONTROL.SGX_LC; "flc": false
    # clears both, so RDMSR as well as WRMSR raise #GP(0).
    results = run([
        {"op": "WRMSR", "msr": LEPUBKEYHASH0, "value": 1},
        {"op": "RDMSR", "msr": LEPUBKEYHASH0},
        {"op": "RDMSR", "msr": FEATURE_CONTROL},
    ], flc=False)
    assert outcomes(results) == ["#GP", "#GP", "SGX_SUCCESS"]
    assert results[0]["fault"]["error_code"] == 0
    assert results[2]["value"] == 0x40001                     # LOCKED | SGX


def test_lepubkeyhash_readable_but_locked_without_sgx_lc_in_feature_control() -> None:
    results = run([
        {"op": "RDMSR", "msr": LEPUBKEYHASH0},
        {"op": "WRMSR", "msr": LEPUBKEYHASH0, "value": 1},
        {"op": "WRMSR", "msr": FEATURE_CONTROL, "value": 0x60001},
    ], flc=True, feature_control=0x40001)
    assert outcomes(results) == ["SGX_SUCCESS", "#GP", "#GP"]
    assert results[0]["value"] == 0xA6053E051270B7AC


def test_einit_sets_the_hash_msrs_to_the_signer_with_flc(pem_key: str) -> None:
    results = run([*build(pem_key),
                   *({"op": "RDMSR", "msr": LEPUBKEYHASH0 + i} for i in range(4))])
    signer = bytes.fromhex(results[5]["mrsigner"])
    values = [r["value"] for r in results[6:]]
    assert b"".join(v.to_bytes(8, "little") for v in values) == signer


def test_feature_control_zero_makes_encls_and_enclu_undefined() -> None:
    results = run([
        {"op": "ECREATE", "epc": 0, "secs": {"size": SIZE, "baseaddr": BASE,
                                             "ssaframesize": 1}},
        {"op": "EPA", "epc": 1},
        {"op": "EGETKEY", "secs_epc": 0},
        {"op": "RDMSR", "msr": FEATURE_CONTROL},
    ], feature_control=0)
    assert outcomes(results) == ["#UD", "#UD", "#UD", "SGX_SUCCESS"]
    assert results[3]["value"] == 0


# -- determinism ------------------------------------------------------------------------------


def _seeded(key: str) -> list[dict[str, Any]]:
    return [*build(key),
        {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 4, "keypolicy": 1}},
        {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 4, "keypolicy": 2}},
        {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 3}},
        {"op": "EREPORT", "secs_epc": 0},
        {"op": "EPA", "epc": 10},
        {"op": "EBLOCK", "epc": 3},
        {"op": "ETRACK", "secs_epc": 0},
        {"op": "EWB", "epc": 3, "va_epc": 10},
    ]


def test_same_seed_and_key_give_identical_outputs(pem_key: str) -> None:
    first = run(_seeded(pem_key), seed="same")
    second = run(_seeded(pem_key), seed="same")
    assert outcomes(first) == BUILT + ["SGX_SUCCESS"] * 9
    assert first == second


def test_seed_changes_keys_but_not_measurements(pem_key: str) -> None:
    one = run(_seeded(pem_key), seed="one")
    two = run(_seeded(pem_key), seed="two")
    assert outcomes(one) == outcomes(two)
    assert one[5]["mrenclave"] == two[5]["mrenclave"]
    assert one[5]["mrsigner"] == two[5]["mrsigner"]
    for i in (6, 7, 8):
        assert one[i]["key"] != two[i]["key"]
    assert one[9]["report"] != two[9]["report"]              # the MAC is keyed by the seed
    # ...the body is not, but for CPUSVN (bytes 0..15), which the seed also fixes.
    assert one[9]["report"][32:768] == two[9]["report"][32:768]
    assert one[13]["page"] != two[13]["page"]


def test_run_script_is_reentrant(pem_key: str) -> None:
    """Each call gets a fresh platform: the same EPC pages are free again in the next run."""
    first = run(build(pem_key, einit=False))
    again = run(build(pem_key, einit=False))
    assert outcomes(first) == outcomes(again) == BUILT


# -- SGX2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sgx2", [True, False])
def test_eaug_needs_sgx2(pem_key: str, sgx2: bool) -> None:
    results = run([*build(pem_key),
        {"op": "EAUG", "epc": 4, "secs_epc": 0, "linaddr": BASE + 3 * PAGE},
        {"op": "EMODPR", "epc": 3, "secinfo": {"flags": 0x201}},
        {"op": "EPA", "epc": 9},
    ], sgx2=sgx2)
    expected = "SGX_SUCCESS" if sgx2 else "#GP"
    assert outcomes(results[6:]) == [expected, expected, "SGX_SUCCESS"]


# -- EINIT: SIGSTRUCT and EINITTOKEN ----------------------------------------------------------


def test_sigstruct_tampering_and_wrong_enclavehash(pem_key: str) -> None:
    results = run([*build(pem_key, einit=False),
        einit_op(pem_key, after_signing={"exponent": 65537}),
        einit_op(pem_key, after_signing={"signature": "00" * 384}),
        einit_op(pem_key, after_signing={"isvprodid": 9}),
        einit_op(pem_key, enclavehash="11" * 32),
        einit_op(pem_key, enclavehash="auto"),
        einit_op(pem_key),
    ])
    assert outcomes(results[5:]) == [
        "SGX_INVALID_SIG_STRUCT", "SGX_INVALID_SIGNATURE", "SGX_INVALID_SIGNATURE",
        "SGX_INVALID_MEASUREMENT", "SGX_SUCCESS", "#GP"]
    assert all(r["zf"] for r in results[5:9])
    assert [r["code"] for r in results[5:9]] == [1, 8, 8, 4]


def test_enclavehash_auto_is_the_measurement(pem_key: str) -> None:
    first = run(build(pem_key))
    mrenclave = first[5]["mrenclave"]
    results = run([*build(pem_key, einit=False), einit_op(pem_key, enclavehash=mrenclave)])
    assert outcome(results[5]) == "SGX_SUCCESS"
    assert results[5]["mrenclave"] == mrenclave


TOKEN_ATTRIBUTES = {"flags": 4, "xfrm": 3}


def _token(**fields: Any) -> dict[str, Any]:
    return {"valid": 1, "mac": "auto", "mrenclave": "auto", "mrsigner": "auto",
            "attributes": TOKEN_ATTRIBUTES, **fields}


def test_einittoken_path_without_flexible_launch_control(pem_key: str) -> None:
    # flc false: the hash MSRs keep Intel's LE key hash, so the signer needs a token.
    ops = [*build(pem_key, einit=False),
        einit_op(pem_key),
        {**einit_op(pem_key), "einittoken": _token(mac="00" * 16)},
        {**einit_op(pem_key), "einittoken": _token(valid=0)},
        {**einit_op(pem_key), "einittoken": _token(mrenclave="11" * 32)},
        {**einit_op(pem_key), "einittoken": _token()},
        {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 4}},
    ]
    results = run(ops, flc=False)
    assert outcomes(results[5:]) == [
        "SGX_INVALID_EINITTOKEN", "SGX_INVALID_EINITTOKEN", "SGX_INVALID_EINITTOKEN",
        "SGX_INVALID_MEASUREMENT", "SGX_SUCCESS", "SGX_SUCCESS"]
    assert results[5]["code"] == 16
    assert is_hex(results[9]["mrenclave"], 64)


def test_einittoken_with_flc_keeping_the_hash_msrs(pem_key: str) -> None:
    ops = [*build(pem_key, einit=False),
        {**einit_op(pem_key), "lehash": "keep"},
        {**einit_op(pem_key), "lehash": "keep", "einittoken": _token(mac="ff" * 16)},
        {**einit_op(pem_key), "lehash": "keep", "einittoken": _token()},
    ]
    assert outcomes(run(ops)[5:]) == [
        "SGX_INVALID_EINITTOKEN", "SGX_INVALID_EINITTOKEN", "SGX_SUCCESS"]


def test_einittoken_auto_mac_on_the_default_platform(pem_key: str) -> None:
    # flc (the default): the runner writes the signer's hash into the MSRs before EINIT, and
    # the "auto" MAC is computed with the MSRs EINIT will see.
    results = run([*build(pem_key, einit=False),
                   {**einit_op(pem_key), "einittoken": _token()},
                   {**einit_op(pem_key), "einittoken": _token()}])
    assert outcomes(results[5:]) == ["SGX_SUCCESS", "#GP"]


@pytest.mark.parametrize("flc", [False, True])
def test_minimal_einittoken_from_the_contract(pem_key: str, flc: bool) -> None:
    # Token ATTRIBUTES (and MASKEDATTRIBUTESLE) default to the enclave's SECS.ATTRIBUTES.
    minimal = {"valid": 1, "mac": "auto", "mrenclave": "auto", "mrsigner": "auto"}
    other = {"flags": 4, "xfrm": 7}                          # not the SECS's ATTRIBUTES
    results = run([*build(pem_key, einit=False),
                   {**einit_op(pem_key), "einittoken": {**minimal, "attributes": other}},
                   {**einit_op(pem_key), "einittoken": {**minimal, "attributes": "auto"}},
                   {**einit_op(pem_key), "einittoken": minimal}], flc=flc)
    assert outcomes(results[5:]) == ["SGX_INVALID_ATTRIBUTE", "SGX_SUCCESS", "#GP"]


# -- ELDU "evicted" ---------------------------------------------------------------------------


def test_evicted_must_name_an_ewb_that_wrote_a_page(pem_key: str) -> None:
    # Paging works on an enclave before EINIT, which keeps this test free of key loads.
    prefix = [*build(pem_key, einit=False), {"op": "EPA", "epc": 10},
              {"op": "EBLOCK", "epc": 3}, {"op": "EWB", "epc": 3, "va_epc": 10}]  # 5, 6, 7
    assert outcome(run(prefix)[7]) == "SGX_NOT_TRACKED"
    eldu = {"op": "ELDU", "epc": 4, "va_epc": 10, "secs_epc": 0}
    with pytest.raises(ScriptError) as exc:
        run([*prefix, {**eldu, "evicted": 5}])
    assert str(exc.value) == "ops[8].evicted: ops[5] is not an EWB that wrote a page"
    with pytest.raises(ScriptError) as exc:
        run([*prefix, {**eldu, "evicted": 7}])               # an EWB that wrote nothing
    assert str(exc.value) == "ops[8].evicted: ops[7] is not an EWB that wrote a page"
    with pytest.raises(ScriptError) as exc:
        run([*prefix, {**eldu, "evicted": 8}])               # itself / the future
    assert str(exc.value) == "ops[8].evicted: 8 is out of range [0, 7]"


def test_unknown_operands_are_refused_before_the_script_runs() -> None:
    # ops[0] would fail while running (its "evicted" names no EWB); the unknown operand of
    # ops[1] is reported instead, because operand names are checked up front.
    with pytest.raises(ScriptError) as exc:
        run([{"op": "ELDU", "epc": 1, "va_epc": 0, "evicted": 0},
             {"op": "EPA", "epc": 2, "secs_epc": 0}])
    assert str(exc.value) == "ops[1].secs_epc: not an operand of EPA"


def test_eldu_with_explicit_pcmd_and_page(pem_key: str) -> None:
    ops = [*build(pem_key, flags=6, einit=False),
           {"op": "EPA", "epc": 10}, {"op": "EBLOCK", "epc": 2},
           {"op": "ETRACK", "secs_epc": 0},
           {"op": "EWB", "epc": 2, "va_epc": 10, "va_slot": 3}]                 # 8
    ewb = run(ops)[8]
    assert ewb["status"] == "SGX_SUCCESS"
    ops.append({"op": "ELDU", "epc": 2, "va_epc": 10, "va_slot": 3, "secs_epc": 0,
                "linaddr": ewb["linaddr"], "pcmd": ewb["pcmd"], "page": {"hex": ewb["page"]}})
    ops.append({"op": "EDBGRD", "epc": 2})
    results = run(ops)
    assert results[8] == ewb
    assert outcomes(results[9:]) == ["SGX_SUCCESS", "SGX_SUCCESS"]
    assert results[10]["data"] == "ab" * 8


# -- ENCLU operands --------------------------------------------------------------------------


@pytest.mark.parametrize("op", [
    {"op": "EGETKEY", "secs_epc": 0, "keyrequest": {"keyname": 4}},
    {"op": "EREPORT", "secs_epc": 0, "reportdata": "00" * 64, "targetinfo": {}},
    {"op": "EACCEPT", "secs_epc": 0, "linaddr": BASE, "secinfo": {"flags": 0x20B}},
    {"op": "EACCEPTCOPY", "secs_epc": 0, "linaddr": BASE, "src": BASE + PAGE,
     "secinfo": {"flags": 0x203}},
    {"op": "EMODPE", "secs_epc": 0, "linaddr": BASE, "secinfo": {"flags": 0x207}},
], ids=["EGETKEY", "EREPORT", "EACCEPT", "EACCEPTCOPY", "EMODPE"])
def test_enclu_before_einit_faults_with_all_its_operands(op: dict[str, Any]) -> None:
    """Outside an initialised enclave ENCLU faults (#GP); operands the leaf never got to read
    are still operands, not "unknown keys"."""
    results = run([op])
    assert outcomes(results) == ["#GP"]
    assert results[0]["fault"]["error_code"] == 0


def test_tcs_beyond_the_epc_is_a_script_error(pem_key: str) -> None:
    with pytest.raises(ScriptError) as exc:
        run([*build(pem_key), {"op": "EGETKEY", "secs_epc": 0, "tcs": 99999}], epc="1M")
    assert str(exc.value) == "ops[6].tcs: 99999 is out of range [0, 255]"


def test_tcs_operand_must_be_a_tcs_of_the_enclave(pem_key: str) -> None:
    results = run([*build(pem_key),
        {"op": "EGETKEY", "secs_epc": 0, "tcs": 1, "keyrequest": {"keyname": 4}}])
    assert outcome(results[6]) == "SGX_SUCCESS"
    with pytest.raises(ScriptError) as exc:
        run([*build(pem_key), {"op": "EGETKEY", "secs_epc": 0, "tcs": 2}])
    assert str(exc.value) == "ops[6].tcs: EPC page 2 is not a TCS of enclave 0"


# -- through the console script ---------------------------------------------------------------


def test_cli_runs_the_quickstart_example() -> None:
    proc = cli("isa", str(QUICKSTART))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    results = json.loads(proc.stdout)
    assert outcomes(results) == QUICKSTART_STATUSES
    for result in results:
        check_result_shape(result)
    assert is_hex(results[5]["mrenclave"], 64) and is_hex(results[5]["mrsigner"], 64)
    assert is_hex(results[6]["key"], 32)
    assert results[8]["report"][128:192] == results[5]["mrenclave"]
    assert is_hex(results[13]["pcmd"], 256) and is_hex(results[13]["page"], 8192)


def test_cli_entry_point_matches_run_script(pem_key: str, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("vsgx")
    if not exe.exists():
        pytest.skip("no vsgx console script next to the interpreter")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"platform": {"seed": "cli"}, "ops": _seeded(pem_key)}))
    proc = subprocess.run([str(exe), "isa", "--compact", str(script)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.count("\n") == 1
    assert json.loads(proc.stdout) == run_script(script.read_text())


def test_cli_malformed_op_after_good_ones_prints_no_results() -> None:
    proc = cli("isa", "-", stdin=json.dumps({"ops": [
        {"op": "EPA", "epc": 0}, {"op": "EPA", "epc": 1}, {"op": "EPA", "epc": "two"}]}))
    assert_one_line_error(proc)
    assert proc.stderr == "vsgx isa: ops[2].epc: expected an integer\n"
