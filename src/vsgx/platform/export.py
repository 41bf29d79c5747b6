"""From a :class:`~vsgx.platform.config.MachineConfig` back to the real thing: a
``qemu-system-x86_64`` command line and a libvirt domain XML, for running the same machine on
SGX hardware with KVM.

:func:`to_qemu_command` is exact: for every configuration :func:`~vsgx.platform.parse_qemu_args`
produces, parsing the exported arguments (without ``-accel kvm``, which vsgx refuses) gives an
equal configuration. Values are written the way QEMU reads them back: QemuOpts and keyval text
with ``,`` doubled (``util/qemu-option.c`` ``get_opt_value``, ``util/keyval.c``), host-node and
vCPU lists as repeated ``N`` / ``N-M`` keys (``qapi/opts-visitor.c`` list mode), ``-m`` with a
unit suffix because a bare number means MiB there (``softmmu/vl.c`` ``parse_memory_options``).

:func:`to_libvirt_xml` follows libvirt's ``docs/formatdomain.rst`` (sections "Memory
Allocation", "NUMA Node Tuning", "CPU model and topology" and the ``sgx-epc`` memory device) and
its schema ``domaincommon.rng``. What a domain XML cannot say, or says differently, is not
dropped silently: it comes back as a warning next to the XML (see :class:`LibvirtDomain`).
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import NamedTuple

from vsgx.platform.config import (
    BackendType,
    CpuConfig,
    EpcSection,
    HostMemPolicy,
    MachineConfig,
    MemoryBackend,
    MemoryConfig,
    NumaNode,
    QmpConfig,
    SgxFeature,
    SmpConfig,
)
from vsgx.platform.qemuopts import PROG, format_opts

EMULATOR = f"/usr/bin/{PROG}"
"""The ``<emulator>`` of the exported domain (Debian's and Fedora's path)."""

LIBVIRT_SGX_FEATURES = frozenset({
    SgxFeature.SGX, SgxFeature.SGXLC, SgxFeature.SGX1, SgxFeature.SGX2,
    SgxFeature.SGX_EDECCSSA, SgxFeature.SGX_EXINFO, SgxFeature.SGX_DEBUG,
    SgxFeature.SGX_MODE64, SgxFeature.SGX_PROVISIONKEY, SgxFeature.SGX_TOKENKEY,
    SgxFeature.SGX_KSS, SgxFeature.SGX_AEX_NOTIFY,
})
"""The SGX flags libvirt's CPU map names (``src/cpu_map/x86_features.xml``), spelt as in QEMU:
``sgx``, ``sgxlc``, ``sgx1``, ``sgx2``, ``sgx-exinfo``, ``sgx-debug``, ``sgx-mode64``,
``sgx-provisionkey``, ``sgx-tokenkey``, ``sgx-kss`` (libvirt 9.0), and ``sgx-edeccssa``,
``sgx-aex-notify`` (added later). ``sgx-enclv`` and ``sgx-encls-c`` are not in the map."""

_NUMATUNE_MODE = {HostMemPolicy.BIND: "strict", HostMemPolicy.PREFERRED: "preferred",
                  HostMemPolicy.INTERLEAVE: "interleave"}
"""``<numatune><memnode mode=…>`` for a NUMA cell's backend policy; libvirt turns the modes
back into these policies (``src/qemu/qemu_command.c`` ``qemuBuildMemoryBackendProps``)."""

_SUFFIXES = (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("k", 10))


class ExportError(ValueError):
    """A configuration value the target format cannot hold at all (a size that is not a whole
    number of KiB, for libvirt)."""


class LibvirtDomain(NamedTuple):
    """The result of :func:`to_libvirt_xml`: ``xml`` is the domain document; ``warnings`` lists,
    in a stable order, every part of the configuration the XML leaves out or expresses
    differently. A tuple, so ``xml, warnings = to_libvirt_xml(config)`` works."""

    xml: str
    warnings: list[str]


class _Cell(NamedTuple):
    """A guest NUMA cell as libvirt sees it: vCPUs, RAM in bytes and the backend (if any)."""

    id: int
    cpus: tuple[int, ...]
    size: int
    backend: MemoryBackend | None


# ---------------------------------------------------------------------------------------------
# QEMU


def to_qemu_command(config: MachineConfig) -> list[str]:
    """The ``qemu-system-x86_64`` argument vector (program name first) that runs ``config``
    under KVM: ``-accel kvm``, ``-machine``, ``-m``, ``-smp``, ``-cpu``, every ``-object`` in
    order, ``-numa``, then ``-name``, ``-qmp`` and ``-incoming`` when configured."""
    argv = [PROG, "-accel", "kvm", "-machine", _machine_arg(config),
            "-m", _memory_arg(config.memory), "-smp", _smp_arg(config.smp),
            "-cpu", _cpu_arg(config.cpu)]
    argv += _repeat("-object", (_object_arg(backend) for backend in config.objects))
    argv += _repeat("-numa", (_numa_arg(node) for node in config.numa_nodes
                              if not _is_implicit(node)))
    if config.name is not None:
        argv += ["-name", format_opts([("guest", config.name)], implied="guest")]
    argv += _repeat("-qmp", (_qmp_arg(qmp) for qmp in config.qmp))
    if config.incoming is not None:
        argv += ["-incoming", config.incoming]
    return argv


def format_shell(argv: list[str]) -> str:
    """``argv`` as :func:`to_qemu_command` returns it (the program, then option/argument pairs)
    as a POSIX shell command: the program on the first line, then one option with its
    shell-quoted argument per line, joined by `` \\`` continuations, like the command lines in
    QEMU's ``docs/system/i386/sgx.rst``."""
    program, *rest = argv
    lines = [shlex.quote(program)]
    lines += [shlex.join(rest[index:index + 2]) for index in range(0, len(rest), 2)]
    return " \\\n    ".join(lines)


def _repeat(option: str, values: Iterable[str]) -> list[str]:
    """``[option, value]`` for each value."""
    return [item for value in values for item in (option, value)]


def _machine_arg(config: MachineConfig) -> str:
    """``-machine TYPE[,sgx-epc.N.memdev=ID,sgx-epc.N.node=NODE…]`` in section order (keyval
    with implied ``type``; ``hw/i386/x86.c`` ``sgx-epc`` property)."""
    opts = [("type", config.machine.alias)]
    for index, section in enumerate(config.sgx_epc):
        opts += [(f"sgx-epc.{index}.memdev", section.backend.id),
                 (f"sgx-epc.{index}.node", str(section.node))]
    return format_opts(opts, implied="type")


def _memory_arg(memory: MemoryConfig) -> str:
    """``-m SIZE[,slots=N][,maxmem=SIZE]``; ``slots`` only when non-zero, ``maxmem`` when
    given."""
    opts = [("size", _size_text(memory.size))]
    if memory.slots:
        opts.append(("slots", str(memory.slots)))
    if memory.maxmem is not None:
        opts.append(("maxmem", _size_text(memory.maxmem)))
    return format_opts(opts, implied="size")


def _size_text(size: int) -> str:
    """A size with the largest binary suffix that divides it exactly, else in bytes (the
    ``-m`` size is a multiple of 8 KiB, so it always gets a suffix)."""
    for suffix, shift in _SUFFIXES:
        if size % (1 << shift) == 0:
            return f"{size >> shift}{suffix}"
    return str(size)


def _smp_arg(smp: SmpConfig) -> str:
    """The whole ``-smp`` topology, so that ``machine_parse_smp_config()`` computes nothing."""
    return ",".join(f"{name}={value}" for name, value in (
        ("cpus", smp.cpus), ("sockets", smp.sockets), ("dies", smp.dies),
        ("cores", smp.cores), ("threads", smp.threads), ("maxcpus", smp.maxcpus)))


def _cpu_arg(cpu: CpuConfig) -> str:
    """``-cpu MODEL,+feat,-feat…`` (``x86_cpu_parse_featurestr``: no escaping exists there,
    and no model or feature name has a comma)."""
    flags = [f"{'+' if value else '-'}{feature.value}" for feature, value in cpu.features]
    return ",".join([cpu.model, *flags])


def _object_arg(backend: MemoryBackend) -> str:
    """``-object TYPE,id=ID,size=BYTES`` plus ``prealloc``, ``share``, ``host-nodes`` and
    ``policy`` where they differ from the defaults (``backends/hostmem.c``; ``share`` defaults
    to on for EPC, ``backends/hostmem-epc.c``)."""
    opts = [("qom-type", backend.type.value), ("id", backend.id), ("size", str(backend.size))]
    if backend.prealloc:
        opts.append(("prealloc", "on"))
    if backend.share != (backend.type is BackendType.EPC):
        opts.append(("share", "on" if backend.share else "off"))
    opts += [("host-nodes", run) for run in _runs(backend.host_nodes)]
    if backend.policy is not HostMemPolicy.DEFAULT:
        opts.append(("policy", backend.policy.value))
    return format_opts(opts, implied="qom-type")


def _numa_arg(node: NumaNode) -> str:
    """``-numa node,nodeid=N[,cpus=…][,memdev=ID]`` (``hw/core/numa.c``)."""
    opts = [("type", "node"), ("nodeid", str(node.nodeid))]
    opts += [("cpus", run) for run in _runs(node.cpus)]
    if node.memdev is not None:
        opts.append(("memdev", node.memdev.id))
    return format_opts(opts, implied="type")


def _qmp_arg(qmp: QmpConfig) -> str:
    """``unix:PATH,server=on,wait=…`` or ``tcp:HOST:PORT,server=on,wait=…`` (``chardev/char.c``
    ``qemu_chr_parse_compat``: the unix path is QemuOpts text with implied ``path``, the TCP
    address is not unescaped)."""
    flags = [("server", "on"), ("wait", "on" if qmp.wait else "off")]
    if qmp.path is not None:
        return "unix:" + format_opts([("path", qmp.path), *flags], implied="path")
    return f"tcp:{qmp.host}:{qmp.port}," + format_opts(flags)


def _runs(values: tuple[int, ...]) -> list[str]:
    """Consecutive ascending runs of ``values``, in order, as ``N`` or ``N-M``; reading them
    back (``parse_uint_list``) gives ``values`` again, repeats and order included."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return [str(low) if low == high else f"{low}-{high}" for low, high in runs]


def _is_implicit(node: NumaNode) -> bool:
    """The node QEMU creates by itself when memory hotplug is configured without ``-numa``
    (the only node that has RAM but no memdev); it must not be written out."""
    return node.memdev is None and node.size > 0


# ---------------------------------------------------------------------------------------------
# libvirt


def to_libvirt_xml(config: MachineConfig, *, name: str = "vsgx") -> LibvirtDomain:
    """A complete ``<domain type='kvm'>`` document for ``config`` and the warnings about what
    it cannot carry over (see :class:`LibvirtDomain`). The domain is named ``config.name`` when
    ``-name`` was given, else ``name``. Raises :class:`ExportError` for a size that is not a
    whole number of KiB (libvirt's unit)."""
    warnings: list[str] = []
    cells = _cells(config)
    domain = ET.Element("domain", type="kvm")
    _add_name(domain, config.name if config.name is not None else name, warnings)
    _add_memory(domain, config, warnings)
    _add_memory_backing(domain, cells, warnings)
    _add_vcpu(domain, config.smp)
    _add_numatune(domain, cells)
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type", arch="x86_64",
                  machine=config.machine.versioned_name).text = "hvm"
    domain.append(_cpu_element(config, cells, warnings))
    _add_devices(domain, config.sgx_epc, len(cells), warnings)
    warnings += _unexpressed(config)
    ET.indent(domain)
    return LibvirtDomain(ET.tostring(domain, encoding="unicode") + "\n", warnings)


def _kib(size: int, what: str) -> int:
    """``size`` bytes in KiB; :class:`ExportError` when it is not a whole number of KiB."""
    if size % 1024:
        raise ExportError(f"{what} is {size} bytes, not a whole number of KiB: libvirt "
                          "cannot express it")
    return size // 1024


def _cpuset(values: Iterable[int]) -> str:
    """libvirt's cpuset syntax (``0-1,3``) for a set of numbers."""
    return ",".join(_runs(tuple(sorted(set(values)))))


def _needs_max_memory(config: MachineConfig) -> bool:
    """Whether the domain needs ``<maxMemory>``: for QEMU's memory hotplug (``maxmem``), and
    for EPC, because libvirt counts ``sgx-epc`` devices as memory devices, which require it
    (its own ``tests/qemuxml2argvdata/sgx-epc.xml`` has ``maxMemory`` = RAM + EPC)."""
    return bool(config.sgx_epc) or config.memory.maxmem is not None


def _cells(config: MachineConfig) -> list[_Cell]:
    """The guest NUMA cells: QEMU's nodes, where the node QEMU adds by itself for memory
    hotplug holds every vCPU; when libvirt needs ``<maxMemory>`` and there is no node, that same
    single node (libvirt requires a NUMA cell with memory hotplug)."""
    every_cpu = tuple(range(config.smp.maxcpus))
    if not config.numa_nodes:
        needed = _needs_max_memory(config)
        return [_Cell(0, every_cpu, config.memory.size, None)] if needed else []
    return [_Cell(node.nodeid, every_cpu if _is_implicit(node) else node.cpus, node.size,
                  node.memdev) for node in config.numa_nodes]


def _add_name(domain: ET.Element, name: str, warnings: list[str]) -> None:
    """``<name>``; libvirt refuses an empty name and names containing ``/`` or a newline."""
    ET.SubElement(domain, "name").text = name
    if not name or "/" in name or "\n" in name:
        warnings.append(f"domain name {name!r}: libvirt refuses empty names and names "
                        "containing '/' or a newline")


def _add_memory(domain: ET.Element, config: MachineConfig, warnings: list[str]) -> None:
    """``<maxMemory>`` (when needed) and ``<memory>``, in KiB. libvirt's ``<memory>`` includes
    the memory devices, EPC sections among them (formatdomain.rst, "Memory Allocation"), and so
    does its hotplug limit; ``maxMemory`` needs a non-zero slot count."""
    memory = config.memory
    ram = _kib(memory.size, "the -m size")
    epc = sum(_kib(section.size, _epc_what(index, section))
              for index, section in enumerate(config.sgx_epc))
    if _needs_max_memory(config):
        limit = ram if memory.maxmem is None else _kib(memory.maxmem, "-m maxmem")
        ET.SubElement(domain, "maxMemory", slots=str(memory.slots or 1),
                      unit="KiB").text = str(limit + epc)
        warnings += _max_memory_warnings(config, limit + epc)
    ET.SubElement(domain, "memory", unit="KiB").text = str(ram + epc)


def _max_memory_warnings(config: MachineConfig, limit: int) -> list[str]:
    """How libvirt's ``-m`` will differ from the original one."""
    memory = config.memory
    original = "none" if memory.maxmem is None else f"{memory.maxmem // 1024} KiB"
    warnings = []
    if config.sgx_epc:
        warnings.append(f"EPC sections count as libvirt memory devices: <maxMemory> is {limit} "
                        f"KiB (QEMU maxmem was {original}), so libvirt starts QEMU with memory "
                        "hotplug enabled")
    if not memory.slots:
        warnings.append("libvirt requires a slot count with <maxMemory>: slots='1' "
                        "(QEMU had slots=0)")
    if not config.numa_nodes:
        warnings.append("libvirt requires a NUMA cell with <maxMemory>: cell 0 holds every vCPU "
                        "and all RAM, as QEMU does by itself when memory hotplug is enabled")
    return warnings


def _add_memory_backing(domain: ET.Element, cells: list[_Cell], warnings: list[str]) -> None:
    """``<memoryBacking><allocation mode='immediate'/>`` when every NUMA cell's backend has
    ``prealloc=on``: libvirt preallocates all guest RAM or none (formatdomain.rst, "Memory
    Backing")."""
    backends = [cell.backend for cell in cells if cell.backend is not None]
    preallocated = [backend.id for backend in backends if backend.prealloc]
    if backends and len(preallocated) == len(backends):
        backing = ET.SubElement(domain, "memoryBacking")
        ET.SubElement(backing, "allocation", mode="immediate")
    elif preallocated:
        warnings.append(f"prealloc=on on {', '.join(preallocated)} only: libvirt preallocates "
                        "all guest RAM or none, so it is not preallocated")


def _add_vcpu(domain: ET.Element, smp: SmpConfig) -> None:
    """``<vcpu [current='N']>MAXCPUS</vcpu>``: the possible vCPUs, and those present at start
    when fewer."""
    vcpu = ET.SubElement(domain, "vcpu")
    if smp.cpus != smp.maxcpus:
        vcpu.set("current", str(smp.cpus))
    vcpu.text = str(smp.maxcpus)


def _add_numatune(domain: ET.Element, cells: list[_Cell]) -> None:
    """``<numatune><memnode cellid mode nodeset/>`` for each cell whose backend binds its RAM
    to host nodes (formatdomain.rst, "NUMA Node Tuning")."""
    memnodes = [(cell.id, cell.backend) for cell in cells if cell.backend is not None
                and cell.backend.policy is not HostMemPolicy.DEFAULT]
    if not memnodes:
        return
    numatune = ET.SubElement(domain, "numatune")
    for cell_id, backend in memnodes:
        ET.SubElement(numatune, "memnode", cellid=str(cell_id),
                      mode=_NUMATUNE_MODE[backend.policy], nodeset=_cpuset(backend.host_nodes))


def _cpu_element(config: MachineConfig, cells: list[_Cell], warnings: list[str]) -> ET.Element:
    """``<cpu>``: ``host-passthrough`` for ``host``, ``maximum`` for ``max`` (libvirt's
    equivalent of ``-cpu max``), else a custom model that must match exactly; then the
    topology, one ``<feature>`` per SGX flag set on the command line, and the NUMA cells."""
    model = config.cpu.model
    if model in ("host", "max"):
        cpu = ET.Element("cpu", mode="host-passthrough" if model == "host" else "maximum")
    else:
        cpu = ET.Element("cpu", mode="custom", match="exact")
        ET.SubElement(cpu, "model", fallback="forbid").text = model
    smp = config.smp
    ET.SubElement(cpu, "topology", sockets=str(smp.sockets), dies=str(smp.dies),
                  cores=str(smp.cores), threads=str(smp.threads))
    for feature, value in config.cpu.features:
        if feature in LIBVIRT_SGX_FEATURES:
            ET.SubElement(cpu, "feature", policy="require" if value else "disable",
                          name=feature.value)
        else:
            warnings.append(f"-cpu {'+' if value else '-'}{feature.value}: libvirt's CPU map has "
                            "no such feature")
    if cells:
        cpu.append(_numa_element(config, cells, warnings))
    return cpu


def _numa_element(config: MachineConfig, cells: list[_Cell], warnings: list[str]) -> ET.Element:
    """``<numa>`` with one ``<cell id cpus memory unit>`` per node (``cpus`` left out for a
    CPU-less node), and warnings for what a cell cannot say about its backend."""
    numa = ET.Element("numa")
    for cell in cells:
        element = ET.SubElement(numa, "cell", id=str(cell.id))
        if cell.cpus:
            element.set("cpus", _cpuset(cell.cpus))
        element.set("memory", str(_kib(cell.size, f"NUMA node {cell.id}")))
        element.set("unit", "KiB")
        warnings += _cell_backend_warnings(cell)
    unplaced = set(range(config.smp.maxcpus)).difference(*(cell.cpus for cell in cells))
    if unplaced:
        warnings.append(f"vCPUs {_cpuset(unplaced)} are in no NUMA node: libvirt adds them to "
                        "the first cell, QEMU spreads them by its default mapping")
    return numa


def _cell_backend_warnings(cell: _Cell) -> list[str]:
    """What a cell's RAM backend has that libvirt's cell cannot carry: libvirt backs cells
    with private RAM (``memAccess`` needs hugepages or a file backing)."""
    backend = cell.backend
    if backend is None:
        return []
    warnings = []
    if backend.type is BackendType.EPC:
        warnings.append(f"NUMA node {cell.id} takes its memory from EPC backend {backend.id}: "
                        "libvirt backs NUMA cells with RAM")
    if backend.share:
        warnings.append(f"share=on on {backend.id} (NUMA node {cell.id}): libvirt maps NUMA "
                        "cell RAM privately")
    return warnings


def _add_devices(domain: ET.Element, sections: tuple[EpcSection, ...], cells: int,
                 warnings: list[str]) -> None:
    """``<devices>``: the emulator, then one ``<memory model='sgx-epc'>`` per EPC section in
    order (formatdomain.rst, memory devices; libvirt 8.10, QEMU 7.0)."""
    devices = ET.SubElement(domain, "devices")
    ET.SubElement(devices, "emulator").text = EMULATOR
    for index, section in enumerate(sections):
        devices.append(_epc_element(index, section))
        warnings += _epc_warnings(index, section, cells)


def _epc_element(index: int, section: EpcSection) -> ET.Element:
    """``<memory model='sgx-epc'>``: ``<source><nodemask>`` for host nodes bound with
    ``policy=bind`` (the only policy libvirt writes for it), ``<target>`` with the size in KiB
    and the guest node."""
    memory = ET.Element("memory", model="sgx-epc")
    backend = section.backend
    if backend.policy is HostMemPolicy.BIND:
        source = ET.SubElement(memory, "source")
        ET.SubElement(source, "nodemask").text = _cpuset(backend.host_nodes)
    target = ET.SubElement(memory, "target")
    ET.SubElement(target, "size", unit="KiB").text = str(_kib(section.size,
                                                              _epc_what(index, section)))
    ET.SubElement(target, "node").text = str(section.node)
    return memory


def _epc_what(index: int, section: EpcSection) -> str:
    """How warnings and errors name an EPC section."""
    return f"EPC section {index} ({section.backend.id})"


def _epc_warnings(index: int, section: EpcSection, cells: int) -> list[str]:
    """The EPC backend settings libvirt does not reproduce: it always passes ``prealloc=on``,
    leaves ``share`` at its default (on), and binds host nodes with ``policy=bind``; it also
    refuses a memory device on a guest node that is not a NUMA cell."""
    backend = section.backend
    what = _epc_what(index, section)
    warnings = []
    if not backend.prealloc:
        warnings.append(f"{what}: prealloc=off, but libvirt always preallocates EPC")
    if not backend.share:
        warnings.append(f"{what}: share=off, but libvirt leaves share at its default (on)")
    if backend.policy in (HostMemPolicy.PREFERRED, HostMemPolicy.INTERLEAVE):
        warnings.append(f"{what}: policy={backend.policy} host-nodes="
                        f"{_cpuset(backend.host_nodes)} left out: libvirt binds EPC to host "
                        "nodes with policy=bind only")
    if section.node >= cells:
        warnings.append(f"{what}: guest node {section.node} is not a NUMA cell (the domain has "
                        f"{cells}); libvirt refuses such a memory device")
    return warnings


def _unexpressed(config: MachineConfig) -> list[str]:
    """Options with no domain XML equivalent: memory backends no NUMA node or EPC section uses,
    QMP monitors (libvirt owns the monitor) and ``-incoming``."""
    used = {node.memdev.id for node in config.numa_nodes if node.memdev is not None}
    used.update(section.backend.id for section in config.sgx_epc)
    warnings = [f"-object {backend.type},id={backend.id}: used by no NUMA node or EPC section; "
                "libvirt has no element for a stand-alone memory backend"
                for backend in config.objects if backend.id not in used]
    warnings += [f"-qmp {_qmp_arg(qmp)}: libvirt owns the QMP monitor; use "
                 "'virsh qemu-monitor-command' instead" for qmp in config.qmp]
    if config.incoming is not None:
        warnings.append(f"-incoming {config.incoming}: a domain XML cannot wait for a "
                        "migration; use 'virsh migrate' or 'virsh restore'")
    return warnings
