"""The emulated physical host: what its CPU enumerates, its EPC, and its fused secrets.

QEMU's SGX support is bounded by the host: ``-cpu host`` copies the host's SGX capabilities,
sub-features the host lacks "cannot be emulated" (``docs/system/i386/sgx.rst``), and
``query-sgx-capabilities`` reads the host's CPUID leaf 0x12. vsgx therefore emulates the host
too. A :class:`HostProfile` is a kind of machine (a CPU and BIOS configuration); a
:class:`Host` is one such machine, with a name, its own fused keys (kept under the user's data
directory so the same host keeps its keys across runs) and its EPC pool, from which every
virtual EPC section built on it draws its pages (Linux ``arch/x86/kernel/cpu/sgx/virt.c``:
``sgx_vepc_fault`` takes a page from the host's EPC on first touch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsgx.arch import PAGE_SIZE, AttributesFlags, Xfrm
from vsgx.arch.cpuid import encode_epc_section
from vsgx.cpu.epc import EpcSection
from vsgx.crypto.keys import BootSecrets, PlatformSecrets

MiB = 1 << 20
GiB = 1 << 30

@dataclass(frozen=True)
class HostEpcSection:
    """One EPC section of the host: physical base, size and the host NUMA node it is on."""

    base: int
    size: int
    node: int


@dataclass(frozen=True)
class HostProfile:
    """A kind of SGX host: the CPUID bits its processor enumerates and how its BIOS set it up.

    ``leaf12_0_eax``: SGX1/SGX2/ENCLV/ENCLS-C/EDECCSSA bits; ``miscselect``: CPUID.(12H,0).EBX;
    ``attributes``/``xfrm``: CPUID.(12H,1) EAX..EDX; ``max_enclave_size_not64`` and
    ``max_enclave_size_64``: log2 sizes in CPUID.(12H,0).EDX; ``lc_locked``: the BIOS locked
    IA32_FEATURE_CONTROL without SGX_LC_ENABLE, so the LE public-key hash is fixed to Intel's
    key and the host kernel cannot offer launch control to guests.
    """

    name: str
    description: str
    sgx: bool
    flc: bool
    lc_locked: bool
    leaf12_0_eax: int
    miscselect: int
    attributes: int
    xfrm: int
    max_enclave_size_not64: int
    max_enclave_size_64: int
    epc_sections: tuple[HostEpcSection, ...]
    epc_property: int
    numa_nodes: int

    @property
    def sgx_lc_available(self) -> bool:
        """Launch control usable by the host kernel and so by KVM guests (Linux
        ``feat_ctl.c`` clears X86_FEATURE_SGX_LC when the BIOS locked it)."""
        return self.flc and not self.lc_locked

    def kvm_cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        """What KVM offers guests (``KVM_GET_SUPPORTED_CPUID``): the host's CPUID without
        launch control when the BIOS locked it (Linux ``feat_ctl.c`` clears
        X86_FEATURE_SGX_LC, and KVM exposes SGX_LC only when the host has it)."""
        eax, ebx, ecx, edx = self.cpuid(leaf, subleaf)
        if (leaf, subleaf) == (0x7, 0) and not self.sgx_lc_available:
            ecx &= ~(1 << 30)
        return (eax, ebx, ecx, edx)

    @property
    def epc_size(self) -> int:
        return sum(s.size for s in self.epc_sections)

    def cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        """What the CPUID instruction returns on the host (EAX, EBX, ECX, EDX) for leaves 7
        and 0x12 (SDM Vol. 2A CPUID; SDM 36.7.2). Only the SGX bits of leaf 7 are modelled;
        every other register bit reads 0."""
        if leaf == 0x7 and subleaf == 0:
            return (0, 1 << 2 if self.sgx else 0, 1 << 30 if self.sgx and self.flc else 0, 0)
        if leaf != 0x12 or not self.sgx:
            return (0, 0, 0, 0)
        if subleaf == 0:
            edx = self.max_enclave_size_not64 | self.max_enclave_size_64 << 8
            return (self.leaf12_0_eax, self.miscselect, 0, edx)
        if subleaf == 1:
            return (self.attributes & 0xFFFF_FFFF, self.attributes >> 32,
                    self.xfrm & 0xFFFF_FFFF, self.xfrm >> 32)
        index = subleaf - 2
        if index >= len(self.epc_sections):
            return (0, 0, 0, 0)
        s = self.epc_sections[index]
        return encode_epc_section(s.base, s.size, self.epc_property)


_ATTR_SERVER = int(AttributesFlags.DEBUG | AttributesFlags.MODE64BIT
                   | AttributesFlags.PROVISIONKEY | AttributesFlags.EINITTOKEN_KEY
                   | AttributesFlags.KSS | AttributesFlags.AEXNOTIFY)
_ATTR_CLIENT = int(AttributesFlags.DEBUG | AttributesFlags.MODE64BIT
                   | AttributesFlags.PROVISIONKEY | AttributesFlags.EINITTOKEN_KEY)

PROFILES: dict[str, HostProfile] = {
    p.name: p for p in (
        HostProfile(
            name="icelake-sp",
            description="2-socket Intel Xeon (Ice Lake-SP) server: SGX1, SGX2, flexible "
                        "launch control unlocked, KSS, EXINFO, AEX-Notify, 64 GiB of EPC "
                        "per socket",
            sgx=True, flc=True, lc_locked=False,
            leaf12_0_eax=0b1 | 0b10 | 1 << 11,  # SGX1, SGX2, EDECCSSA
            miscselect=0x1,  # EXINFO
            attributes=_ATTR_SERVER,
            xfrm=int(Xfrm.X87 | Xfrm.SSE | Xfrm.AVX | Xfrm.OPMASK | Xfrm.ZMM_HI256
                     | Xfrm.HI16_ZMM | Xfrm.PKRU),
            max_enclave_size_not64=31, max_enclave_size_64=57,
            epc_sections=(HostEpcSection(0x40_0000_0000, 64 * GiB, 0),
                          HostEpcSection(0x80_0000_0000, 64 * GiB, 1)),
            epc_property=0x1, numa_nodes=2),
        HostProfile(
            name="coffeelake",
            description="Intel Core (Coffee Lake) desktop: SGX1 only, 93.5 MiB usable EPC of "
                        "a 128 MiB PRM, launch control locked to Intel's key by the BIOS",
            sgx=True, flc=True, lc_locked=True,
            leaf12_0_eax=0b1,  # SGX1
            miscselect=0x0,
            attributes=_ATTR_CLIENT,
            xfrm=int(Xfrm.X87 | Xfrm.SSE | Xfrm.AVX | Xfrm.BNDREGS | Xfrm.BNDCSR),
            max_enclave_size_not64=31, max_enclave_size_64=36,
            epc_sections=(HostEpcSection(0x7020_0000, 0x5D8_0000, 0),),
            epc_property=0x1, numa_nodes=1),
        HostProfile(
            name="no-sgx",
            description="an x86-64 host without SGX (for checking how configurations fail)",
            sgx=False, flc=False, lc_locked=False, leaf12_0_eax=0, miscselect=0,
            attributes=0, xfrm=0, max_enclave_size_not64=0, max_enclave_size_64=0,
            epc_sections=(), epc_property=0, numa_nodes=1),
    )
}
DEFAULT_PROFILE = "icelake-sp"
DEFAULT_HOST = "default"


class HostError(Exception):
    """A host name, profile or identity file vsgx cannot use; the message says why."""


class EpcPoolExhausted(HostError):
    """The host's EPC cannot supply the pages a virtual EPC section needs."""


def profile(name: str) -> HostProfile:
    """The profile called ``name``; :class:`HostError` listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise HostError(f"unknown host profile '{name}' (known profiles: {known})") from None


_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def data_dir() -> Path:
    """Where vsgx keeps host identities: ``$XDG_DATA_HOME/vsgx`` (default
    ``~/.local/share/vsgx``), per the XDG Base Directory Specification."""
    base = os.environ.get("XDG_DATA_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "vsgx"


class HostEpcPool:
    """The host's EPC as a pool of pages per host NUMA node, shared by every virtual EPC
    section built on the host through its :meth:`binding`.

    A vEPC section bound to host nodes (``host-nodes=…,policy=bind``) draws only from those
    nodes; otherwise from any node, lowest first. Pages are counted, not tracked by address:
    a virtual EPC page has its own memory, so no page is ever visible to two VMs.
    """

    def __init__(self, sections: tuple[HostEpcSection, ...]) -> None:
        self._lock = threading.Lock()
        self.capacity: dict[int, int] = {}
        for s in sections:
            self.capacity[s.node] = self.capacity.get(s.node, 0) + s.size // PAGE_SIZE
        self.used = dict.fromkeys(self.capacity, 0)

    def _nodes(self, nodes: tuple[int, ...], strict: bool) -> list[int]:
        if not nodes:
            return sorted(self.capacity)
        first = [n for n in nodes if n in self.capacity]
        return first if strict else first + [n for n in sorted(self.capacity) if n not in first]

    def binding(self, nodes: tuple[int, ...] = (), *, strict: bool = False) -> EpcPoolBinding:
        """The backing for one vEPC section: draw its pages from host ``nodes``, only from
        them when ``strict`` (``policy=bind``), from them first otherwise (``preferred``,
        ``interleave``); from any node when ``nodes`` is empty."""
        return EpcPoolBinding(self, nodes, strict)

    def _take(self, binding: EpcPoolBinding, pages: int) -> None:
        with self._lock:
            nodes = self._nodes(binding.nodes, binding.strict)
            free = {n: self.capacity[n] - self.used[n] for n in nodes}
            if sum(free.values()) < pages:
                where = "" if not (binding.nodes and binding.strict) else (
                    " on host node" + ("s " if len(nodes) > 1 else " ")
                    + ",".join(map(str, nodes)))
                raise EpcPoolExhausted(
                    f"host EPC exhausted: {pages} page(s) wanted, {sum(free.values())} "
                    f"free{where} ({sum(self.capacity[n] for n in nodes) * PAGE_SIZE >> 20} "
                    "MiB in all)")
            for n in nodes:
                take = min(pages, free[n])
                if take:
                    self.used[n] += take
                    binding.drawn[n] = binding.drawn.get(n, 0) + take
                    pages -= take

    def _give(self, binding: EpcPoolBinding, pages: int) -> None:
        with self._lock:
            for n in sorted(binding.drawn, reverse=True):
                give = min(pages, binding.drawn[n])
                binding.drawn[n] -= give
                self.used[n] -= give
                pages -= give

    def drawn_by(self, section: EpcSection) -> dict[int, int]:
        """Pages ``section`` holds, per host node."""
        backing = section.backing
        if not isinstance(backing, EpcPoolBinding) or backing.pool is not self:
            return {}
        with self._lock:
            return {n: c for n, c in backing.drawn.items() if c}


class EpcPoolBinding:
    """One vEPC section's claim on a :class:`HostEpcPool` (an
    :class:`~vsgx.cpu.epc.EpcBacking`): where its pages may come from, and how many it holds
    per host node."""

    def __init__(self, pool: HostEpcPool, nodes: tuple[int, ...], strict: bool) -> None:
        self.pool = pool
        self.nodes = nodes
        self.strict = strict
        self.drawn: dict[int, int] = {}

    def commit(self, section: EpcSection, pages: int) -> None:
        self.pool._take(self, pages)

    def release(self, section: EpcSection, pages: int) -> None:
        self.pool._give(self, pages)


@dataclass(eq=False)
class Host:
    """One emulated physical machine: a profile, fused secrets, a boot, an EPC pool.

    Use :func:`open_host`, which returns the same object for the same name within a process
    (VMs on one host share its EPC pool and keys) and persists the identity on disk.
    """

    name: str
    profile: HostProfile
    secrets: PlatformSecrets
    boot: BootSecrets
    pool: HostEpcPool
    path: Path | None = None


_HOSTS: dict[str, Host] = {}
_HOSTS_LOCK = threading.Lock()


def open_host(name: str = DEFAULT_HOST, profile_name: str | None = None, *,
              persist: bool = True) -> Host:
    """The host called ``name``.

    The first time a name is used its identity (profile and a random 32-byte seed for the
    fused secrets) is written to ``data_dir()/hosts/NAME.json`` with mode 0600; later runs
    read it back, so the host keeps its keys. ``profile_name`` picks the profile for a new
    host (default :data:`DEFAULT_PROFILE`) and must match an existing one's: a machine does
    not change its processor. ``persist=False`` makes a throwaway host known only to this
    process. Each process is one boot of the host (fresh per-boot keys).
    """
    if not _HOST_NAME.fullmatch(name):
        raise HostError(f"host name '{name}' is not valid: use up to 64 letters, digits, "
                        "'.', '_' and '-', not starting with '.' or '-'")
    if profile_name is not None:
        profile(profile_name)
    with _HOSTS_LOCK:
        host = _HOSTS.get(name)
        if host is None:
            path = data_dir() / "hosts" / f"{name}.json" if persist else None
            prof, seed = _load_or_create(path, profile_name)
            host = Host(name, prof, _fused_secrets(prof, seed), BootSecrets.random(),
                        HostEpcPool(prof.epc_sections), path)
            _HOSTS[name] = host
    if profile_name is not None and profile_name != host.profile.name:
        raise HostError(f"host '{name}' is a {host.profile.name} host, not {profile_name} "
                        f"(choose another --host name for a {profile_name} host)")
    return host


def _fused_secrets(prof: HostProfile, seed: bytes) -> PlatformSecrets:
    """The host's fused secrets from its seed, except CPUSVN: that is the security version of
    the processor's TCB, its microcode and firmware (SDM Vol. 3D, the CPUSVN that EGETKEY and
    EREPORT use), the same on every host of a profile,
    so moving to another machine of the same kind changes the keys through the fuses (a seal
    key's MAC no longer checks), not through a CPUSVN EGETKEY would refuse."""
    model = PlatformSecrets.from_seed(hashlib.sha256(b"vsgx/cpu-model/" +
                                                     prof.name.encode()).digest())
    return dataclasses.replace(PlatformSecrets.from_seed(seed), cpusvn=model.cpusvn)


def _load_or_create(path: Path | None, profile_name: str | None) -> tuple[HostProfile, bytes]:
    if path is None:
        return profile(profile_name or DEFAULT_PROFILE), secrets.token_bytes(32)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _create(path, profile(profile_name or DEFAULT_PROFILE))
    except OSError as exc:
        raise HostError(f"cannot read host identity {path}: {exc.strerror}") from None
    return _parse_identity(path, text)


def _create(path: Path, prof: HostProfile) -> tuple[HostProfile, bytes]:
    seed = secrets.token_bytes(32)
    doc = {"profile": prof.name, "seed": seed.hex()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _parse_identity(path, path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HostError(f"cannot create host identity {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.write("\n")
    return prof, seed


def _parse_identity(path: Path, text: str) -> tuple[HostProfile, bytes]:
    try:
        doc: Any = json.loads(text)
        seed = bytes.fromhex(doc["seed"])
        prof = profile(doc["profile"])
    except (ValueError, KeyError, TypeError, HostError):
        raise HostError(f"host identity {path} is damaged (expected JSON with 'profile' and "
                        "a 64-hex-digit 'seed'); remove it to give the host new keys") from None
    if len(seed) != 32:
        raise HostError(f"host identity {path} is damaged: the seed must be 32 bytes")
    return prof, seed


def forget_hosts() -> None:
    """Drop the process's open hosts (tests; a later :func:`open_host` reads the disk again)."""
    with _HOSTS_LOCK:
        _HOSTS.clear()
