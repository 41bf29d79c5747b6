"""The typed result of parsing a QEMU command line: a frozen tree rooted at
:class:`MachineConfig`.

Every value here has already been validated the way QEMU 7.2 validates it (see
:mod:`vsgx.platform.options`); later layers (guest-physical layout, CPUID, ACPI, QMP) read
these objects and never see option text. Defaults are QEMU's for the ``pc``/``q35`` machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class MachineType(Enum):
    """The machine types vsgx builds (``hw/i386/pc_piix.c``, ``hw/i386/pc_q35.c``).

    ``pc`` and ``q35`` are QEMU's aliases for the newest versioned types, which in 7.2 are
    ``pc-i440fx-7.2`` and ``pc-q35-7.2``; the value is (alias, versioned name, max vCPUs).
    """

    PC = ("pc", "pc-i440fx-7.2", 255)
    Q35 = ("q35", "pc-q35-7.2", 288)

    @property
    def alias(self) -> str:
        """The short name (``pc`` or ``q35``)."""
        return self.value[0]

    @property
    def versioned_name(self) -> str:
        """QEMU's versioned machine name; the QOM type is this plus ``-machine``."""
        return self.value[1]

    @property
    def max_cpus(self) -> int:
        """``MachineClass.max_cpus`` (255 for i440fx, 288 for q35 in 7.2)."""
        return self.value[2]


@dataclass(frozen=True)
class MemoryConfig:
    """``-m [size=]N[,slots=N][,maxmem=N]`` (``softmmu/vl.c`` ``parse_memory_options``,
    ``hw/core/machine.c`` ``machine_set_mem``). ``size`` is guest RAM in bytes, rounded up
    to 8 KiB; 128 MiB when ``-m`` is absent. ``maxmem`` is None when not given."""

    size: int = 128 << 20
    slots: int = 0
    maxmem: int | None = None


@dataclass(frozen=True)
class SmpConfig:
    """``-smp`` after ``machine_parse_smp_config()`` (``hw/core/machine-smp.c``) has filled
    in the omitted values; ``maxcpus`` is the number of possible vCPUs (hotpluggable ones
    included), ``cpus`` the number present at start."""

    cpus: int = 1
    sockets: int = 1
    dies: int = 1
    cores: int = 1
    threads: int = 1
    maxcpus: int = 1


@dataclass(frozen=True)
class CpuidBit:
    """Where a CPU feature lives: CPUID leaf, subleaf, register name and bit number."""

    leaf: int
    subleaf: int
    register: str
    bit: int


class SgxFeature(StrEnum):
    """The ``-cpu`` feature names vsgx accepts, with the CPUID bit each controls
    (``target/i386/cpu.c`` ``feature_word_info``; Intel SDM Vol. 3D 36.7.2 for leaf 12H).

    QEMU 7.2 knows ``sgx``, ``sgxlc``, ``sgx1``, ``sgx2``, ``sgx-exinfo``, ``sgx-debug``,
    ``sgx-mode64``, ``sgx-provisionkey``, ``sgx-tokenkey`` and ``sgx-kss``. ``sgx-edeccssa``
    and ``sgx-aex-notify`` arrived in later QEMU; ``sgx-enclv`` and ``sgx-encls-c`` appear
    only in the QEMU 6.2 documentation's list. vsgx accepts all of them.
    """

    SGX = "sgx"
    SGXLC = "sgxlc"
    SGX1 = "sgx1"
    SGX2 = "sgx2"
    SGX_ENCLV = "sgx-enclv"
    SGX_ENCLS_C = "sgx-encls-c"
    SGX_EDECCSSA = "sgx-edeccssa"
    SGX_EXINFO = "sgx-exinfo"
    SGX_DEBUG = "sgx-debug"
    SGX_MODE64 = "sgx-mode64"
    SGX_PROVISIONKEY = "sgx-provisionkey"
    SGX_TOKENKEY = "sgx-tokenkey"
    SGX_KSS = "sgx-kss"
    SGX_AEX_NOTIFY = "sgx-aex-notify"

    @property
    def cpuid(self) -> CpuidBit:
        """The CPUID bit this flag sets or clears in the guest's view."""
        return _SGX_CPUID[self]


_SGX_CPUID = {
    SgxFeature.SGX: CpuidBit(0x7, 0, "ebx", 2),
    SgxFeature.SGXLC: CpuidBit(0x7, 0, "ecx", 30),
    SgxFeature.SGX1: CpuidBit(0x12, 0, "eax", 0),
    SgxFeature.SGX2: CpuidBit(0x12, 0, "eax", 1),
    SgxFeature.SGX_ENCLV: CpuidBit(0x12, 0, "eax", 5),
    SgxFeature.SGX_ENCLS_C: CpuidBit(0x12, 0, "eax", 6),
    SgxFeature.SGX_EDECCSSA: CpuidBit(0x12, 0, "eax", 11),
    SgxFeature.SGX_EXINFO: CpuidBit(0x12, 0, "ebx", 0),
    SgxFeature.SGX_DEBUG: CpuidBit(0x12, 1, "eax", 1),
    SgxFeature.SGX_MODE64: CpuidBit(0x12, 1, "eax", 2),
    SgxFeature.SGX_PROVISIONKEY: CpuidBit(0x12, 1, "eax", 4),
    SgxFeature.SGX_TOKENKEY: CpuidBit(0x12, 1, "eax", 5),
    SgxFeature.SGX_KSS: CpuidBit(0x12, 1, "eax", 7),
    SgxFeature.SGX_AEX_NOTIFY: CpuidBit(0x12, 1, "eax", 10),
}


@dataclass(frozen=True)
class CpuConfig:
    """``-cpu MODEL[,+feat][,-feat][,feat=on|off]`` (``target/i386/cpu.c``
    ``x86_cpu_parse_featurestr``). ``model`` is a QEMU model name or ``host``; ``features``
    holds only the SGX flags the command line set, each with its final value (``feat=`` in
    order, then every ``+feat``, then every ``-feat``, as ``x86_cpu_expand_features``
    applies them). The default model of ``pc``/``q35`` is ``qemu64``."""

    model: str = "qemu64"
    features: tuple[tuple[SgxFeature, bool], ...] = ()

    def requested(self, feature: SgxFeature) -> bool | None:
        """True/False when the command line forced ``feature`` on/off, None when it did not
        mention it (the model's or host's default applies)."""
        for name, value in self.features:
            if name is feature:
                return value
        return None


class BackendType(StrEnum):
    """The ``-object`` types vsgx creates (``backends/hostmem-ram.c``,
    ``backends/hostmem-epc.c``)."""

    RAM = "memory-backend-ram"
    EPC = "memory-backend-epc"


class HostMemPolicy(StrEnum):
    """``HostMemPolicy`` (``qapi/machine.json``): how the backend's pages are bound to host
    NUMA nodes (``mbind(2)`` mode)."""

    DEFAULT = "default"
    PREFERRED = "preferred"
    BIND = "bind"
    INTERLEAVE = "interleave"


@dataclass(frozen=True)
class MemoryBackend:
    """One ``-object memory-backend-ram|epc`` (``backends/hostmem.c``). ``size`` is in bytes
    (never 0); ``host_nodes`` are host NUMA node numbers (each below 128); ``share``
    defaults to True for EPC and False for RAM, as QEMU's instance initialisers set it."""

    type: BackendType
    id: str
    size: int
    prealloc: bool = False
    share: bool = False
    host_nodes: tuple[int, ...] = ()
    policy: HostMemPolicy = HostMemPolicy.DEFAULT


@dataclass(frozen=True)
class NumaNode:
    """A guest NUMA node (``hw/core/numa.c`` ``parse_numa_node``). ``memdev`` is the RAM
    backend giving the node its memory (None for a memoryless node or for the node QEMU
    creates by itself when memory hotplug is configured without ``-numa``); ``size`` is the
    node's RAM in bytes; ``cpus`` are vCPU indices."""

    nodeid: int
    cpus: tuple[int, ...] = ()
    memdev: MemoryBackend | None = None
    size: int = 0


@dataclass(frozen=True)
class EpcSection:
    """One ``-M sgx-epc.N.memdev=ID,sgx-epc.N.node=NODE`` entry, in index order: the EPC
    backend it maps and the guest NUMA node it reports (``hw/i386/sgx.c``
    ``pc_machine_init_sgx_epc``). The section's size is ``backend.size``."""

    backend: MemoryBackend
    node: int

    @property
    def size(self) -> int:
        """The section's size in bytes."""
        return self.backend.size


@dataclass(frozen=True)
class QmpConfig:
    """``-qmp unix:PATH,...`` or ``-qmp tcp:HOST:PORT,...`` (``chardev/char.c``
    ``qemu_chr_parse_compat``). ``path`` is set for unix sockets, ``host``/``port`` for
    TCP (``host`` may be empty: every address). ``wait`` means QEMU would block at start
    until a client connects."""

    transport: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    server: bool = True
    wait: bool = True


@dataclass(frozen=True)
class MachineConfig:
    """The whole machine a QEMU command line describes.

    ``objects`` are the memory backends in command-line order; ``numa_nodes`` are sorted by
    node id; ``sgx_epc`` lists the EPC sections in ``sgx-epc.N`` order; ``qmp`` holds every
    ``-qmp`` monitor in order; ``incoming`` is the ``-incoming`` URI; ``name`` the ``-name``
    guest name.
    """

    machine: MachineType = MachineType.PC
    memory: MemoryConfig = MemoryConfig()
    smp: SmpConfig = SmpConfig()
    cpu: CpuConfig = CpuConfig()
    objects: tuple[MemoryBackend, ...] = ()
    numa_nodes: tuple[NumaNode, ...] = ()
    sgx_epc: tuple[EpcSection, ...] = ()
    qmp: tuple[QmpConfig, ...] = ()
    incoming: str | None = None
    name: str | None = None

    def backend(self, ident: str) -> MemoryBackend:
        """The backend with id ``ident``; KeyError when there is none."""
        for obj in self.objects:
            if obj.id == ident:
                return obj
        raise KeyError(ident)
