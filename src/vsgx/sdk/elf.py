"""Reading an enclave ELF (pyelftools): the loadable segments, the ecall table and the
embedded configuration, with the checks that make an image loadable as an enclave.

An enclave image is a static, position-independent x86-64 ELF (``ET_DYN``) linked at 0 by
``vsgx build``: no interpreter, no TLS, only ``R_X86_64_RELATIVE`` dynamic relocations (the
trusted runtime applies them on first entry), an ``enclave_entry`` symbol for the TCS's
OENTRY, and ecalls as ``__vsgx_ecall_NAME`` symbols in section ``vsgx_ecalls``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from vsgx.sdk.config import ConfigError, EnclaveConfig

CONFIG_SECTION = ".vsgx.config"
ECALL_SECTION = "vsgx_ecalls"
ECALL_PREFIX = "__vsgx_ecall_"
ENTRY_SYMBOL = "enclave_entry"
R_X86_64_RELATIVE = 8
PF_X, PF_W, PF_R = 1, 2, 4
MAX_ELRANGE = 1 << 47
"""The largest enclave vsgx lays out (SECS.SIZE; a user address space's worth)."""


class ImageError(ValueError):
    """The file is not a loadable vsgx enclave image; the message says why."""


@dataclass(frozen=True)
class Segment:
    """A ``PT_LOAD`` segment: where it goes, what the file holds for it, its protection."""

    vaddr: int
    memsz: int
    data: bytes
    readable: bool
    writable: bool
    executable: bool


@dataclass(frozen=True)
class EnclaveElf:
    """What vsgx needs of an enclave ELF."""

    segments: tuple[Segment, ...]
    entry: int
    ecalls: tuple[str, ...]
    config: EnclaveConfig | None
    """The embedded configuration, or None when the image has none."""

    @classmethod
    def parse(cls, data: bytes, *, where: str = "enclave") -> EnclaveElf:
        try:
            elf = ELFFile(io.BytesIO(data))
            return _parse(elf, where)
        except ELFError as exc:
            raise ImageError(f"{where}: not an ELF file ({exc})") from None

    @classmethod
    def read(cls, path: str | Path) -> EnclaveElf:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror}") from None
        return cls.parse(data, where=str(path))


def _parse(elf: ELFFile, where: str) -> EnclaveElf:
    if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != "EM_X86_64":
        raise ImageError(f"{where}: not an x86-64 ELF64 image")
    if elf["e_type"] != "ET_DYN":
        raise ImageError(f"{where}: not position-independent (e_type {elf['e_type']}); "
                         "link with -static-pie")
    segments = []
    for seg in elf.iter_segments():
        kind = seg["p_type"]
        if kind in ("PT_INTERP", "PT_TLS"):
            raise ImageError(f"{where}: {kind} segment: enclaves cannot have an interpreter "
                             "or thread-local storage")
        if kind != "PT_LOAD" or seg["p_memsz"] == 0:
            continue
        flags = seg["p_flags"]
        if seg["p_vaddr"] + seg["p_memsz"] > MAX_ELRANGE or seg["p_filesz"] > seg["p_memsz"]:
            raise ImageError(f"{where}: segment at {seg['p_vaddr']:#x} (memsz "
                             f"{seg['p_memsz']:#x}, filesz {seg['p_filesz']:#x}) does not fit "
                             "an enclave")
        if flags & PF_W and flags & PF_X:
            raise ImageError(f"{where}: segment at {seg['p_vaddr']:#x} is writable and "
                             "executable")
        segments.append(Segment(seg["p_vaddr"], seg["p_memsz"], seg.data(),
                                bool(flags & PF_R), bool(flags & PF_W), bool(flags & PF_X)))
    if not segments:
        raise ImageError(f"{where}: no loadable segments")
    if min(s.vaddr for s in segments) != 0:
        raise ImageError(f"{where}: image not linked at address 0")
    _check_relocations(elf, where)
    symbols = _symbols(elf, where)
    entry = symbols.get(ENTRY_SYMBOL)
    if entry is None:
        raise ImageError(f"{where}: no '{ENTRY_SYMBOL}' symbol (not linked with the vsgx "
                         "trusted runtime?)")
    return EnclaveElf(tuple(segments), entry, _ecalls(elf, symbols, where),
                      _config(elf, where))


def _symbols(elf: ELFFile, where: str) -> dict[str, int]:
    table = elf.get_section_by_name(".symtab")
    if not isinstance(table, SymbolTableSection):
        raise ImageError(f"{where}: no symbol table (do not strip enclave images)")
    return {sym.name: sym["st_value"] for sym in table.iter_symbols() if sym.name}


def _ecalls(elf: ELFFile, symbols: dict[str, int], where: str) -> tuple[str, ...]:
    section = elf.get_section_by_name(ECALL_SECTION)
    if section is None:
        return ()
    start, size = section["sh_addr"], section["sh_size"]
    by_address = {value: name[len(ECALL_PREFIX):] for name, value in symbols.items()
                  if name.startswith(ECALL_PREFIX)}
    names = []
    for address in range(start, start + size, 8):
        if address not in by_address:
            raise ImageError(f"{where}: ecall table entry at {address:#x} has no "
                             f"{ECALL_PREFIX}NAME symbol")
        names.append(by_address[address])
    return tuple(names)


def _check_relocations(elf: ELFFile, where: str) -> None:
    for section in elf.iter_sections():
        if not isinstance(section, RelocationSection) or not section["sh_flags"] & 2:
            continue  # only allocated (dynamic) relocations matter at run time
        for reloc in section.iter_relocations():
            kind = reloc["r_info_type"]
            if kind != R_X86_64_RELATIVE:
                raise ImageError(f"{where}: relocation type {kind} at {reloc['r_offset']:#x}: "
                                 "only R_X86_64_RELATIVE is supported (symbols must resolve "
                                 "at link time)")


def _config(elf: ELFFile, where: str) -> EnclaveConfig | None:
    section = elf.get_section_by_name(CONFIG_SECTION)
    if section is None:
        return None
    try:
        return EnclaveConfig.from_json(section.data(), where=f"{where} ({CONFIG_SECTION})")
    except ConfigError as exc:
        raise ImageError(str(exc)) from None
