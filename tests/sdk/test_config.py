"""The enclave configuration: TOML parsing, validation messages and the embedded JSON form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsgx.arch import AttributesFlags
from vsgx.sdk import ConfigError, EnclaveConfig


def test_defaults_and_sizes() -> None:
    cfg = EnclaveConfig.from_toml('[enclave]\ntcs_count = 4\nheap_size = "2M"\n'
                                  'stack_size = 65536\n')
    assert (cfg.tcs_count, cfg.heap_size, cfg.stack_size) == (4, 2 << 20, 64 << 10)
    assert cfg.attribute_flags == AttributesFlags.MODE64BIT | AttributesFlags.DEBUG
    production = cfg.with_changes(debug=False, provisionkey=True)
    assert production.attribute_flags == AttributesFlags.MODE64BIT | AttributesFlags.PROVISIONKEY


@pytest.mark.parametrize(("text", "message"), [
    ("[enclave]\nthreads = 2", "unknown key 'threads'"),
    ("[enclave]\nheap_size = \"1.5K\"", "heap_size must be a multiple of 4K"),
    ("[enclave]\nheap_size = \"lots\"", "heap_size: invalid size 'lots'"),
    ("[enclave]\ndebug = 1", "debug must be true or false"),
    ("[enclave]\ntcs_count = true", "tcs_count must be a number"),
    ("[enclave]\ntcs_count = 0", "tcs_count must be in"),
    ("[enclave]\nisvsvn = 65536", "isvsvn must be in"),
    ("[enclave]\nvendor = 5", "vendor must be 0 or 0x8086"),
    ("[enclave]\nxfrm = 7\nstack_size = 0", "stack_size must be at least 4K"),
    ("[enclave]\nxfrm = 5", "xfrm must include x87 and SSE"),
    ("[enclave]\nxfrm = 0x1F", ""),
    ("[enclave]\nssa_frames = \"2\"", "ssa_frames must be an integer"),
    ("[enclave", "Expected ']'"),
    ("[other]\nx = 1", "unknown table(s) other"),
    ("enclave = 3", "'enclave' must be a table"),
])
def test_errors_name_the_key(text: str, message: str) -> None:
    if not message:
        EnclaveConfig.from_toml(text)
        return
    with pytest.raises(ConfigError, match="^enclave.toml: " + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        EnclaveConfig.from_toml(text)


configs = st.builds(
    EnclaveConfig,
    tcs_count=st.integers(1, 64), ssa_frames=st.integers(1, 16),
    stack_size=st.integers(1, 64).map(lambda n: n * 4096),
    heap_size=st.integers(0, 1024).map(lambda n: n * 4096),
    isvprodid=st.integers(0, 0xFFFF), isvsvn=st.integers(0, 0xFFFF), debug=st.booleans(),
    miscselect=st.integers(0, 0xFFFF_FFFF), vendor=st.sampled_from([0, 0x8086]))


@given(configs)
def test_embedded_json_round_trips(cfg: EnclaveConfig) -> None:
    assert EnclaveConfig.from_json(cfg.to_json(), where="x") == cfg


def test_malformed_embedded_json() -> None:
    with pytest.raises(ConfigError, match="x: malformed embedded configuration"):
        EnclaveConfig.from_json(b"{", where="x")
    with pytest.raises(ConfigError, match="x: malformed embedded configuration"):
        EnclaveConfig.from_json(b"[1]", where="x")
