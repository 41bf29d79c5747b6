"""Reading a ``vsgx isa`` script: typed access to each op's operands with errors that name the
op index and the field (``ops[3].secs.size: expected an integer``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from vsgx.arch import PAGE_SIZE, TCS, Struct, StructError, parse_hex
from vsgx.sizes import parse_size

_S = TypeVar("_S", bound=Struct)


class ScriptError(ValueError):
    """The script is malformed; the message names where."""


@dataclass(frozen=True)
class PlatformSpec:
    """The ``"platform"`` object: EPC size, SGX2, flexible launch control, KSS, the seed that
    fixes the emulated host's fused secrets, and what firmware wrote to IA32_FEATURE_CONTROL."""

    epc: int = 8 << 20
    sgx2: bool = True
    flc: bool = True
    kss: bool = False
    seed: str = "vsgx"
    feature_control: int | None = None


_PLATFORM_KEYS = {"epc", "sgx2", "flc", "kss", "seed", "feature_control"}


def load_script(text: str) -> tuple[PlatformSpec, list[Op]]:
    """Parse a script's JSON text into its platform and ops."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScriptError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                          ) from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise ScriptError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ScriptError("not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ScriptError("the script must be a JSON object with \"ops\"")
    unknown = sorted(set(doc) - {"platform", "ops"})
    if unknown:
        raise ScriptError(f"{unknown[0]}: unknown top-level key (expected platform, ops)")
    platform = _platform(doc.get("platform", {}))
    ops = doc.get("ops")
    if not isinstance(ops, list):
        raise ScriptError("ops: expected a list of op objects")
    parsed = []
    for i, raw in enumerate(ops):
        if not isinstance(raw, dict):
            raise ScriptError(f"ops[{i}]: expected an object")
        if not isinstance(raw.get("op"), str):
            raise ScriptError(f"ops[{i}].op: expected the leaf mnemonic as a string")
        parsed.append(Op(i, raw))
    return platform, parsed


def _platform(raw: Any) -> PlatformSpec:
    if not isinstance(raw, dict):
        raise ScriptError("platform: expected an object")
    unknown = sorted(set(raw) - _PLATFORM_KEYS)
    if unknown:
        raise ScriptError(f"platform.{unknown[0]}: unknown key "
                          f"(expected one of {', '.join(sorted(_PLATFORM_KEYS))})")
    values: dict[str, Any] = {}
    if "epc" in raw:
        epc = raw["epc"]
        try:
            size = parse_size(epc) if isinstance(epc, str) else _plain_int(epc)
        except ValueError as exc:
            raise ScriptError(f"platform.epc: {exc}") from None
        if size <= 0 or size % PAGE_SIZE:
            raise ScriptError(f"platform.epc: {size} is not a positive multiple of 4096")
        values["epc"] = size
    for key in ("sgx2", "flc", "kss"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ScriptError(f"platform.{key}: expected true or false")
            values[key] = raw[key]
    if "seed" in raw:
        if not isinstance(raw["seed"], str):
            raise ScriptError("platform.seed: expected a string")
        try:
            raw["seed"].encode()
        except UnicodeEncodeError:
            raise ScriptError("platform.seed: not valid Unicode text") from None
        values["seed"] = raw["seed"]
    if "feature_control" in raw:
        try:
            values["feature_control"] = _plain_int(raw["feature_control"])
        except ValueError:
            raise ScriptError("platform.feature_control: expected an integer") from None
    return PlatformSpec(**values)


def _plain_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    return value


class Op:
    """One op of a script; getters check types and record which keys were used."""

    def __init__(self, index: int, raw: dict[str, Any]) -> None:
        self.index = index
        self.raw = raw
        self.name: str = raw["op"]

    def path(self, key: str) -> str:
        return f"ops[{self.index}].{key}"

    def error(self, key: str, message: str) -> ScriptError:
        return ScriptError(f"{self.path(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def _get(self, key: str, default: Any) -> Any:
        if key not in self.raw:
            if default is _REQUIRED:
                raise self.error(key, "missing")
            return default
        return self.raw[key]

    def integer(self, key: str, default: Any = None, *, lo: int = 0,
            hi: int = (1 << 64) - 1) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "expected an integer")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range [{lo}, {hi}]")
        return value

    def hexbytes(self, key: str, size: int | None = None, default: bytes | None = None) -> bytes:
        if default is not None and key not in self.raw:
            return default
        try:
            return parse_hex(self._get(key, _REQUIRED), size, self.path(key))
        except StructError as exc:
            raise ScriptError(str(exc)) from None

    def struct(self, key: str, cls: type[_S], default: Mapping[str, Any] | None = None) -> _S:
        value = self._get(key, _REQUIRED if default is None else default)
        try:
            return cls.from_dict(value, where=self.path(key))
        except StructError as exc:
            raise ScriptError(str(exc)) from None

    def page(self, key: str, default_fill: int | None = 0) -> bytes:
        """Page contents: ``{"fill": BYTE}``, ``{"hex": "..."}`` (exactly 4096 bytes) or
        ``{"tcs": {...}}`` (a TCS image from its fields)."""
        value = self._get(key, {"fill": default_fill} if default_fill is not None
                          else _REQUIRED)
        if not isinstance(value, dict) or len(value) != 1 or \
                not {"fill", "hex", "tcs"} & set(value):
            raise self.error(key, 'expected {"fill": BYTE}, {"hex": "..."} or {"tcs": {...}}')
        if "fill" in value:
            fill = value["fill"]
            if isinstance(fill, bool) or not isinstance(fill, int) or not 0 <= fill <= 255:
                raise self.error(f"{key}.fill", "expected a byte value 0..255")
            return bytes([fill]) * PAGE_SIZE
        try:
            if "tcs" in value:
                return TCS.from_dict(value["tcs"], where=self.path(f"{key}.tcs")).to_bytes()
            return parse_hex(value["hex"], PAGE_SIZE, self.path(f"{key}.hex"))
        except StructError as exc:
            raise ScriptError(str(exc)) from None

    def obj(self, key: str) -> dict[str, Any] | None:
        """An optional object operand: None when absent; anything but an object is refused."""
        if key not in self.raw:
            return None
        value = self.raw[key]
        if not isinstance(value, dict):
            raise self.error(key, "expected an object")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self._get(key, default)
        if value not in options:
            raise self.error(key, f"expected one of {', '.join(options)}")
        return str(value)

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        """Refuse keys the op does not take: nothing in a script is silently ignored."""
        extra = sorted(set(self.raw) - set(allowed) - {"op"})
        if extra:
            raise self.error(extra[0], f"not an operand of {self.name}")


_REQUIRED = object()
