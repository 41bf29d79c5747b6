"""``vsgx.platform.parse_qemu_args``: the seed page's command lines, a table of malformed
command lines with their exact messages (``platform_cases.py``; the QEMU-sourced ones are
replayed on real QEMU by ``test_platform_qemu_oracle.py``), QemuOpts tokenizer properties,
and JSON forms equal to their key=value forms."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st
from platform_cases import MALFORMED, Case
from seeds import SEED_NUMA, SEED_SINGLE

from vsgx.platform import (
    BackendType,
    CpuConfig,
    EpcSection,
    HostMemPolicy,
    MachineConfig,
    MachineType,
    MemoryBackend,
    MemoryConfig,
    NumaNode,
    QemuOptionError,
    QmpConfig,
    SgxFeature,
    SmpConfig,
    parse_qemu_args,
)
from vsgx.platform.qemuopts import QemuOpt, format_opts, split_opts
from vsgx.sizes import SizeError, parse_size, strtosz

MIB = 1 << 20
GIB = 1 << 30

def parse(line: str) -> MachineConfig:
    return parse_qemu_args(shlex.split(line))


def test_seed_single_section() -> None:
    mem1 = MemoryBackend(BackendType.EPC, "mem1", 64 * MIB, prealloc=True, share=True)
    assert parse(SEED_SINGLE) == MachineConfig(
        machine=MachineType.PC, memory=MemoryConfig(size=4 * GIB),
        cpu=CpuConfig("host", ((SgxFeature.SGX_PROVISIONKEY, True),)),
        objects=(mem1,), sgx_epc=(EpcSection(mem1, 0),))


def test_seed_numa_example() -> None:
    config = parse(SEED_NUMA)
    node0 = MemoryBackend(BackendType.RAM, "node0", 2 * GIB, host_nodes=(0,),
                          policy=HostMemPolicy.BIND)
    node1 = MemoryBackend(BackendType.RAM, "node1", 2 * GIB, host_nodes=(1,),
                          policy=HostMemPolicy.BIND)
    mem0 = MemoryBackend(BackendType.EPC, "mem0", 64 * MIB, prealloc=True, share=True,
                         host_nodes=(0,), policy=HostMemPolicy.BIND)
    mem1 = MemoryBackend(BackendType.EPC, "mem1", 28 * MIB, prealloc=True, share=True,
                         host_nodes=(1,), policy=HostMemPolicy.BIND)
    assert config == MachineConfig(
        machine=MachineType.Q35, memory=MemoryConfig(size=4 * GIB),
        smp=SmpConfig(cpus=4, cores=4, maxcpus=4),
        cpu=CpuConfig("host", ((SgxFeature.SGX_PROVISIONKEY, True),)),
        objects=(node0, mem0, node1, mem1),
        numa_nodes=(NumaNode(0, (0, 1), node0, 2 * GIB), NumaNode(1, (2, 3), node1, 2 * GIB)),
        sgx_epc=(EpcSection(mem0, 0), EpcSection(mem1, 1)))
    assert [(s.node, s.size) for s in config.sgx_epc] == [(0, 67108864), (1, 29360128)]


def test_seed_numa_example_needs_four_cpus() -> None:
    """As printed on the seed page (no ``-smp``) QEMU refuses the NUMA example: one vCPU
    cannot be listed in ``cpus=0-1`` (checked on QEMU 7.2 with RAM backends)."""
    with pytest.raises(QemuOptionError) as caught:
        parse(SEED_NUMA.replace(" -smp 4", ""))
    assert caught.value.message == ("-numa node,nodeid=0,cpus=0-1,memdev=node0: CPU index (1) "
                                    "should be smaller than maxcpus (1)")


@pytest.mark.parametrize("case", MALFORMED, ids=[case.args for case in MALFORMED])
def test_malformed(case: Case) -> None:
    with pytest.raises(QemuOptionError) as caught:
        parse(case.args)
    assert caught.value.message == case.message
    assert str(caught.value) == case.message
    assert isinstance(caught.value, ValueError)


def test_malformed_table_size() -> None:
    assert len(MALFORMED) >= 30
    assert len({case.args for case in MALFORMED}) == len(MALFORMED)


def test_render_has_prefix_hint_and_followups() -> None:
    with pytest.raises(QemuOptionError) as caught:
        parse("-m 4X")
    assert caught.value.render() == (
        "qemu-system-x86_64: -m 4X: Parameter 'size' expects a non-negative number below 2^64\n"
        "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
        "and exabytes, respectively.\n")
    with pytest.raises(QemuOptionError) as caught:
        parse("-qmp foo:bar")
    assert caught.value.render() == (
        "qemu-system-x86_64: -qmp foo:bar: 'foo:bar' is not a valid char driver\n"
        "qemu-system-x86_64: -qmp foo:bar: parse error: foo:bar\n")


# --- accepted syntax ----------------------------------------------------------------------


def test_defaults() -> None:
    assert parse_qemu_args([]) == MachineConfig()
    assert MachineConfig().memory.size == 128 * MIB
    assert MachineConfig().cpu.model == "qemu64"


@pytest.mark.parametrize("text", ["on", "yes", "true", "y", "prealloc"])
def test_booleans_true(text: str) -> None:
    option = "prealloc" if text == "prealloc" else f"prealloc={text}"
    config = parse(f"-object memory-backend-ram,id=a,size=1M,{option}")
    assert config.objects[0].prealloc is True


@pytest.mark.parametrize("text", ["off", "no", "false", "n"])
def test_booleans_false(text: str) -> None:
    config = parse(f"-object memory-backend-epc,id=a,size=1M,share={text}")
    assert config.objects[0].share is False


def test_noflag_short_form() -> None:
    config = parse("-object memory-backend-ram,id=a,size=1M,prealloc=on,noprealloc")
    assert config.objects[0].prealloc is False


@pytest.mark.parametrize(("text", "size"), [
    ("1024", GIB), ("4G", 4 * GIB), ("1.5G", 3 * GIB // 2), ("0x100M", 256 * MIB),
    ("size=2g", 2 * GIB), ("1023k", 1024 * 1024), ("0", 128 * MIB), (" 1G", GIB),
])
def test_memory_sizes(text: str, size: int) -> None:
    assert parse(f"-m '{text}'").memory.size == size


def test_repeated_options_merge() -> None:
    config = parse("-m 1G -m slots=2,maxmem=4G -M pc -machine q35 -smp 2 -smp cores=2")
    assert config.memory == MemoryConfig(size=GIB, slots=2, maxmem=4 * GIB)
    assert config.machine is MachineType.Q35
    assert config.smp == SmpConfig(cpus=2, cores=2, maxcpus=2)
    # memory hotplug without -numa makes QEMU create node 0 holding all RAM
    assert config.numa_nodes == (NumaNode(0, (), None, GIB),)


def test_later_scalar_wins_and_first_id_counts() -> None:
    config = parse("-object memory-backend-ram,id=a,size=1M,size=2M,id=b")
    assert config.objects[0].id == "a"
    assert config.objects[0].size == 2 * MIB


def test_host_nodes_accumulate() -> None:
    config = parse("-object memory-backend-ram,id=a,size=1M,host-nodes=0-2,host-nodes=5,"
                   "policy=interleave")
    assert config.objects[0].host_nodes == (0, 1, 2, 5)
    assert config.objects[0].policy is HostMemPolicy.INTERLEAVE


def test_escaped_comma_in_value() -> None:
    assert parse("-name guest=my,,vm").name == "my,vm"
    assert parse("-name vm1").name == "vm1"


def test_cpu_features_order() -> None:
    """``feat=on|off`` first, then every ``+feat``, then every ``-feat``."""
    config = parse("-cpu qemu64,-sgx,sgx=on,+sgxlc,sgxlc=off,sgx_provisionkey=yes,,sgx-kss")
    assert config.cpu.features == ((SgxFeature.SGX, False), (SgxFeature.SGXLC, True),
                                   (SgxFeature.SGX_PROVISIONKEY, True),
                                   (SgxFeature.SGX_KSS, True))
    assert config.cpu.requested(SgxFeature.SGX) is False
    assert config.cpu.requested(SgxFeature.SGX2) is None


@pytest.mark.parametrize("feature", list(SgxFeature))
def test_every_sgx_feature_name(feature: SgxFeature) -> None:
    config = parse(f"-cpu host,-{feature},{feature}=on")
    assert config.cpu.requested(feature) is False
    assert feature.cpuid.leaf in (0x7, 0x12)


def test_sgx_epc_leading_zero_index_and_hex_node() -> None:
    config = parse("-object memory-backend-epc,id=e,size=4M "
                   "-M sgx-epc.00.memdev=e,sgx-epc.00.node=0x1")
    assert config.sgx_epc[0].node == 1


def test_many_sections() -> None:
    objects = " ".join(f"-object memory-backend-epc,id=m{i},size=1M" for i in range(64))
    machine = ",".join(f"sgx-epc.{i}.memdev=m{i},sgx-epc.{i}.node=0" for i in range(64))
    config = parse(f"{objects} -M {machine}")
    assert [section.backend.id for section in config.sgx_epc] == [f"m{i}" for i in range(64)]


@pytest.mark.parametrize(("text", "expected"), [
    ("unix:/run/vsgx.sock,server=on,wait=off",
     QmpConfig("unix", path="/run/vsgx.sock", server=True, wait=False)),
    ("unix:path=/a,,b,server,nowait", QmpConfig("unix", path="/a,b", wait=False)),
    ("tcp:127.0.0.1:4444,server=on,wait=off",
     QmpConfig("tcp", host="127.0.0.1", port=4444, wait=False)),
    ("tcp::4445,server=on", QmpConfig("tcp", host="", port=4445, wait=True)),
])
def test_qmp(text: str, expected: QmpConfig) -> None:
    assert parse(f"-qmp '{text}' -incoming tcp:0:4446").qmp == (expected,)
    assert parse(f"-qmp '{text}' -incoming tcp:0:4446").incoming == "tcp:0:4446"


def test_double_dash_options() -> None:
    assert parse("--machine q35 --m 1G").machine is MachineType.Q35


# --- JSON forms equal key=value forms ------------------------------------------------------


@pytest.mark.parametrize(("json_form", "keyval_form"), [
    ('{"qom-type":"memory-backend-epc","id":"mem1","size":67108864,"prealloc":true}',
     "memory-backend-epc,id=mem1,size=64M,prealloc=on"),
    ('{"qom-type":"memory-backend-ram","id":"r","size":2147483648,"host-nodes":[0,1],'
     '"policy":"bind","share":true}',
     "memory-backend-ram,id=r,size=2G,host-nodes=0-1,policy=bind,share=on"),
    ('{"qom-type":"memory-backend-epc","id":"memepc0","prealloc":true,"size":67108864,'
     '"host-nodes":[0,1],"policy":"bind"}',  # libvirt's tests/qemuxmlconfdata/sgx-epc args
     "memory-backend-epc,id=memepc0,prealloc=on,size=64M,host-nodes=0,host-nodes=1,"
     "policy=bind"),
])
def test_json_object_equals_keyval(json_form: str, keyval_form: str) -> None:
    assert parse_qemu_args(["-object", json_form]) == parse_qemu_args(["-object", keyval_form])


def test_json_machine_equals_keyval() -> None:
    objects = ["-object", "memory-backend-epc,id=mem1,size=64M",
               "-object", "memory-backend-epc,id=mem2,size=28M"]
    keyval = parse_qemu_args([*objects, "-M", "q35,sgx-epc.0.memdev=mem1,sgx-epc.0.node=0,"
                              "sgx-epc.1.memdev=mem2,sgx-epc.1.node=1"])
    json_form = parse_qemu_args([*objects, "-M", '{"type":"q35","sgx-epc":[{"memdev":"mem1",'
                                 '"node":0},{"memdev":"mem2","node":1}]}'])
    split_json = parse_qemu_args([*objects, "-M", "q35",
                                  "-M", '{"sgx-epc":[{"memdev":"mem1","node":0}]}',
                                  "-M", '{"sgx-epc":[{"memdev":"mem2","node":1}]}'])
    assert keyval == json_form == split_json
    assert [s.backend.id for s in keyval.sgx_epc] == ["mem1", "mem2"]


@pytest.mark.parametrize(("machine", "message"), [
    ('{"sgx-epc":[{"memdev":"mem1","node":"0"}]}',
     "Invalid parameter type for 'sgx-epc.0.node', expected: integer"),
    ('{"sgx-epc":[{"memdev":1,"node":0}]}',
     "Invalid parameter type for 'sgx-epc.0.memdev', expected: string"),
    ('{"sgx-epc":{"memdev":"mem1","node":0}}',
     "Invalid parameter type for 'sgx-epc', expected: array"),
    ('{"sgx-epc":[{"memdev":"mem1"}]}', "Parameter 'sgx-epc.0.node' is missing"),
    ('{"type":"pc","sgx-epc":[{"memdev":"mem1","node":0}]', "-M {\"type\":\"pc\",\"sgx-epc\":"
     "[{\"memdev\":\"mem1\",\"node\":0}]: JSON parse error, premature EOI"),
])
def test_json_machine_types_checked(machine: str, message: str) -> None:
    with pytest.raises(QemuOptionError) as caught:
        parse_qemu_args(["-object", "memory-backend-epc,id=mem1,size=1M", "-M", machine])
    assert caught.value.message == message


# --- the QemuOpts tokenizer ---------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters=",="), min_size=1,
                max_size=8).filter(lambda name: not name.startswith("no"))
values = st.text(st.characters(codec="utf-8"), max_size=12)


@given(st.lists(st.tuples(names, values), max_size=6))
def test_format_then_split_round_trips(pairs: list[tuple[str, str]]) -> None:
    """Commas in values survive as ``,,``; order and repeated names are kept."""
    text = format_opts(pairs)
    assert split_opts(text) == [QemuOpt(name, value) for name, value in pairs]


@given(values, st.lists(st.tuples(names, values), max_size=4))
def test_implied_first_name_round_trips(first: str, pairs: list[tuple[str, str]]) -> None:
    text = format_opts([("type", first), *pairs], implied="type")
    assert split_opts(text, implied="type") == [
        QemuOpt("type", first), *(QemuOpt(name, value) for name, value in pairs)]


@given(st.text(st.characters(codec="utf-8", exclude_characters=","), max_size=12))
def test_comma_free_text_is_one_value(text: str) -> None:
    if "=" not in text:
        assert split_opts(text, implied="size") == ([QemuOpt("size", text)] if text else [])


def test_split_opts_examples() -> None:
    assert split_opts("node,nodeid=0,cpus=0-1,memdev=mem1", "type") == [
        QemuOpt("type", "node"), QemuOpt("nodeid", "0"), QemuOpt("cpus", "0-1"),
        QemuOpt("memdev", "mem1")]
    assert split_opts("a=1,,2,flag,nox,") == [
        QemuOpt("a", "1,2"), QemuOpt("flag", "on", True), QemuOpt("x", "off", True)]


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("1M", MIB), ("1k", 1024), ("1b", 1), ("+1M", MIB), (" 1G", GIB), ("1.0", 1), ("1.", 1),
    ("1.5G", 3 * GIB // 2), ("1.0001k", 1024), ("0x100M", 256 * MIB), ("0x10", 16),
    ("15E", 15 << 60),
])
def test_strtosz_accepts(text: str, value: int) -> None:
    assert strtosz(text) == value


@pytest.mark.parametrize(("text", "out_of_range"), [
    ("16E", True), ("99999999999999999999", True), ("-1", False), ("1.5", False),
    (".5k", False), ("1e3M", False), ("1.5e3k", False), ("0x1.5k", False), ("1kb", False),
    ("", False), ("0x", False), ("k", False),
])
def test_strtosz_rejects(text: str, out_of_range: bool) -> None:
    with pytest.raises(SizeError) as caught:
        strtosz(text)
    assert caught.value.out_of_range is out_of_range


def test_parse_size_unchanged() -> None:
    """The older helper ``vsgx isa`` uses keeps its behaviour."""
    assert parse_size("1.5G") == 3 * GIB // 2
    with pytest.raises(ValueError, match="fractions need a unit suffix"):
        parse_size("1.5")
