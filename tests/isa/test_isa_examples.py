"""Every script in ``examples/isa`` runs, and each op ends the way the example means it to.

The scripts stay plain contract input (no expectation keys, which the runner would refuse); the
expected outcome of each op lives here, keyed by file name. A new example must add its list.

* ``quickstart.json`` — build, measure, EINIT, EGETKEY/EREPORT, evict and reload a page.
* ``paging.json`` — EWB's preconditions (EBLOCK, then ETRACK), reading an evicted page faults,
  ELDU restores the contents, replaying the same EWB output is refused (the VA slot was
  cleared), ELDB, and a page whose VA page was removed can never come back.
* ``sgx2.json`` — EAUG + EACCEPT (and the #GP for an EACCEPT without PENDING), EACCEPTCOPY,
  EMODPR + ETRACK + EACCEPT (not before ETRACK), EMODPE, EMODT to PT_TRIM + ETRACK + EACCEPT +
  EREMOVE, and reusing the trimmed address with EAUG.
* ``launch-control.json`` — the LE public-key hash MSRs on a flexible-launch-control
  platform: Intel's reset value, IA32_FEATURE_CONTROL locked, EINIT refused without a token
  while the MSRs keep Intel's hash ("lehash": "keep"), a token with a wrong MAC refused, a
  valid token accepted, the default behaviour (MSRs set to the signer), and an EINIT refused
  after the MSRs are pointed elsewhere.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from vsgx.arch import INTEL_LE_PUBKEY_HASH
from vsgx.isa import EPC_BASE, run_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "isa"

OK = "SGX_SUCCESS"

EXPECTED: dict[str, list[str]] = {
    "quickstart.json": [
        OK, OK, OK, OK, OK,                                   # ECREATE, EADD x2, EEXTEND, EADD
        OK,                                                   # EINIT
        OK, "SGX_INVALID_ISVSVN",                             # EGETKEY, EGETKEY(isvsvn > own)
        OK,                                                   # EREPORT
        OK, OK, "SGX_NOT_TRACKED", OK, OK,                    # EPA EBLOCK EWB ETRACK EWB
        OK, "SGX_MAC_COMPARE_FAIL",                           # ELDU, replayed ELDU
    ],
    "paging.json": [
        OK, OK, OK, OK, OK, OK,                               # build + EINIT
        OK, "SGX_PAGE_NOT_BLOCKED", OK, "SGX_NOT_TRACKED",    # EPA, EWB, EBLOCK, EWB
        OK, OK, "#PF",                                        # ETRACK, EWB, EDBGRD (evicted)
        OK, OK, "SGX_MAC_COMPARE_FAIL",                       # ELDU, EDBGRD, replayed ELDU
        OK, OK, OK, OK,                                       # EBLOCK ETRACK EWB ELDB
        OK, OK, OK, "#PF",                                    # ETRACK EWB EREMOVE(VA) ELDU
    ],
    "sgx2.json": [
        OK, OK, OK, OK, OK, OK,                               # build + EINIT
        OK, "#GP", OK, OK,                                    # EAUG, EACCEPT w/o PENDING, ...
        OK, OK, OK,                                           # EAUG EACCEPTCOPY EDBGRD
        OK, "SGX_NOT_TRACKED", OK, OK, OK,                    # EMODPR EACCEPT ETRACK ... EMODPE
        OK, OK, OK, OK,                                       # EMODT ETRACK EACCEPT EREMOVE
        OK, OK,                                               # EAUG EACCEPT (address reused)
    ],
    "launch-control.json": [
        OK, OK, OK, OK, OK, "#GP",                            # RDMSR x5, WRMSR feature control
        OK, OK, OK,                                           # ECREATE EADD EADD
        "SGX_INVALID_EINITTOKEN", "SGX_INVALID_EINITTOKEN",   # no token; token with bad MAC
        OK, OK,                                               # valid token; EGETKEY
        OK, OK, OK, OK, OK,                                   # 2nd enclave, default lehash
        OK, OK, OK, "SGX_INVALID_EINITTOKEN",                 # 3rd enclave, MSR rewritten
    ],
}


def outcome(result: dict[str, Any]) -> str:
    if result["fault"] is not None:
        return "#" + result["fault"]["vector"]
    return str(result["status"])


@cache
def results_of(name: str) -> list[dict[str, Any]]:
    return run_script((EXAMPLES / name).read_text(encoding="utf-8"))


def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.json"))


def test_every_example_has_expected_outcomes() -> None:
    assert set(example_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", example_names())
def test_example_outcomes(name: str) -> None:
    doc = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    results = results_of(name)
    assert [r["op"] for r in results] == [op["op"] for op in doc["ops"]]
    assert [outcome(r) for r in results] == EXPECTED[name]
    for result in results:
        assert {"op", "status", "code", "fault"} <= set(result)
        if result["fault"] is None:
            assert isinstance(result["code"], int)
            assert (result["code"] == 0) == (result["status"] == OK)


def test_paging_example_restores_the_page_and_refuses_the_replay() -> None:
    results = results_of("paging.json")
    assert results[12]["fault"]["address"] == EPC_BASE + 4 * 4096    # the evicted page
    assert results[14]["data"] == "ab" * 8                           # reloaded into page 5
    assert results[11]["linaddr"] == results[18]["linaddr"] == results[21]["linaddr"]
    assert len({results[11]["page"], results[18]["page"], results[21]["page"]}) == 3


def test_sgx2_example_data() -> None:
    results = results_of("sgx2.json")
    assert results[9]["data"] == "00" * 8                            # EAUG'd pages are zero
    assert results[12]["data"] == "5a" * 8                           # EACCEPTCOPY's copy


def test_launch_control_example_msrs() -> None:
    results = results_of("launch-control.json")
    assert results[0]["value"] == 0x60001                            # locked, SGX, SGX_LC
    assert [r["value"] for r in results[1:5]] == list(INTEL_LE_PUBKEY_HASH)
    signer = bytes.fromhex(results[11]["mrsigner"])
    assert results[16]["value"] == int.from_bytes(signer[:8], "little")
    # "key": "generate" is one key per run, and MRSIGNER-policy seal keys follow the signer.
    assert results[15]["mrsigner"] == results[11]["mrsigner"]
    assert results[15]["mrenclave"] != results[11]["mrenclave"]
    assert results[17]["key"] == results[12]["key"]
