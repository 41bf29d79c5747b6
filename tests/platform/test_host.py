"""Host profiles, persistent host identities and the shared host EPC pool."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.arch import PAGE_SIZE
from vsgx.cpu.epc import EpcSection
from vsgx.platform.host import (
    PROFILES,
    EpcPoolExhausted,
    HostEpcPool,
    HostEpcSection,
    HostError,
    data_dir,
    forget_hosts,
    open_host,
    profile,
)


def test_profiles_describe_what_the_issue_asks_for() -> None:
    server, client = PROFILES["icelake-sp"], PROFILES["coffeelake"]
    assert server.cpuid(0x12, 0)[0] & 0b11 == 0b11  # SGX1 + SGX2
    assert server.sgx_lc_available and server.numa_nodes == 2
    assert [s.node for s in server.epc_sections] == [0, 1]
    assert server.cpuid(0x12, 0)[1] & 1  # EXINFO
    assert server.cpuid(0x12, 0)[3] >> 8 & 0xFF == 57
    assert client.cpuid(0x12, 0)[0] & 0b11 == 0b01  # SGX1 only
    assert client.epc_size == 93 * 2**20 + 2**19  # 93.5 MiB of a 128 MiB PRM
    assert client.lc_locked and not client.sgx_lc_available
    # The CPUID instruction still reports FLC; KVM does not offer it to guests.
    assert client.cpuid(0x7, 0)[2] >> 30 & 1 and not client.kvm_cpuid(0x7, 0)[2] >> 30 & 1


def test_host_epc_sections_encode_as_the_sdm_says() -> None:
    server = PROFILES["icelake-sp"]
    for index, section in enumerate(server.epc_sections):
        eax, ebx, ecx, edx = server.cpuid(0x12, 2 + index)
        assert eax & 0xF == 1
        assert (eax & 0xFFFFF000) | (ebx & 0xFFFFF) << 32 == section.base
        assert (ecx & 0xFFFFF000) | (edx & 0xFFFFF) << 32 == section.size
    assert server.cpuid(0x12, 2 + len(server.epc_sections)) == (0, 0, 0, 0)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(HostError, match=r"unknown host profile 'epyc' \(known profiles: "
                                        r"coffeelake, icelake-sp, no-sgx\)"):
        profile("epyc")


def test_a_host_identity_persists_with_mode_0600(_private_hosts: Path) -> None:
    host = open_host("lab1", "coffeelake")
    path = data_dir() / "hosts" / "lab1.json"
    assert host.path == path and stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["profile"] == "coffeelake" and len(bytes.fromhex(doc["seed"])) == 32
    secrets = host.secrets
    forget_hosts()
    again = open_host("lab1")
    assert again is not host and again.secrets == secrets
    assert again.profile.name == "coffeelake"


def test_the_same_host_keeps_its_keys_in_another_process(_private_hosts: Path) -> None:
    key = open_host("lab2").secrets.device_root_key.hex()
    code = ("from vsgx.platform.host import open_host;"
            "print(open_host('lab2').secrets.device_root_key.hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "XDG_DATA_HOME": str(_private_hosts)})
    assert out.stdout.strip() == key


def test_two_hosts_have_different_keys_and_one_name_is_one_object() -> None:
    a, b = open_host("a"), open_host("b")
    assert a.secrets != b.secrets
    assert open_host("a") is a


def test_hosts_of_one_profile_share_cpusvn_and_differ_in_their_fuses() -> None:
    """CPUSVN is the processor's TCB version, a property of the model and its microcode: two
    hosts of one profile have the same one, and only their fused keys differ."""
    a, b = open_host("a"), open_host("b")
    other = open_host("old", "coffeelake")
    assert a.secrets.cpusvn == b.secrets.cpusvn != other.secrets.cpusvn
    assert a.secrets.seal_fuses != b.secrets.seal_fuses
    assert a.secrets.device_root_key != b.secrets.device_root_key


def test_a_host_does_not_change_its_processor() -> None:
    open_host("box", "icelake-sp")
    with pytest.raises(HostError, match="host 'box' is a icelake-sp host, not coffeelake"):
        open_host("box", "coffeelake")


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "-x", "a/b", "x" * 65, "a b"])
def test_bad_host_names_are_refused(name: str) -> None:
    with pytest.raises(HostError, match="is not valid"):
        open_host(name)


def test_a_damaged_identity_is_reported_not_replaced(_private_hosts: Path) -> None:
    path = data_dir() / "hosts" / "bad.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(HostError, match=r"host identity .*bad.json is damaged"):
        open_host("bad")
    assert path.read_text() == "{not json"


def test_throwaway_hosts_write_nothing(_private_hosts: Path) -> None:
    host = open_host("tmp", persist=False)
    assert host.path is None and not (data_dir() / "hosts").exists()


def _section(pool: HostEpcPool, pages: int, nodes: tuple[int, ...] = (),
             strict: bool = True) -> EpcSection:
    return EpcSection(0x1_0000_0000, pages * PAGE_SIZE,
                      backing=pool.binding(nodes, strict=strict))


def test_bound_sections_draw_only_from_their_nodes() -> None:
    pool = HostEpcPool((HostEpcSection(0, 4 * PAGE_SIZE, 0), HostEpcSection(0, 8 * PAGE_SIZE, 1)))
    a = _section(pool, 6, (0,))
    with pytest.raises(EpcPoolExhausted, match="5 page\\(s\\) wanted, 4 free on host node 0"):
        a.touch(np.arange(5))
    a.touch(np.arange(4))
    assert pool.used == {0: 4, 1: 0}
    b = _section(pool, 10, (0,), strict=False)  # preferred: node 0 first, then others
    b.touch(np.arange(3))
    assert pool.used == {0: 4, 1: 3} and pool.drawn_by(b) == {1: 3}
    a.discard()
    b.discard()
    assert pool.used == {0: 0, 1: 0}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7), st.booleans()), max_size=30))
def test_pool_accounting_never_leaks_or_overdraws(ops: list[tuple[int, int, bool]]) -> None:
    pool = HostEpcPool((HostEpcSection(0, 6 * PAGE_SIZE, 0), HostEpcSection(0, 6 * PAGE_SIZE, 1)))
    sections = [_section(pool, 8, (0,)), _section(pool, 8, (1,)), _section(pool, 8)]
    for which, page, discard in ops:
        s = sections[which]
        if discard:
            s.discard()
        else:
            try:
                s.touch_one(page)
            except EpcPoolExhausted:
                pass
        assert all(0 <= pool.used[n] <= pool.capacity[n] for n in pool.capacity)
        assert sum(pool.used.values()) == sum(x.committed_pages for x in sections)
    for s in sections:
        s.close()
    assert pool.used == {0: 0, 1: 0}


def test_a_binding_outlives_a_discard() -> None:
    pool = HostEpcPool((HostEpcSection(0, 4 * PAGE_SIZE, 0), HostEpcSection(0, 8 * PAGE_SIZE, 1)))
    a = _section(pool, 6, (0,))
    a.touch(np.arange(2))
    a.discard()  # a reset of a lazily committed vEPC gives every page back
    with pytest.raises(EpcPoolExhausted, match="on host node 0"):
        a.touch(np.arange(5))  # still bound to node 0 afterwards
    assert pool.used == {0: 0, 1: 0}
