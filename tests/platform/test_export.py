"""``vsgx.platform.export``: the seed examples exported both ways with their exact output, a
round-trip property over generated command lines, libvirt's own schema (``virt-xml-validate``)
and parser (``virsh`` on the in-process test driver), the warnings for what libvirt cannot
express, and real QEMU 7.2 reading the exported command lines."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_platform_options import SEED_NUMA, SEED_SINGLE, parse
from test_platform_qemu_oracle import QEMU, run_qemu, without_warnings

from vsgx.platform import MachineConfig, SgxFeature, parse_qemu_args
from vsgx.platform.export import (
    ExportError,
    LibvirtDomain,
    format_shell,
    to_libvirt_xml,
    to_qemu_command,
)

VIRT_XML_VALIDATE = shutil.which("virt-xml-validate")
VIRSH = shutil.which("virsh")
needs_validator = pytest.mark.skipif(
    VIRT_XML_VALIDATE is None,
    reason="virt-xml-validate is not installed (Debian packages libvirt-clients, libxml2-utils)")
needs_virsh = pytest.mark.skipif(
    VIRSH is None, reason="virsh is not installed (Debian package libvirt-clients)")
needs_qemu = pytest.mark.skipif(
    QEMU is None, reason="qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")

EPC_REFUSED = "qemu-system-x86_64: invalid object type: memory-backend-epc"
"""QEMU 7.2's first stderr line on a host without ``/dev/sgx_vepc`` once it creates the first
EPC backend (``qemu_create_late_backends``, after every option, the machine properties, the
chardevs and the earlier backends were accepted). Observed: 7.2 prints it without the
``-object …:`` location."""


def reparse(argv: list[str]) -> MachineConfig:
    """Parse an exported command line the way vsgx can: without the program and ``-accel``."""
    assert argv[0] == "qemu-system-x86_64"
    assert argv[1:3] == ["-accel", "kvm"]
    return parse_qemu_args(argv[3:])


# --- the seed examples ----------------------------------------------------------------------

SEED_NUMA_ARGV = [
    "qemu-system-x86_64", "-accel", "kvm",
    "-machine", "q35,sgx-epc.0.memdev=mem0,sgx-epc.0.node=0,sgx-epc.1.memdev=mem1,"
                "sgx-epc.1.node=1",
    "-m", "4G",
    "-smp", "cpus=4,sockets=1,dies=1,cores=4,threads=1,maxcpus=4",
    "-cpu", "host,+sgx-provisionkey",
    "-object", "memory-backend-ram,id=node0,size=2147483648,host-nodes=0,policy=bind",
    "-object", "memory-backend-epc,id=mem0,size=67108864,prealloc=on,host-nodes=0,policy=bind",
    "-object", "memory-backend-ram,id=node1,size=2147483648,host-nodes=1,policy=bind",
    "-object", "memory-backend-epc,id=mem1,size=29360128,prealloc=on,host-nodes=1,policy=bind",
    "-numa", "node,nodeid=0,cpus=0-1,memdev=node0",
    "-numa", "node,nodeid=1,cpus=2-3,memdev=node1",
]

SEED_NUMA_SHELL = """\
qemu-system-x86_64 \\
    -accel kvm \\
    -machine q35,sgx-epc.0.memdev=mem0,sgx-epc.0.node=0,sgx-epc.1.memdev=mem1,sgx-epc.1.node=1 \\
    -m 4G \\
    -smp cpus=4,sockets=1,dies=1,cores=4,threads=1,maxcpus=4 \\
    -cpu host,+sgx-provisionkey \\
    -object memory-backend-ram,id=node0,size=2147483648,host-nodes=0,policy=bind \\
    -object memory-backend-epc,id=mem0,size=67108864,prealloc=on,host-nodes=0,policy=bind \\
    -object memory-backend-ram,id=node1,size=2147483648,host-nodes=1,policy=bind \\
    -object memory-backend-epc,id=mem1,size=29360128,prealloc=on,host-nodes=1,policy=bind \\
    -numa node,nodeid=0,cpus=0-1,memdev=node0 \\
    -numa node,nodeid=1,cpus=2-3,memdev=node1"""

SEED_NUMA_XML = """\
<domain type="kvm">
  <name>vsgx</name>
  <maxMemory slots="1" unit="KiB">4288512</maxMemory>
  <memory unit="KiB">4288512</memory>
  <vcpu>4</vcpu>
  <numatune>
    <memnode cellid="0" mode="strict" nodeset="0" />
    <memnode cellid="1" mode="strict" nodeset="1" />
  </numatune>
  <os>
    <type arch="x86_64" machine="pc-q35-7.2">hvm</type>
  </os>
  <cpu mode="host-passthrough">
    <topology sockets="1" dies="1" cores="4" threads="1" />
    <feature policy="require" name="sgx-provisionkey" />
    <numa>
      <cell id="0" cpus="0-1" memory="2097152" unit="KiB" />
      <cell id="1" cpus="2-3" memory="2097152" unit="KiB" />
    </numa>
  </cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memory model="sgx-epc">
      <source>
        <nodemask>0</nodemask>
      </source>
      <target>
        <size unit="KiB">65536</size>
        <node>0</node>
      </target>
    </memory>
    <memory model="sgx-epc">
      <source>
        <nodemask>1</nodemask>
      </source>
      <target>
        <size unit="KiB">28672</size>
        <node>1</node>
      </target>
    </memory>
  </devices>
</domain>
"""

EPC_MAXMEM_WARNING = ("EPC sections count as libvirt memory devices: <maxMemory> is {} KiB (QEMU "
                      "maxmem was none), so libvirt starts QEMU with memory hotplug enabled")
SLOTS_WARNING = "libvirt requires a slot count with <maxMemory>: slots='1' (QEMU had slots=0)"
CELL_WARNING = ("libvirt requires a NUMA cell with <maxMemory>: cell 0 holds every vCPU and all "
                "RAM, as QEMU does by itself when memory hotplug is enabled")

SEED_SINGLE_ARGV = [
    "qemu-system-x86_64", "-accel", "kvm",
    "-machine", "pc,sgx-epc.0.memdev=mem1,sgx-epc.0.node=0",
    "-m", "4G",
    "-smp", "cpus=1,sockets=1,dies=1,cores=1,threads=1,maxcpus=1",
    "-cpu", "host,+sgx-provisionkey",
    "-object", "memory-backend-epc,id=mem1,size=67108864,prealloc=on",
]

SEED_SINGLE_XML = """\
<domain type="kvm">
  <name>sgx-guest</name>
  <maxMemory slots="1" unit="KiB">4259840</maxMemory>
  <memory unit="KiB">4259840</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch="x86_64" machine="pc-i440fx-7.2">hvm</type>
  </os>
  <cpu mode="host-passthrough">
    <topology sockets="1" dies="1" cores="1" threads="1" />
    <feature policy="require" name="sgx-provisionkey" />
    <numa>
      <cell id="0" cpus="0" memory="4194304" unit="KiB" />
    </numa>
  </cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memory model="sgx-epc">
      <target>
        <size unit="KiB">65536</size>
        <node>0</node>
      </target>
    </memory>
  </devices>
</domain>
"""


def test_seed_numa_to_qemu() -> None:
    config = parse(SEED_NUMA)
    argv = to_qemu_command(config)
    assert argv == SEED_NUMA_ARGV
    assert format_shell(argv) == SEED_NUMA_SHELL
    assert reparse(argv) == config


def test_seed_numa_to_libvirt() -> None:
    assert to_libvirt_xml(parse(SEED_NUMA)) == LibvirtDomain(
        SEED_NUMA_XML, [EPC_MAXMEM_WARNING.format(4288512), SLOTS_WARNING])


def test_seed_single_to_qemu() -> None:
    config = parse(SEED_SINGLE)
    argv = to_qemu_command(config)
    assert argv == SEED_SINGLE_ARGV
    assert reparse(argv) == config


def test_seed_single_to_libvirt() -> None:
    xml, warnings = to_libvirt_xml(parse(SEED_SINGLE), name="sgx-guest")
    assert xml == SEED_SINGLE_XML
    assert warnings == [EPC_MAXMEM_WARNING.format(4259840), SLOTS_WARNING, CELL_WARNING]


# --- generated command lines ----------------------------------------------------------------

RAM_MIB = [16, 32, 64]
EPC_SIZES = ["64M", "28M", "1M", "4096", "0x200000", "1.5M", "6k", "4097"]  # 4097: not KiB


@st.composite
def smp_option(draw: st.DrawFn) -> tuple[list[str], int]:
    """``-smp`` (or none) and the resulting maxcpus."""
    sockets, dies, cores, threads = (draw(st.integers(1, top)) for top in (2, 2, 3, 2))
    maxcpus = sockets * dies * cores * threads
    form = draw(st.sampled_from(["none", "short", "full"]))
    if form == "none":
        return [], 1
    if form == "short":
        return ["-smp", str(maxcpus)], maxcpus
    cpus = draw(st.integers(1, maxcpus))
    return ["-smp", f"cpus={cpus},sockets={sockets},dies={dies},cores={cores},"
                    f"threads={threads},maxcpus={maxcpus}"], maxcpus


@st.composite
def backend_option(draw: st.DrawFn, kind: str, ident: str, size: str,
                   host_nodes: st.SearchStrategy[str]) -> str:
    """One ``-object`` value with optional prealloc/share/host-nodes+policy, keys shuffled."""
    opts = [f"id={ident}", f"size={size}"]
    for name in ("prealloc", "share"):
        if draw(st.booleans()):
            opts.append(f"{name}={draw(st.sampled_from(['on', 'off']))}")
    nodes = draw(st.lists(host_nodes, max_size=3))
    if nodes:
        opts += [f"host-nodes={node}" for node in nodes]
        opts.append(f"policy={draw(st.sampled_from(['bind', 'preferred', 'interleave']))}")
    return ",".join([kind, *draw(st.permutations(opts))])


@st.composite
def memory_option(draw: st.DrawFn, size_mib: int) -> str:
    """``-m`` for ``size_mib`` MiB, optionally with slots and maxmem."""
    text = draw(st.sampled_from([f"{size_mib}M", str(size_mib), f"size={size_mib}M"]))
    slots = draw(st.integers(0, 4))
    if slots or draw(st.booleans()):
        extra = draw(st.integers(1 if slots else 0, 512))
        text += f",maxmem={size_mib + extra}M" + (f",slots={slots}" if slots else "")
    return text


@st.composite
def numa_options(draw: st.DrawFn, maxcpus: int, host_nodes: st.SearchStrategy[str]
                 ) -> tuple[list[str], list[str], int]:
    """(``-object`` values, ``-numa`` arguments, RAM MiB) for 1-3 nodes; node 0 has memory,
    the others may be memoryless; each vCPU is in one node or none."""
    count = draw(st.integers(1, 3))
    owner = [draw(st.integers(-1, count - 1)) for _ in range(maxcpus)]
    objects: list[str] = []
    numa: list[str] = []
    total = 0
    for nodeid in range(count):
        opts = [f"nodeid={nodeid}"]
        opts += [f"cpus={cpu}" for cpu in draw(st.permutations(
            [cpu for cpu, node in enumerate(owner) if node == nodeid]))]
        if nodeid == 0 or draw(st.booleans()):
            size = draw(st.sampled_from(RAM_MIB))
            total += size
            objects.append(draw(backend_option("memory-backend-ram", f"ram{nodeid}",
                                               f"{size}M", host_nodes)))
            opts.append(f"memdev=ram{nodeid}")
        numa += ["-numa", ",".join(["node", *draw(st.permutations(opts))])]
    return objects, numa, total


@st.composite
def epc_machine_option(draw: st.DrawFn, sections: list[tuple[str, int]]) -> str:
    """The ``sgx-epc`` list as keyval text or as a JSON object."""
    if draw(st.booleans()):
        items = ",".join(f'{{"memdev":"{memdev}","node":{node}}}' for memdev, node in sections)
        return f'{{"sgx-epc":[{items}]}}'
    return ",".join(f"sgx-epc.{index}.memdev={memdev},sgx-epc.{index}.node={node}"
                    for index, (memdev, node) in enumerate(sections))


@st.composite
def cpu_option(draw: st.DrawFn) -> str:
    """``-cpu MODEL`` with SGX flags in every syntax QEMU accepts, repeats included."""
    model = draw(st.sampled_from(["host", "qemu64", "max", "Skylake-Client-v4", "EPYC"]))
    flags = draw(st.lists(st.tuples(st.sampled_from(list(SgxFeature)),
                                    st.sampled_from(["+{}", "-{}", "{}=on", "{}=off", "{}"])),
                          max_size=5))
    return ",".join([model, *(form.format(feature.value) for feature, form in flags)])


@st.composite
def extras(draw: st.DrawFn) -> list[str]:
    """``-name``, ``-qmp`` monitors and ``-incoming`` (kept out of the QEMU oracle runs, where
    monitors would open sockets)."""
    args: list[str] = []
    if draw(st.booleans()):
        name = draw(st.text(alphabet="ab,=-/ ", max_size=6))
        args += ["-name", "guest=" + name.replace(",", ",,")]
    for _ in range(draw(st.integers(0, 2))):
        wait = draw(st.sampled_from(["", ",wait=on", ",wait=off"]))
        if draw(st.booleans()):
            path = draw(st.text(alphabet="ab/,=", min_size=1, max_size=8))
            args += ["-qmp", f"unix:path={path.replace(',', ',,')},server=on{wait}"]
        else:
            host = draw(st.sampled_from(["", "127.0.0.1", "localhost"]))
            args += ["-qmp", f"tcp:{host}:{draw(st.integers(0, 65535))},server=on{wait}"]
    if draw(st.booleans()):
        args += ["-incoming", draw(st.sampled_from(["defer", "tcp:0:4444", "unix:/tmp/m,x"]))]
    return args


@st.composite
def command_lines(draw: st.DrawFn, *, for_qemu: bool = False) -> list[str]:
    """A valid vsgx command line with 1-4 EPC sections, optional NUMA, memory hotplug, CPU
    flags and a spare backend (RAM backends of at most 64 MiB), options in random order.
    ``for_qemu`` keeps what real QEMU gets through up to the EPC error on this host (whose
    only NUMA node is 0): host-nodes=0 only, no ``-name``/``-qmp``/``-incoming``."""
    host_nodes = st.sampled_from(["0"] if for_qemu else ["0", "1", "0-1", "3", "1-2"])
    smp, maxcpus = draw(smp_option())
    objects: list[str] = []
    numa: list[str] = []
    ram_mib = draw(st.sampled_from([128, 1024, 4096]))
    if draw(st.booleans()):
        objects, numa, ram_mib = draw(numa_options(maxcpus, host_nodes))
    top_node = len(numa) // 2 - 1 if numa else 2  # without NUMA, QEMU takes any node
    sections = []
    for index in range(draw(st.integers(1, 4))):
        size = draw(st.sampled_from(EPC_SIZES))
        objects.append(draw(backend_option("memory-backend-epc", f"epc{index}", size,
                                           host_nodes)))
        sections.append((f"epc{index}", draw(st.integers(0, top_node))))
    if draw(st.booleans()):
        objects.append(draw(backend_option("memory-backend-ram", "spare", "8M", host_nodes)))
    machine = draw(st.sampled_from(["pc", "q35", "pc-i440fx-7.2", "pc-q35-7.2"]))
    groups = [["-machine", machine], ["-M", draw(epc_machine_option(sections))],
              ["-m", draw(memory_option(ram_mib))], smp, ["-cpu", draw(cpu_option())],
              numa, *(["-object", value] for value in objects)]
    if not for_qemu:
        groups.append(draw(extras()))
    return [arg for group in draw(st.permutations(groups)) for arg in group]


@settings(max_examples=300, deadline=None)
@given(command_lines())
def test_round_trip(args: list[str]) -> None:
    config = parse_qemu_args(args)
    assert reparse(to_qemu_command(config)) == config


def test_round_trip_keeps_order_and_repeats() -> None:
    config = parse("-smp 8 -object memory-backend-ram,id=r,size=8M,host-nodes=3,host-nodes=1-2,"
                   "host-nodes=2,policy=interleave -numa node,cpus=5,cpus=0-1,cpus=7,memdev=r "
                   "-m 8M")
    argv = to_qemu_command(config)
    assert "memory-backend-ram,id=r,size=8388608,host-nodes=3,host-nodes=1-2,host-nodes=2,"\
           "policy=interleave" in argv
    assert "node,nodeid=0,cpus=5,cpus=0-1,cpus=7,memdev=r" in argv
    assert reparse(argv) == config


def test_escaping() -> None:
    config = parse("-name guest=a,,b=c -qmp unix:/tmp/x,,y,server=on,wait=off "
                   "-qmp unix:path=/tmp/a=b,server=on -qmp tcp::4444,server=on")
    argv = to_qemu_command(config)
    assert argv[-8:] == ["-name", "a,,b=c", "-qmp", "unix:/tmp/x,,y,server=on,wait=off",
                         "-qmp", "unix:path=/tmp/a=b,server=on,wait=on",
                         "-qmp", "tcp::4444,server=on,wait=on"]
    assert reparse(argv) == config


def test_memory_hotplug_without_numa() -> None:
    """QEMU's own node for memory hotplug is not written as ``-numa``; ``-m`` keeps slots,
    maxmem (in bytes when no suffix fits) and a suffix on the size (bare means MiB)."""
    config = parse("-m 1024,slots=2,maxmem=4294967297 -smp 2")
    argv = to_qemu_command(config)
    assert argv[argv.index("-m") + 1] == "1G,slots=2,maxmem=4294967297"
    assert "-numa" not in argv
    assert reparse(argv) == config


def test_format_shell_is_one_command_for_sh() -> None:
    config = parse_qemu_args(["-name", "guest=it's,,here", "-incoming", "exec:cat $HOME",
                              "-qmp", "unix:/tmp/a b\\,server=on,wait=off"])
    argv = to_qemu_command(config)
    script = "printf '%s\\0' " + format_shell(argv).split(" ", 1)[1]
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split("\0")[:-1] == argv[1:]
    assert format_shell(argv).splitlines()[0] == "qemu-system-x86_64 \\"


# --- libvirt ----------------------------------------------------------------------------------


def validate(xml: str, *, refused: bool = False) -> None:
    """libvirt's RelaxNG schema, then, when ``virsh`` is there, libvirt's parser (the in-process
    ``test:///default`` driver, which runs the generic domain checks) must both accept the
    domain, or, when ``refused`` (a warning said libvirt refuses something), not both."""
    assert VIRT_XML_VALIDATE is not None
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "domain.xml")
        path.write_text(xml)
        checks = [[VIRT_XML_VALIDATE, str(path), "domain"]]
        if VIRSH is not None:
            checks.append([VIRSH, "-q", "-c", "test:///default", "define", str(path)])
        results = [subprocess.run(check, capture_output=True, text=True, check=False)
                   for check in checks]
    accepted = all(result.returncode == 0 for result in results)
    assert accepted != refused, "".join(result.stderr for result in results) + xml


@needs_validator
@pytest.mark.parametrize("seed", [SEED_NUMA, SEED_SINGLE], ids=["numa", "single"])
def test_seed_xml_validates(seed: str) -> None:
    validate(to_libvirt_xml(parse(seed)).xml)


@needs_validator
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_generated_xml_validates(args: list[str]) -> None:
    config = parse_qemu_args(args)
    try:
        xml, warnings = to_libvirt_xml(config)
    except ExportError as exc:
        assert "not a whole number of KiB" in str(exc)
        assert any(section.size % 1024 for section in config.sgx_epc)
        return
    validate(xml, refused=any("libvirt refuses" in warning for warning in warnings))


@needs_validator
def test_every_feature_and_model_kind_validates() -> None:
    features = ",".join(f"+{feature.value}" for feature in SgxFeature)
    for model in ("host", "max", "Skylake-Client"):
        config = parse(f"-cpu {model},{features} -smp 4,maxcpus=8 -m 1G,slots=4,maxmem=2G")
        validate(to_libvirt_xml(config).xml)


def test_custom_model_and_hotplug() -> None:
    xml, warnings = to_libvirt_xml(parse(
        "-M q35 -cpu Skylake-Client,-sgx -smp 2,maxcpus=4 -m 1G,slots=4,maxmem=2G "
        "-object memory-backend-ram,id=r0,size=512M,prealloc=on "
        "-object memory-backend-ram,id=r1,size=512M,prealloc=on "
        "-numa node,memdev=r0,cpus=0-3 -numa node,memdev=r1 -name guest=named"))
    assert warnings == []
    assert "<name>named</name>" in xml
    assert '<maxMemory slots="4" unit="KiB">2097152</maxMemory>' in xml
    assert '<memory unit="KiB">1048576</memory>' in xml
    assert '<allocation mode="immediate" />' in xml
    assert '<vcpu current="2">4</vcpu>' in xml
    assert ('<cpu mode="custom" match="exact">\n'
            '    <model fallback="forbid">Skylake-Client</model>') in xml
    assert '<feature policy="disable" name="sgx" />' in xml
    assert '<cell id="1" memory="524288" unit="KiB" />' in xml
    assert "<numatune>" not in xml


def test_implicit_hotplug_node_holds_every_cpu() -> None:
    xml, warnings = to_libvirt_xml(parse("-m 1G,slots=1,maxmem=2G -smp 3 -cpu max"))
    assert warnings == []
    assert '<cpu mode="maximum">' in xml
    assert '<cell id="0" cpus="0-2" memory="1048576" unit="KiB" />' in xml


# --- what libvirt cannot express --------------------------------------------------------------


def export_warnings(line: str) -> list[str]:
    return to_libvirt_xml(parse(line)).warnings


def epc_line(backend: str, node: int = 0) -> str:
    """One EPC section ``e`` on guest node ``node``, with memory hotplug (so one NUMA cell)."""
    return (f"-M sgx-epc.0.memdev=e,sgx-epc.0.node={node} -m 1G,slots=1,maxmem=2G "
            f"-object memory-backend-epc,id=e,{backend}")


def test_epc_backend_warnings() -> None:
    warnings = export_warnings(epc_line("size=4M,share=off,host-nodes=0-1,policy=preferred"))
    assert warnings == [
        "EPC sections count as libvirt memory devices: <maxMemory> is 2101248 KiB (QEMU maxmem "
        "was 2097152 KiB), so libvirt starts QEMU with memory hotplug enabled",
        "EPC section 0 (e): prealloc=off, but libvirt always preallocates EPC",
        "EPC section 0 (e): share=off, but libvirt leaves share at its default (on)",
        "EPC section 0 (e): policy=preferred host-nodes=0-1 left out: libvirt binds EPC to host "
        "nodes with policy=bind only"]
    assert "<source>" not in to_libvirt_xml(parse(
        epc_line("size=4M,host-nodes=0,policy=interleave"))).xml


def test_epc_on_a_node_that_is_no_cell() -> None:
    warnings = export_warnings(epc_line("size=4M,prealloc=on", node=2))
    assert warnings[-1] == ("EPC section 0 (e): guest node 2 is not a NUMA cell (the domain has "
                            "1); libvirt refuses such a memory device")


def test_monitor_migration_and_spare_backend_warnings() -> None:
    assert export_warnings(
        "-object memory-backend-ram,id=spare,size=1M "
        "-qmp unix:/run/q.sock,server=on,wait=off -qmp tcp:localhost:4444,server=on "
        "-incoming defer") == [
        "-object memory-backend-ram,id=spare: used by no NUMA node or EPC section; libvirt has "
        "no element for a stand-alone memory backend",
        "-qmp unix:/run/q.sock,server=on,wait=off: libvirt owns the QMP monitor; use "
        "'virsh qemu-monitor-command' instead",
        "-qmp tcp:localhost:4444,server=on,wait=on: libvirt owns the QMP monitor; use "
        "'virsh qemu-monitor-command' instead",
        "-incoming defer: a domain XML cannot wait for a migration; use 'virsh migrate' or "
        "'virsh restore'"]


def test_numa_backend_warnings() -> None:
    warnings = export_warnings(
        "-smp 4 -m 16M -object memory-backend-ram,id=r0,size=8M,prealloc=on,share=on "
        "-object memory-backend-epc,id=r1,size=8M -numa node,memdev=r0,cpus=0-1 "
        "-numa node,memdev=r1,cpus=3")
    assert warnings == [
        "prealloc=on on r0 only: libvirt preallocates all guest RAM or none, so it is not "
        "preallocated",
        "share=on on r0 (NUMA node 0): libvirt maps NUMA cell RAM privately",
        "NUMA node 1 takes its memory from EPC backend r1: libvirt backs NUMA cells with RAM",
        "share=on on r1 (NUMA node 1): libvirt maps NUMA cell RAM privately",
        "vCPUs 2 are in no NUMA node: libvirt adds them to the first cell, QEMU spreads them by "
        "its default mapping"]


def test_unknown_feature_and_name_warnings() -> None:
    warnings = export_warnings("-cpu host,+sgx-enclv,-sgx-encls-c,+sgx -name guest=a/b")
    assert warnings == [
        "domain name 'a/b': libvirt refuses empty names and names containing '/' or a newline",
        "-cpu +sgx-enclv: libvirt's CPU map has no such feature",
        "-cpu -sgx-encls-c: libvirt's CPU map has no such feature"]


def test_name_option_wins_over_argument() -> None:
    assert "<name>vm1</name>" in to_libvirt_xml(parse("-name vm1"), name="other").xml
    assert "<name>other</name>" in to_libvirt_xml(parse(""), name="other").xml


def test_size_not_in_kib_is_an_error() -> None:
    config = parse(epc_line("size=4097"))
    with pytest.raises(ExportError, match=r"EPC section 0 \(e\) is 4097 bytes, not a whole "
                                          r"number of KiB: libvirt cannot express it"):
        to_libvirt_xml(config)
    assert reparse(to_qemu_command(config)) == config


# --- real QEMU ------------------------------------------------------------------------------


def qemu_first_error(argv: list[str]) -> str:
    """The first line QEMU 7.2 (TCG, see ``run_qemu``) writes for an exported command line."""
    result = run_qemu(argv[3:])  # run_qemu adds -accel tcg in place of -accel kvm
    assert result is not None, "QEMU is still running"
    assert result.returncode == 1
    return without_warnings(result.stderr).splitlines()[0]


@needs_qemu
@pytest.mark.parametrize("seed", [SEED_NUMA, SEED_SINGLE], ids=["numa", "single"])
def test_qemu_reads_seed_exports(seed: str) -> None:
    argv = to_qemu_command(parse(seed))
    if seed == SEED_NUMA:  # this host has only NUMA node 0: keep node1's RAM after mem0
        assert argv.index("memory-backend-epc,id=mem0,size=67108864,prealloc=on,host-nodes=0,"
                          "policy=bind") < argv.index("memory-backend-ram,id=node1,"
                                                      "size=2147483648,host-nodes=1,policy=bind")
    assert qemu_first_error(argv) == EPC_REFUSED


@needs_qemu
def test_qemu_reads_monitors_name_and_incoming(tmp_path: Path) -> None:
    config = parse(f"-M q35 -cpu host,+sgx,-sgxlc -smp 4,sockets=2,cores=2 -name guest=a,,b "
                   f"-qmp unix:{tmp_path}/q,,1.sock,server=on,wait=off "
                   "-qmp tcp:127.0.0.1:0,server=on,wait=off -incoming defer "
                   "-m 1G,slots=2,maxmem=2G -object memory-backend-epc,id=e,size=4M "
                   "-M sgx-epc.0.memdev=e,sgx-epc.0.node=0")
    assert qemu_first_error(to_qemu_command(config)) == EPC_REFUSED
    assert (tmp_path / "q,1.sock").exists()


@needs_qemu
def test_qemu_runs_export_without_epc(tmp_path: Path) -> None:
    """Without EPC, QEMU gets past the backends to -cpu, -numa and the board, and keeps
    running (``-S``)."""
    config = parse(f"-M q35 -cpu qemu64,+sgx,-sgxlc -smp 4,sockets=2,cores=2 -m 64M "
                   "-object memory-backend-ram,id=r0,size=32M,host-nodes=0,policy=bind "
                   "-object memory-backend-ram,id=r1,size=32M,prealloc=on "
                   "-numa node,memdev=r0,cpus=0,cpus=2 -numa node,memdev=r1,cpus=1,cpus=3 "
                   f"-name guest=x -qmp unix:{tmp_path}/q.sock,server=on,wait=off")
    result = run_qemu(to_qemu_command(config)[3:], timeout=3.0)
    assert result is None, result.stderr if result else ""


@needs_qemu
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines(for_qemu=True))
def test_qemu_reads_generated_exports(args: list[str]) -> None:
    assert qemu_first_error(to_qemu_command(parse_qemu_args(args))) == EPC_REFUSED
