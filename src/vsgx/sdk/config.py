"""The enclave configuration: what the author decides about an enclave beyond its code.

Written as the ``[enclave]`` table of a TOML file (``enclave.toml``) and embedded by ``vsgx
build`` in the enclave ELF (section ``.vsgx.config``, not loaded), so the ELF alone determines
the layout, the measurement and the SIGSTRUCT. Sizes are numbers of bytes or QEMU-style
strings (``"64K"``, ``"1M"``); every key is optional::

    [enclave]
    tcs_count = 2            # threads that can be inside at once: one TCS each
    ssa_frames = 2           # NSSA: frames per TCS (2 lets an in-enclave handler run)
    ssa_frame_size = 1       # SSAFRAMESIZE in pages
    stack_size = "64K"       # per thread, between two guard pages
    exception_stack_size = "8K"  # per thread, for in-enclave exception handlers
    heap_size = "1M"         # vsgx_malloc's arena, added and measured
    dynamic_size = "0"       # SGX2: ELRANGE left empty for EAUG at run time
    isvprodid = 0
    isvsvn = 0
    debug = true             # ATTRIBUTES.DEBUG: production enclaves set false
    provisionkey = false     # ATTRIBUTES.PROVISIONKEY
    miscselect = 1           # MISCSELECT (bit 0, EXINFO: #PF/#GP details in the SSA)
    miscmask = 0xFFFFFFFF
    xfrm = 3                 # ATTRIBUTES.XFRM (x87 and SSE)
    attributemask = 0xFFFFFFFFFFFFFFFB   # SIGSTRUCT.ATTRIBUTEMASK.FLAGS
    xfrmmask = 0                         # SIGSTRUCT.ATTRIBUTEMASK.XFRM
    vendor = 0               # SIGSTRUCT.VENDOR: 0 or 0x8086

Numbers follow SDM Vol. 3D 38.7 (SECS), 38.8 (TCS) and 38.13 (SIGSTRUCT).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from vsgx.arch import PAGE_SIZE, AttributesFlags
from vsgx.sizes import parse_size

_SIZES = ("stack_size", "exception_stack_size", "heap_size", "dynamic_size")
_BOOLS = ("debug", "provisionkey")
_LIMITS = {"tcs_count": (1, 1024), "ssa_frames": (1, 16), "ssa_frame_size": (1, 16),
           "isvprodid": (0, 0xFFFF), "isvsvn": (0, 0xFFFF), "miscselect": (0, 0xFFFF_FFFF),
           "miscmask": (0, 0xFFFF_FFFF), "xfrm": (3, (1 << 64) - 1),
           "attributemask": (0, (1 << 64) - 1), "xfrmmask": (0, (1 << 64) - 1),
           "vendor": (0, 0xFFFF_FFFF)}


class ConfigError(ValueError):
    """An enclave configuration is malformed; the message names the key."""


@dataclass(frozen=True)
class EnclaveConfig:
    """One enclave's configuration (see the module docstring for each key)."""

    tcs_count: int = 1
    ssa_frames: int = 2
    ssa_frame_size: int = 1
    stack_size: int = 64 << 10
    exception_stack_size: int = 8 << 10
    heap_size: int = 1 << 20
    dynamic_size: int = 0
    isvprodid: int = 0
    isvsvn: int = 0
    debug: bool = True
    provisionkey: bool = False
    miscselect: int = 1
    miscmask: int = 0xFFFF_FFFF
    xfrm: int = 3
    attributemask: int = 0xFFFF_FFFF_FFFF_FFFB
    xfrmmask: int = 0
    vendor: int = 0

    def __post_init__(self) -> None:
        for name in _SIZES:
            value = getattr(self, name)
            if value % PAGE_SIZE:
                raise ConfigError(f"{name} must be a multiple of 4K, got {value}")
        for name in ("stack_size", "exception_stack_size"):
            if getattr(self, name) == 0:
                raise ConfigError(f"{name} must be at least 4K")
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name} must be in [{low:#x}, {high:#x}], got {value:#x}")
        if self.vendor not in (0, 0x8086):
            raise ConfigError(f"vendor must be 0 or 0x8086, got {self.vendor:#x}")
        if self.xfrm & 3 != 3:
            raise ConfigError("xfrm must include x87 and SSE (bits 0 and 1)")

    @property
    def attribute_flags(self) -> int:
        """SECS.ATTRIBUTES.FLAGS: 64-bit mode, plus DEBUG and PROVISIONKEY as configured."""
        flags = AttributesFlags.MODE64BIT
        if self.debug:
            flags |= AttributesFlags.DEBUG
        if self.provisionkey:
            flags |= AttributesFlags.PROVISIONKEY
        return int(flags)

    @classmethod
    def from_mapping(cls, table: dict[str, Any], *, where: str = "enclave") -> EnclaveConfig:
        """A configuration from a parsed ``[enclave]`` table; unknown keys and wrong types
        are errors naming ``where``."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key '{key}' "
                                  f"(known: {', '.join(sorted(known))})")
            values[key] = _convert(key, value, where)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def from_toml(cls, text: str, *, where: str = "enclave.toml") -> EnclaveConfig:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        extra = set(document) - {"enclave"}
        if extra:
            raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(extra))}; "
                              "the configuration lives in [enclave]")
        table = document.get("enclave", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: 'enclave' must be a table")
        return cls.from_mapping(table, where=where)

    def to_json(self) -> bytes:
        """The canonical form embedded in the ELF: sorted keys, no spaces."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> EnclaveConfig:
        try:
            table = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{where}: malformed embedded configuration: {exc}") from None
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: malformed embedded configuration")
        return cls.from_mapping(table, where=where)

    def with_changes(self, **changes: Any) -> EnclaveConfig:
        """A copy with ``changes`` applied (validated like any configuration)."""
        return replace(self, **{k: _convert(k, v, "override") for k, v in changes.items()})


def _convert(key: str, value: Any, where: str) -> Any:
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be a number")
    if key in _SIZES and isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    if not isinstance(value, int):
        raise ConfigError(f"{where}: {key} must be an integer")
    return value
