"""From a ``qemu-system-x86_64`` command line to a :class:`~vsgx.platform.config.MachineConfig`.

:func:`parse_qemu_args` takes the arguments QEMU would receive after its program name and
checks them in the order QEMU 7.2's ``qemu_init()`` (``softmmu/vl.c``) does, so that a
command line with several mistakes is refused for the same one QEMU names:

1. every option is parsed as it is met (syntax, option-level type checks; these messages
   carry the option text as typed, e.g. ``-object memory-backend-ram,id=a: ...``);
2. the machine type is chosen, then the machine properties are set (``-M`` properties,
   ``sgx-epc``, ``-smp``, ``-m``);
3. memory backends are created in command-line order (``qemu_create_late_backends``);
4. the ``-cpu`` model is looked up (``parse_cpu_option``);
5. ``-numa`` options are applied (``parse_numa_opts``; messages carry the ``-numa`` text);
6. the board is built: NUMA totals (``numa_complete_configuration``), then the EPC sections
   (``pc_machine_init_sgx_epc``), then the vCPUs, which is when ``-cpu`` features are set.

Options vsgx supports: ``-machine``/``-M``, ``-m``, ``-smp``, ``-cpu``, ``-object``
(``memory-backend-ram``, ``memory-backend-epc``), ``-numa node``, ``-qmp``, ``-incoming`` and
``-name``. Every other QEMU option, object type, machine type, property or CPU flag is refused
by name; anything QEMU itself does not know is refused with QEMU's own message.

Two deliberate differences from QEMU 7.2: ``memory-backend-epc`` exists whether or not the
host has ``/dev/sgx_vepc`` (vsgx emulates it), and ``-M``/``-machine`` also accepts a JSON
object (``{"type": "q35", "sgx-epc": [{"memdev": "mem1", "node": 0}]}``), which 7.2 would
read as keyval text. JSON values are checked as QEMU's QObject input visitor checks them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vsgx.platform import qemu72
from vsgx.platform.config import (
    BackendType,
    CpuConfig,
    EpcSection,
    HostMemPolicy,
    MachineConfig,
    MachineType,
    MemoryBackend,
    MemoryConfig,
    NumaNode,
    QmpConfig,
    SgxFeature,
    SmpConfig,
)
from vsgx.platform.qemuopts import (
    IDENTIFIER_HINT,
    KeyvalStr,
    QemuOpt,
    QemuOptionError,
    id_wellformed,
    keyval_merge,
    keyval_parse_into,
    parse_bool,
    parse_int64,
    parse_json_object,
    parse_opts_id,
    parse_uint,
    parse_uint_list,
    split_opts,
)
from vsgx.sizes import SizeError, strtosz

MAX_NODES = 128
"""``MAX_NODES`` (``include/sysemu/numa.h``): guest NUMA node ids and host-nodes are below it."""

SIZE_HINT = ("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
             "and exabytes, respectively.")
"""The hint ``parse_option_size()`` (``util/qemu-option.c``) adds to a bad size."""

_MACHINES = {"pc": MachineType.PC, "pc-i440fx-7.2": MachineType.PC,
             "q35": MachineType.Q35, "pc-q35-7.2": MachineType.Q35}

# MemoryBackendProperties (qapi/qom.json), in the schema's order, which is the order the
# QAPI visitor checks them; the second item names the members vsgx supports.
_BACKEND_MEMBERS = ("dump", "host-nodes", "merge", "policy", "prealloc", "prealloc-threads",
                    "prealloc-context", "share", "reserve", "size",
                    "x-use-canonical-path-for-ramblock-id")
_BACKEND_SUPPORTED = frozenset({"host-nodes", "policy", "prealloc", "share", "size"})

# NumaNodeOptions (qapi/machine.json), in schema order.
_NUMA_NODE_MEMBERS = ("nodeid", "cpus", "mem", "memdev", "initiator")
_NUMA_TYPES = frozenset({"node", "dist", "cpu", "hmat-lb", "hmat-cache"})

# SMPConfiguration (qapi/machine.json), in schema order.
_SMP_MEMBERS = ("cpus", "sockets", "dies", "clusters", "cores", "threads", "maxcpus")

# The socket chardev options (chardev/char.c qemu_chardev_opts) ``-qmp`` accepts, and the
# rest of that list, which QEMU knows and vsgx refuses by name.
_CHARDEV_BOOLS = frozenset({"server", "wait"})
_CHARDEV_OTHER = frozenset({
    "backend", "path", "host", "port", "fd", "localaddr", "localport", "to", "ipv4", "ipv6",
    "delay", "reconnect", "telnet", "tn3270", "websocket", "width", "height", "cols", "rows",
    "mux", "signal", "name", "debug", "size", "chardev", "append", "logfile", "logappend",
    "tls-creds", "tls-authz", "abstract", "tight"})
# Prefixes of the legacy chardev syntax (qemu_chr_parse_compat) other than tcp: and unix:.
_CHARDEV_COMPAT = ("null", "pty", "msmouse", "wctablet", "braille", "testdev", "stdio", "vc",
                   "con:", "COM", "file:", "pipe:", "telnet:", "tn3270:",
                   "websocket:", "udp:", "/dev/", "mon:")


def parse_qemu_args(argv: Sequence[str]) -> MachineConfig:
    """Parse QEMU command-line arguments (without the program name) into a
    :class:`MachineConfig`; raise :class:`QemuOptionError` with QEMU's message for the first
    problem QEMU 7.2 would report, or a message naming what vsgx does not support."""
    parser = _Parser()
    parser.parse(argv)
    return parser.finish()


def _refuse(what: str) -> QemuOptionError:
    """The refusal for something QEMU has and vsgx does not support."""
    return QemuOptionError(f"{what} is not supported by vsgx")


# ---------------------------------------------------------------------------------------------
# The per-option results of step 1


@dataclass(frozen=True)
class _ObjectSpec:
    """A ``-object`` after its own checks, before creation (``user_creatable_add_type``)."""

    backend: MemoryBackend
    location: str
    from_json: bool


@dataclass(frozen=True)
class _NumaSpec:
    """A ``-numa node`` after the options visitor, before ``parse_numa_node``."""

    location: str
    nodeid: int | None
    cpus: tuple[int, ...]
    mem: int | None
    memdev: str | None


@dataclass
class _Parser:
    """The state QEMU accumulates while reading its command line."""

    machine: dict[str, Any] = field(default_factory=dict)
    smp: dict[str, Any] = field(default_factory=dict)
    memory: list[QemuOpt] = field(default_factory=list)
    cpu_option: str | None = None
    objects: list[_ObjectSpec] = field(default_factory=list)
    object_opts_ids: set[str] = field(default_factory=set)
    numa: list[_NumaSpec] = field(default_factory=list)
    qmp: list[QmpConfig] = field(default_factory=list)
    incoming: str | None = None
    name: str | None = None

    # -- step 1: the command line, option by option ----------------------------------------

    def parse(self, argv: Sequence[str]) -> None:
        """``qemu_init()``'s option loop with ``lookup_opt()``: ``--opt`` equals ``-opt``; an
        unknown option is ``invalid option``; a missing argument ``requires an argument``; a
        non-option argument is a disk image (``-hda``), which vsgx does not support."""
        handlers: dict[str, Callable[[str, str], None]] = {
            "-machine": self._machine, "-M": self._machine, "-m": self._memory,
            "-smp": self._smp, "-cpu": self._cpu, "-object": self._object,
            "-numa": self._numa, "-qmp": self._qmp, "-incoming": self._incoming,
            "-name": self._name,
        }
        index = 0
        while index < len(argv):
            arg = argv[index]
            index += 1
            if not arg.startswith("-"):
                raise _refuse("a disk image argument (-hda)").at(arg)
            option = arg[1:] if arg.startswith("--") else arg
            if option in qemu72.FLAG_OPTIONS:
                raise _refuse(f"option '{option}'").at(arg)
            if option not in qemu72.ARG_OPTIONS:
                raise QemuOptionError("invalid option", location=arg)
            if index == len(argv):
                raise QemuOptionError("requires an argument", location=arg)
            value = argv[index]
            index += 1
            location = f"{arg} {value}"
            handler = handlers.get(option)
            if handler is None:
                raise _refuse(f"option '{option}'").at(location)
            try:
                handler(value, location)
            except QemuOptionError as exc:
                raise exc if exc.location else exc.at(location) from None

    def _machine(self, value: str, location: str) -> None:
        """``-machine``: keyval with implied ``type`` merged into one dictionary for all
        ``-machine`` options (``keyval_parse_into``, 7.2); a JSON object is merged with
        ``keyval_merge`` semantics (vsgx extension, see the module docstring)."""
        if value.startswith("{"):
            keyval_merge(self.machine, parse_json_object(value))
        elif keyval_parse_into(self.machine, value, "type"):
            raise _refuse("-machine help")

    def _memory(self, value: str, location: str) -> None:
        """``-m``: QemuOpts ``qemu_mem_opts`` (implied ``size``; ``size``/``maxmem`` sizes,
        ``slots`` a number, each checked as it is parsed; repeated ``-m`` options merge)."""
        opts = split_opts(value, "size")
        for opt in opts:
            if opt.name in ("size", "maxmem"):
                _option_size(opt.name, opt.value)
            elif opt.name == "slots":
                _option_number(opt.name, opt.value)
            else:
                raise QemuOptionError(f"Invalid parameter '{opt.name}'")
        self.memory.extend(opts)

    def _smp(self, value: str, location: str) -> None:
        """``-smp``: keyval with implied ``cpus`` merged into the machine's ``smp`` property
        (``machine_parse_property_opt``); values are checked when the machine is set up."""
        parsed: dict[str, Any] = {}
        if keyval_parse_into(parsed, value, "cpus"):
            raise _refuse("-smp help")
        keyval_merge(self.smp, parsed)

    def _cpu(self, value: str, location: str) -> None:
        """``-cpu``: the last one wins; it is read after the backends exist."""
        self.cpu_option = value

    def _object(self, value: str, location: str) -> None:
        """``-object``: ``object_option_parse()`` — JSON when the text starts with ``{``,
        else QemuOpts (implied ``qom-type``) read by the options visitor; both forms are
        checked against ``ObjectOptions`` now, the object is created later."""
        if value.startswith("{"):
            backend = _backend_from_json(parse_json_object(value))
            self.objects.append(_ObjectSpec(backend, location, True))
            return
        ident = parse_opts_id(value)
        if ident is not None:  # qemu_opts_create(): checked before anything else
            if not id_wellformed(ident):
                raise QemuOptionError("Parameter 'id' expects an identifier",
                                      hint=IDENTIFIER_HINT)
            if ident in self.object_opts_ids:
                raise QemuOptionError(f"Duplicate ID '{ident}' for object")
            self.object_opts_ids.add(ident)
        opts = [opt for opt in split_opts(value, "qom-type") if opt.name != "id"]
        if any(opt.flag and opt.name in ("help", "?") for opt in opts):
            raise _refuse("-object help")
        qom_types = [opt.value for opt in opts if opt.name == "qom-type"]
        if not qom_types:
            raise QemuOptionError("Parameter 'qom-type' is missing")
        backend = _backend_from_opts(qom_types[-1], ident, opts)
        self.objects.append(_ObjectSpec(backend, location, False))

    def _numa(self, value: str, location: str) -> None:
        """``-numa``: QemuOpts (implied ``type``) read into ``NumaOptions`` by the options
        visitor (``softmmu/vl.c`` → ``hw/core/numa.c`` ``set_numa_options``)."""
        values = _opts_by_name(split_opts(value, "type"))
        kind = values.pop("type", [None])[-1]
        if kind is None:
            raise QemuOptionError("Parameter 'type' is missing")
        if kind not in _NUMA_TYPES:
            raise QemuOptionError(f"Parameter 'type' does not accept value '{kind}'")
        if kind != "node":
            raise _refuse(f"-numa {kind}")
        values.pop("id", None)  # QemuOpts takes the id; NumaOptions never sees it
        nodeid = cpus = mem = memdev = None
        for member in _NUMA_NODE_MEMBERS:
            given = values.pop(member, None)
            if given is None:
                continue
            if member == "nodeid":
                nodeid = _opts_uint16(member, given[-1])
            elif member == "cpus":
                cpus = parse_uint_list(member, given)
            elif member == "mem":
                mem = _opts_size(member, given[-1])
            elif member == "memdev":
                memdev = given[-1]
            else:
                raise _refuse(f"-numa node parameter '{member}'")
        if values:
            raise QemuOptionError(f"Invalid parameter '{next(iter(values))}'")
        self.numa.append(_NumaSpec(location, nodeid, cpus or (), mem, memdev))

    def _qmp(self, value: str, location: str) -> None:
        """``-qmp``: ``monitor_parse()`` → ``qemu_chr_parse_compat()`` (``chardev/char.c``)
        for ``unix:PATH[,opts]`` and ``tcp:[HOST]:PORT[,opts]``. An option error is followed
        by QEMU's second line, ``parse error: TEXT``."""
        self.qmp.append(_parse_qmp(value))

    def _incoming(self, value: str, location: str) -> None:
        """``-incoming URI``: stored as given (the last one wins); the machine checks and
        loads it at start (:mod:`vsgx.platform.migration`)."""
        self.incoming = value

    def _name(self, value: str, location: str) -> None:
        """``-name``: QemuOpts ``qemu_name_opts`` (implied ``guest``; ``process`` and
        ``debug-threads`` exist in QEMU and are refused by vsgx)."""
        opts = split_opts(value, "guest")
        for opt in opts:
            if opt.name == "debug-threads":
                parse_bool(opt.name, opt.value)
            elif opt.name not in ("guest", "process"):
                raise QemuOptionError(f"Invalid parameter '{opt.name}'")
        for opt in opts:
            if opt.name != "guest":
                raise _refuse(f"-name parameter '{opt.name}'")
            self.name = opt.value

    # -- steps 2 to 6 ----------------------------------------------------------------------

    def finish(self) -> MachineConfig:
        """Build the machine in QEMU's order and return its configuration."""
        machine = self._machine_type()
        epc_items = self._machine_properties(machine)
        smp = _smp_config(self.smp, machine)
        memory = self._memory_config()
        backends = self._create_backends()
        model, features = _parse_cpu_option(
            "qemu64" if self.cpu_option is None else self.cpu_option)
        numa = self._numa_nodes(backends, smp, memory)
        sections = _epc_sections(epc_items, backends, numa)
        cpu = _apply_cpu_features(model, features)
        return MachineConfig(
            machine=machine, memory=memory, smp=smp, cpu=cpu, objects=tuple(backends.values()),
            numa_nodes=tuple(sorted(numa, key=lambda node: node.nodeid)), sgx_epc=sections,
            qmp=tuple(self.qmp), incoming=self.incoming, name=self.name)

    def _machine_type(self) -> MachineType:
        """``select_machine()``: the ``type`` property, ``pc`` when absent."""
        name = self.machine.get("type", "pc")
        if not isinstance(name, str):
            raise QemuOptionError("Invalid parameter type for 'type', expected: string")
        if name in _MACHINES:
            return _MACHINES[name]
        if name in qemu72.MACHINE_TYPES:
            raise _refuse(f"machine type '{name}'")
        raise QemuOptionError("unsupported machine type",
                              hint="Use -machine help to list supported machines")

    def _machine_properties(self, machine: MachineType) -> list[tuple[str, int]]:
        """``qemu_apply_machine_options()``: set each ``-machine`` property; only
        ``sgx-epc`` is supported (``hw/i386/pc.c`` ``pc_machine_set_sgx_epc``)."""
        epc: list[tuple[str, int]] = []
        for key, value in self.machine.items():
            if key == "type":
                continue
            if key == "sgx-epc":
                epc = _visit_sgx_epc(value)
            elif key in qemu72.PC_MACHINE_PROPERTIES:
                raise _refuse(f"machine property '{key}'")
            else:
                raise QemuOptionError(
                    f"Property '{machine.versioned_name}-machine.{key}' not found")
        return epc

    def _memory_config(self) -> MemoryConfig:
        """``parse_memory_options()`` (``softmmu/vl.c``) then ``machine_set_mem()``
        (``hw/core/machine.c``): a size of 0 means "not given"; a suffix-less size is MiB;
        the size is rounded up to 8 KiB; ``slots`` needs ``maxmem``; ``maxmem`` must be at
        least the size, and above it when there are slots."""
        last: dict[str, str] = {opt.name: opt.value for opt in self.memory}
        size = MemoryConfig().size
        text = last.get("size")
        if text is not None and strtosz(text) != 0:
            if text[-1].isdigit():
                text += "M"
            try:
                size = strtosz(text)
            except SizeError:
                raise QemuOptionError("Parameter 'memory.size' expects size") from None
            size = (size + 8191) // 8192 * 8192
        slots = _option_number("slots", last["slots"]) if "slots" in last else None
        maxmem = strtosz(last["maxmem"]) if "maxmem" in last else None
        if maxmem is not None:
            if maxmem < size:
                raise QemuOptionError(
                    f"invalid value of maxmem: maximum memory size (0x{maxmem:x}) must be at "
                    f"least the initial memory size (0x{size:x})")
            if slots and maxmem == size:
                raise QemuOptionError(
                    "invalid value of maxmem: memory slots were specified but maximum memory "
                    f"size (0x{maxmem:x}) is equal to the initial memory size (0x{size:x})")
        elif slots is not None:
            raise QemuOptionError("slots specified but no max-size")
        return MemoryConfig(size=size, slots=slots or 0, maxmem=maxmem)

    def _create_backends(self) -> dict[str, MemoryBackend]:
        """``qemu_create_late_backends()`` → ``user_creatable_add_type()`` per ``-object``:
        check the id (JSON form), set the properties (``size`` 0 and host nodes beyond
        ``MAX_NODES`` are refused by their setters), add the object under ``/objects``
        (duplicate ids), then complete it (``host_memory_backend_memory_complete``: the
        policy and host-nodes must agree)."""
        created: dict[str, MemoryBackend] = {}
        for spec in self.objects:
            backend = spec.backend
            if spec.from_json and not id_wellformed(backend.id):
                raise QemuOptionError("Parameter 'id' expects an identifier",
                                      hint=IDENTIFIER_HINT)
            if backend.size == 0:
                raise QemuOptionError(
                    f"property 'size' of {backend.type} doesn't take value '0'")
            for node in backend.host_nodes:
                if node >= MAX_NODES:
                    raise QemuOptionError(f"Invalid host-nodes value: {node}")
            if backend.id in created:
                raise QemuOptionError(f"attempt to add duplicate property '{backend.id}' "
                                      "to object (type 'container')")
            created[backend.id] = backend
            if backend.host_nodes and backend.policy is HostMemPolicy.DEFAULT:
                raise QemuOptionError(
                    "host-nodes must be empty for policy default, or you should explicitly "
                    "specify a policy other than default")
            if not backend.host_nodes and backend.policy is not HostMemPolicy.DEFAULT:
                raise QemuOptionError(f"host-nodes must be set for policy {backend.policy}")
        return created

    def _numa_nodes(self, backends: dict[str, MemoryBackend], smp: SmpConfig,
                    memory: MemoryConfig) -> list[NumaNode]:
        """``parse_numa_opts()``/``parse_numa_node()`` then the NUMA half of
        ``numa_complete_configuration()`` (``hw/core/numa.c``)."""
        nodes: dict[int, NumaNode] = {}
        cpu_node: dict[int, int] = {}
        have_mem = have_memdevs = False
        for spec in self.numa:
            try:
                nodenr = spec.nodeid if spec.nodeid is not None else len(nodes)
                if nodenr >= MAX_NODES:
                    raise QemuOptionError(f"Max number of NUMA nodes reached: {nodenr}")
                if nodenr in nodes:
                    raise QemuOptionError(f"Duplicate NUMA nodeid: {nodenr}")
                for cpu in spec.cpus:
                    if cpu >= smp.maxcpus:
                        raise QemuOptionError(f"CPU index ({cpu}) should be smaller than "
                                              f"maxcpus ({smp.maxcpus})")
                    if cpu_node.get(cpu, nodenr) != nodenr:
                        raise QemuOptionError(
                            f"CPU is already assigned to node-id: {cpu_node[cpu]}")
                    cpu_node[cpu] = nodenr
                have_memdevs = have_memdevs or spec.memdev is not None
                have_mem = have_mem or spec.mem is not None
                if (spec.mem is not None and have_memdevs) or \
                        (spec.memdev is not None and have_mem):
                    raise QemuOptionError("numa configuration should use either mem= or "
                                          "memdev=,mixing both is not allowed")
                if spec.mem is not None:
                    raise QemuOptionError(
                        "Parameter -numa node,mem is not supported by this machine type",
                        hint="Use -numa node,memdev instead")
                backend = None
                if spec.memdev is not None:
                    backend = backends.get(spec.memdev)
                    if backend is None:
                        raise QemuOptionError(f"memdev={spec.memdev} is ambiguous")
            except QemuOptionError as exc:
                raise exc.at(spec.location) from None
            nodes[nodenr] = NumaNode(nodenr, spec.cpus, backend,
                                     backend.size if backend else 0)
        if not nodes and (memory.slots or (memory.maxmem or memory.size) > memory.size):
            # pc machines set auto_enable_numa_with_memhp and auto_enable_numa_with_memdev
            nodes[0] = NumaNode(0, (), None, memory.size)
        for nodeid in range(max(nodes, default=-1), -1, -1):
            if nodeid not in nodes:
                raise QemuOptionError(f"numa: Node ID missing: {nodeid}")
        total = sum(node.size for node in nodes.values())
        if nodes and total != memory.size:
            raise QemuOptionError(f"total memory for NUMA nodes (0x{total:x}) should equal "
                                  f"RAM size (0x{memory.size:x})")
        mapped: set[str] = set()
        for nodeid in sorted(nodes):  # numa_init_memdev_container()
            node_backend = nodes[nodeid].memdev
            if node_backend is not None:
                if node_backend.id in mapped:
                    raise QemuOptionError(
                        f"memory backend {node_backend.id} can't be used multiple times.")
                mapped.add(node_backend.id)
        return list(nodes.values())


# ---------------------------------------------------------------------------------------------
# Option-level value checks


def _opts_by_name(opts: list[QemuOpt]) -> dict[str, list[str]]:
    """Every value of every name, in order (the options visitor's ``unprocessed_opts``)."""
    values: dict[str, list[str]] = {}
    for opt in opts:
        values.setdefault(opt.name, []).append(opt.value)
    return values


def _option_size(name: str, value: str) -> int:
    """``parse_option_size()`` (``util/qemu-option.c``), used by QemuOpts with a schema."""
    try:
        return strtosz(value)
    except SizeError as exc:
        if exc.out_of_range:
            raise QemuOptionError(
                f"Value '{value}' is out of range for parameter '{name}'") from None
        raise QemuOptionError(f"Parameter '{name}' expects a non-negative number below 2^64",
                              hint=SIZE_HINT) from None


def _option_number(name: str, value: str) -> int:
    """``parse_option_number()`` (``util/qemu-option.c``): ``qemu_strtou64`` base 0."""
    parsed = parse_uint(value)
    if parsed is None or parsed[1] != len(value):
        raise QemuOptionError(f"Parameter '{name}' expects a number")
    return parsed[0]


def _opts_size(name: str, value: str) -> int:
    """The options visitor's ``opts_type_size`` (``qapi/opts-visitor.c``)."""
    try:
        return strtosz(value)
    except SizeError:
        raise QemuOptionError(f"Parameter '{name}' expects a size value") from None


def _opts_uint16(name: str, value: str) -> int:
    """The options visitor's ``opts_type_uint64`` then ``visit_type_uint16``."""
    parsed = parse_uint(value)
    if parsed is None or parsed[1] != len(value):
        raise QemuOptionError(f"Parameter '{name}' expects a uint64 value")
    if parsed[0] > 0xFFFF:
        raise QemuOptionError(f"Parameter '{name}' expects uint16_t")
    return parsed[0]


def _backend_type(qom_type: str) -> BackendType:
    """``ObjectType`` of ``ObjectOptions``: the two types vsgx creates, a refusal for the
    other types QEMU has, QEMU's enum error otherwise."""
    for kind in BackendType:
        if qom_type == kind.value:
            return kind
    if qom_type in qemu72.OBJECT_TYPES:
        raise _refuse(f"object type '{qom_type}'")
    raise QemuOptionError(f"Parameter 'qom-type' does not accept value '{qom_type}'")


def _policy(value: str) -> HostMemPolicy:
    """``HostMemPolicy`` enum lookup (``qapi_enum_parse``)."""
    for policy in HostMemPolicy:
        if value == policy.value:
            return policy
    raise QemuOptionError(f"Parameter 'policy' does not accept value '{value}'")


def _backend_from_opts(qom_type: str, ident: str | None, opts: list[QemuOpt]) -> MemoryBackend:
    """``visit_type_ObjectOptions`` with the options visitor (``qapi/opts-visitor.c``): the
    last occurrence of a scalar wins, ``host-nodes`` collects every occurrence and range,
    and a name no member consumed is ``Invalid parameter``."""
    kind = _backend_type(qom_type)
    if ident is None:
        raise QemuOptionError("Parameter 'id' is missing")
    values = _opts_by_name(opts)
    values.pop("qom-type")
    fields: dict[str, Any] = {}
    for member in _BACKEND_MEMBERS:
        given = values.pop(member, None)
        if given is None:
            if member == "size":
                raise QemuOptionError("Parameter 'size' is missing")
            continue
        if member not in _BACKEND_SUPPORTED:
            raise _refuse(f"{kind} property '{member}'")
        if member == "host-nodes":
            fields["host_nodes"] = parse_uint_list(member, given)
        elif member == "policy":
            fields["policy"] = _policy(given[-1])
        elif member == "size":
            fields["size"] = _opts_size(member, given[-1])
        else:
            fields[member] = parse_bool(member, given[-1])
    if values:
        raise QemuOptionError(f"Invalid parameter '{next(iter(values))}'")
    return MemoryBackend(type=kind, id=ident, **_backend_defaults(kind, fields))


def _backend_from_json(obj: dict[str, Any]) -> MemoryBackend:
    """``visit_type_ObjectOptions`` with the QObject input visitor
    (``qapi/qobject-input-visitor.c``): JSON types must match exactly, unknown members are
    ``Parameter 'NAME' is unexpected``."""
    obj = dict(obj)
    qom_type = _json_member(obj, "qom-type", str, "string")
    kind = _backend_type(qom_type)
    ident = _json_member(obj, "id", str, "string")
    fields: dict[str, Any] = {}
    for member in _BACKEND_MEMBERS:
        if member not in obj:
            if member == "size":
                raise QemuOptionError("Parameter 'size' is missing")
            continue
        if member not in _BACKEND_SUPPORTED:
            raise _refuse(f"{kind} property '{member}'")
        value = obj.pop(member)
        if member == "host-nodes":
            fields["host_nodes"] = _json_uint16_list(member, value)
        elif member == "policy":
            fields["policy"] = _policy(_json_type(member, value, str, "string"))
        elif member == "size":
            if not _is_json_int(value) or not 0 <= value < 1 << 64:
                raise QemuOptionError("Parameter 'size' expects uint64")
            fields["size"] = value
        else:
            fields[member] = _json_type(member, value, bool, "boolean")
    if obj:
        raise QemuOptionError(f"Parameter '{next(iter(obj))}' is unexpected")
    return MemoryBackend(type=kind, id=ident, **_backend_defaults(kind, fields))


def _backend_defaults(kind: BackendType, fields: dict[str, Any]) -> dict[str, Any]:
    """``share`` defaults to on for EPC (``backends/hostmem-epc.c`` instance init)."""
    fields.setdefault("share", kind is BackendType.EPC)
    return fields


def _is_json_int(value: Any) -> bool:
    """A JSON integer (Python's ``bool`` is an ``int`` but a JSON boolean is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(name: str, value: Any, kind: type, expected: str) -> Any:
    """``Invalid parameter type for 'NAME', expected: TYPE`` unless ``value`` is ``kind``."""
    ok = _is_json_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise QemuOptionError(f"Invalid parameter type for '{name}', expected: {expected}")
    return value


def _json_member(obj: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    """Take a mandatory member out of a JSON object."""
    if name not in obj:
        raise QemuOptionError(f"Parameter '{name}' is missing")
    return _json_type(name, obj.pop(name), kind, expected)


def _json_uint16_list(name: str, value: Any) -> tuple[int, ...]:
    """A ``['uint16']`` member in JSON: an array of integers 0..65535 (list elements are
    named ``NAME[i]`` by the QObject input visitor)."""
    items = _json_type(name, value, list, "array")
    result = []
    for index, item in enumerate(items):
        element = f"{name}[{index}]"
        _json_type(element, item, int, "integer")
        if not 0 <= item <= 0xFFFF:
            raise QemuOptionError(f"Parameter '{element}' expects uint16_t")
        result.append(item)
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# Machine properties


def _visit_sgx_epc(value: Any) -> list[tuple[str, int]]:
    """``pc_machine_set_sgx_epc`` → ``visit_type_SgxEPCList``: a list of ``{memdev: str,
    node: int}``, both mandatory (``qapi/machine.json`` ``SgxEPC``). Keyval text is read as
    the keyval input visitor reads it (``node`` through ``qemu_strtoi64`` base 0); JSON
    values must have the JSON type."""
    if not isinstance(value, list):
        raise QemuOptionError("Invalid parameter type for 'sgx-epc', expected: array")
    items: list[tuple[str, int]] = []
    for index, element in enumerate(value):
        path = f"sgx-epc.{index}"
        if not isinstance(element, dict):
            raise QemuOptionError(f"Invalid parameter type for '{path}', expected: object")
        element = dict(element)
        if "memdev" not in element:
            raise QemuOptionError(f"Parameter '{path}.memdev' is missing")
        memdev = element.pop("memdev")
        if isinstance(memdev, (dict, list)) and _is_keyval_tree(memdev):
            raise QemuOptionError(f"Parameters '{path}.memdev.*' are unexpected")
        _json_type(f"{path}.memdev", memdev, str, "string")
        if "node" not in element:
            raise QemuOptionError(f"Parameter '{path}.node' is missing")
        node = element.pop("node")
        if isinstance(node, KeyvalStr):
            parsed = parse_int64(node)
            if parsed is None:
                raise QemuOptionError(f"Parameter '{path}.node' expects integer")
            node = parsed
        elif isinstance(node, (dict, list)) and _is_keyval_tree(node):
            raise QemuOptionError(f"Parameters '{path}.node.*' are unexpected")
        else:
            _json_type(f"{path}.node", node, int, "integer")
        if element:
            raise QemuOptionError(f"Parameter '{path}.{next(iter(element))}' is unexpected")
        items.append((memdev, node))
    return items


def _is_keyval_tree(value: dict[str, Any] | list[Any]) -> bool:
    """True when a dict or list was built by keyval (its leaves are keyval strings), where
    QEMU's keyval visitor says ``Parameters 'X.*' are unexpected`` for a non-scalar."""
    leaves = value.values() if isinstance(value, dict) else value
    return all(isinstance(leaf, KeyvalStr) or
               (isinstance(leaf, (dict, list)) and _is_keyval_tree(leaf)) for leaf in leaves)


def _smp_config(smp: dict[str, Any], machine: MachineType) -> SmpConfig:
    """The ``smp`` machine property: ``visit_type_SMPConfiguration`` (keyval; integers),
    then ``machine_parse_smp_config()`` (``hw/core/machine-smp.c``, 7.2), which works in C
    ``unsigned`` arithmetic, prefers cores over sockets, computes threads last, and checks
    the product of the topology and the machine's CPU limit."""
    if not smp:
        return SmpConfig()
    values: dict[str, int] = {}
    rest = dict(smp)
    for member in _SMP_MEMBERS:
        if member not in rest:
            continue
        text = rest.pop(member)
        if not isinstance(text, str):
            raise QemuOptionError(f"Parameters 'smp.{member}.*' are unexpected")
        parsed = parse_int64(text)
        if parsed is None:
            raise QemuOptionError(f"Parameter 'smp.{member}' expects integer")
        values[member] = parsed & 0xFFFFFFFF
    if rest:
        raise QemuOptionError(f"Parameter 'smp.{next(iter(rest))}' is unexpected")

    def u32(value: int) -> int:
        return value & 0xFFFFFFFF

    def div(a: int, b: int) -> int:  # QEMU would trap on a zero divisor (wrapped product)
        return a // b if b else 0

    cpus, sockets, dies, clusters, cores, threads, maxcpus = (
        values.get(member, 0) for member in _SMP_MEMBERS)
    if clusters > 1:
        raise QemuOptionError("clusters not supported by this machine's CPU topology")
    dies = dies or 1
    clusters = clusters or 1
    if cpus == 0 and maxcpus == 0:
        sockets, cores, threads = sockets or 1, cores or 1, threads or 1
    else:
        maxcpus = maxcpus or cpus
        if cores == 0:
            sockets, threads = sockets or 1, threads or 1
            cores = div(maxcpus, u32(sockets * dies * clusters * threads))
        elif sockets == 0:
            threads = threads or 1
            sockets = div(maxcpus, u32(dies * clusters * cores * threads))
        if threads == 0:
            threads = div(maxcpus, u32(sockets * dies * clusters * cores))
    maxcpus = maxcpus or u32(sockets * dies * clusters * cores * threads)
    cpus = cpus or maxcpus
    topology = f"sockets ({sockets}) * dies ({dies}) * cores ({cores}) * threads ({threads})"
    if u32(sockets * dies * clusters * cores * threads) != maxcpus:
        raise QemuOptionError("Invalid CPU topology: product of the hierarchy must match "
                              f"maxcpus: {topology} != maxcpus ({maxcpus})")
    if maxcpus < cpus:
        raise QemuOptionError("Invalid CPU topology: maxcpus must be equal to or greater than "
                              f"smp: {topology} == maxcpus ({maxcpus}) < smp_cpus ({cpus})")
    if maxcpus > machine.max_cpus:
        signed = maxcpus - (1 << 32) if maxcpus >= 1 << 31 else maxcpus
        raise QemuOptionError(f"Invalid SMP CPUs {signed}. The max CPUs supported by machine "
                              f"'{machine.versioned_name}' is {machine.max_cpus}")
    return SmpConfig(cpus=cpus, sockets=sockets, dies=dies, cores=cores, threads=threads,
                     maxcpus=maxcpus)


def _epc_sections(items: list[tuple[str, int]], backends: dict[str, MemoryBackend],
                  numa: list[NumaNode]) -> tuple[EpcSection, ...]:
    """``pc_machine_init_sgx_epc()`` (``hw/i386/sgx.c``) and ``sgx_epc_realize()``
    (``hw/i386/sgx-epc.c``), in list order: resolve the ``memdev`` link (``Device 'ID' not
    found``, or the wrong type), set ``node`` (a uint32 property: a negative or huge value
    fails; inferred from the property type), and refuse a backend already mapped by a NUMA
    node or an earlier section."""
    busy = {node.memdev.id for node in numa if node.memdev is not None}
    sections: list[EpcSection] = []
    for memdev, node in items:
        backend = backends.get(memdev)
        if backend is None:
            raise QemuOptionError(f"Device '{memdev}' not found")
        if backend.type is not BackendType.EPC:
            raise QemuOptionError(
                "Invalid parameter type for 'memdev', expected: memory-backend-epc")
        if not 0 <= node <= 0xFFFFFFFF:
            raise QemuOptionError("Parameter 'node' expects uint32_t")
        if memdev in busy:
            raise QemuOptionError(f"can't use already busy memdev: {memdev}")
        busy.add(memdev)
        sections.append(EpcSection(backend, node))
    return tuple(sections)


# ---------------------------------------------------------------------------------------------
# -cpu


@dataclass(frozen=True)
class _CpuFeatures:
    """``x86_cpu_parse_featurestr()``'s three lists: ``feat=value`` globals (names with
    ``_`` turned into ``-``), ``+feat`` and ``-feat`` (names kept as typed)."""

    globals_: tuple[tuple[str, str], ...]
    plus: tuple[str, ...]
    minus: tuple[str, ...]


def _parse_cpu_option(option: str) -> tuple[str, _CpuFeatures]:
    """``parse_cpu_option()`` (``softmmu/vl.c``): the model is the text before the first
    comma and must be a known model (``host`` included: vsgx emulates the host); the rest is
    split on commas with ``strtok`` (no escaping, empty items skipped)."""
    if not option:
        raise QemuOptionError("-cpu option cannot be empty")
    model, _, rest = option.partition(",")
    if model not in qemu72.CPU_MODELS:
        raise QemuOptionError(f"unable to find CPU model '{model}'")
    globals_: list[tuple[str, str]] = []
    plus: list[str] = []
    minus: list[str] = []
    for item in filter(None, rest.split(",")):
        if item[0] == "+":
            plus.append(item[1:])
        elif item[0] == "-":
            minus.append(item[1:])
        else:
            name, eq, value = item.partition("=")
            globals_.append((name.replace("_", "-"), value if eq else "on"))
    return model, _CpuFeatures(tuple(globals_), tuple(plus), tuple(minus))


def _cpu_flag(typename: str, name: str) -> SgxFeature:
    """The SGX flag ``name``; other CPU flags QEMU has are refused by name, unknown ones get
    ``object_property_find_err()``'s message."""
    for feature in SgxFeature:
        if name == feature.value:
            return feature
    if name in qemu72.CPU_FEATURES:
        raise _refuse(f"CPU feature '{name}'")
    raise QemuOptionError(f"Property '{typename}.{name}' not found")


def _apply_cpu_features(model: str, features: _CpuFeatures) -> CpuConfig:
    """Creating the vCPU: the ``feat=value`` globals are applied in order
    (``qdev_prop_set_globals``: ``can't apply global TYPE.NAME=VALUE: ...``), then
    ``x86_cpu_expand_features()`` sets every ``+feat`` on and then every ``-feat`` off."""
    typename = f"{model}-x86_64-cpu"
    result: dict[SgxFeature, bool] = {}
    for name, value in features.globals_:
        try:
            result[_cpu_flag(typename, name)] = parse_bool(name, value)
        except QemuOptionError as exc:
            if exc.detail.endswith("is not supported by vsgx"):
                raise
            raise QemuOptionError(
                f"can't apply global {typename}.{name}={value}: {exc.detail}") from None
    for name in features.plus:
        result[_cpu_flag(typename, name)] = True
    for name in features.minus:
        result[_cpu_flag(typename, name)] = False
    ordered = tuple((feature, result[feature]) for feature in SgxFeature if feature in result)
    return CpuConfig(model=model, features=ordered)


# ---------------------------------------------------------------------------------------------
# -qmp


def _parse_qmp(value: str) -> QmpConfig:
    """``qemu_chr_parse_compat()`` (``chardev/char.c``) for the two socket forms vsgx's QMP
    server offers, ``unix:PATH`` and ``tcp:HOST:PORT`` (``sscanf("%64[^:]:%32[^,]")``, or
    ``:PORT`` for every address), each followed by socket options; vsgx requires
    ``server=on``. The port must be numeric (QEMU would look a service name up)."""
    if value.startswith("unix:"):
        settings = _qmp_options(value, split_opts(value[5:], "path"), allow_path=True)
        path = settings.get("path", "")
        if not path:
            raise QemuOptionError("Unable to parse FD number")
        return _qmp_config("unix", settings, path=path)
    if value.startswith("tcp:"):
        rest = value[4:]
        match = re.match(r"([^:]{1,64}):([^,]{1,32})", rest) or re.match(r"():([^,]{1,32})", rest)
        if match is None:
            raise QemuOptionError(f"parse error: {value}")
        host, port = match.group(1), match.group(2)
        tail = rest[match.end():]
        settings = _qmp_options(value, split_opts(tail[1:]) if tail.startswith(",") else [],
                                allow_path=False)
        if not port.isdigit() or int(port) > 0xFFFF:
            raise QemuOptionError(f"address resolution failed for {host}:{port}: "
                                  "Servname not supported for ai_socktype")
        return _qmp_config("tcp", settings, host=host, port=int(port))
    if value.startswith(_CHARDEV_COMPAT):
        raise _refuse("a -qmp character device other than unix: or tcp:")
    raise QemuOptionError(f"'{value}' is not a valid char driver",
                          also=(f"parse error: {value}",))


def _qmp_options(value: str, opts: list[QemuOpt], *, allow_path: bool) -> dict[str, Any]:
    """Check socket options against ``qemu_chardev_opts`` as ``qemu_opts_do_parse()`` does
    (an unknown name or a bad boolean is reported, then ``parse error: TEXT``) and keep
    ``server``, ``wait`` (and ``path`` for unix sockets); refuse the other socket options."""
    settings: dict[str, Any] = {}
    also = (f"parse error: {value}",)
    for opt in opts:
        if opt.name in _CHARDEV_BOOLS:
            try:
                settings[opt.name] = parse_bool(opt.name, opt.value)
            except QemuOptionError as exc:
                raise QemuOptionError(exc.detail, also=also) from None
        elif opt.name == "path" and allow_path:
            settings["path"] = opt.value
        elif opt.name not in _CHARDEV_OTHER:
            raise QemuOptionError(f"Invalid parameter '{opt.name}'", also=also)
    for opt in opts:
        if opt.name not in settings:
            raise _refuse(f"-qmp socket option '{opt.name}'")
    return settings


def _qmp_config(transport: str, settings: dict[str, Any], **where: Any) -> QmpConfig:
    """A QMP endpoint; a client socket (``server`` off, QEMU's default) is refused."""
    if not settings.get("server", False):
        raise _refuse("a -qmp client socket (server=off)")
    return QmpConfig(transport=transport, server=True, wait=settings.get("wait", True),
                     **where)
