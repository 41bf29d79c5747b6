"""Declarative byte layouts for SGX architectural structures.

Each structure is a frozen dataclass whose fields are listed once, with offset and size, in
``LAYOUT``. From that single table come parsing (with length, alignment-free, and reserved-byte
checks), serialisation, and the JSON-friendly dictionary form the ``vsgx isa`` runner uses
(keys are the SDM field names in lower case). Sizes are asserted when a class is defined, in the
manner of Fortanix ``sgx-isa``: a transcription error fails at import time, not at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self


class StructError(ValueError):
    """A byte image or dictionary is not a valid instance of an architectural structure."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a structure: ``size`` bytes at ``offset``.

    ``kind`` is ``int`` for a little-endian unsigned integer, ``bytes`` for a raw byte string,
    or a nested :class:`Struct` subclass.
    """

    name: str
    offset: int
    size: int
    kind: type = int

    @property
    def end(self) -> int:
        return self.offset + self.size


class Struct:
    """Base class: subclasses are frozen dataclasses with a ``LAYOUT`` table."""

    NAME: ClassVar[str]
    SIZE: ClassVar[int]
    ALIGN: ClassVar[int]
    LAYOUT: ClassVar[tuple[Field, ...]]
    _RESERVED: ClassVar[tuple[tuple[int, int], ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "LAYOUT" not in cls.__dict__:
            return
        end = 0
        gaps: list[tuple[int, int]] = []
        for f in cls.LAYOUT:
            if f.offset < end:
                raise TypeError(f"{cls.NAME}.{f.name} overlaps the previous field")
            if f.offset > end:
                gaps.append((end, f.offset))
            if isinstance(f.kind, type) and issubclass(f.kind, Struct) and f.kind.SIZE != f.size:
                raise TypeError(f"{cls.NAME}.{f.name}: nested size mismatch")
            end = f.end
        if end > cls.SIZE:
            raise TypeError(f"{cls.NAME} fields run past its size {cls.SIZE}")
        if end < cls.SIZE:
            gaps.append((end, cls.SIZE))
        cls._RESERVED = tuple(gaps)

    # -- bytes -------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, strict: bool = True) -> Self:
        """Parse exactly ``SIZE`` bytes. With ``strict``, reserved bytes must be zero."""
        raw = bytes(data)
        if len(raw) != cls.SIZE:
            raise StructError(f"{cls.NAME} must be {cls.SIZE} bytes, got {len(raw)}")
        if strict:
            bad = cls.reserved_nonzero(raw)
            if bad is not None:
                raise StructError(f"{cls.NAME}: reserved byte at offset {bad} is not zero")
        values: dict[str, Any] = {}
        for f in cls.LAYOUT:
            chunk = raw[f.offset : f.end]
            if f.kind is int:
                values[f.name] = int.from_bytes(chunk, "little")
            elif f.kind is bytes:
                values[f.name] = chunk
            else:
                values[f.name] = f.kind.from_bytes(chunk, strict=strict)  # type: ignore[attr-defined]
        return cls(**values)

    @classmethod
    def reserved_nonzero(cls, raw: bytes | bytearray | memoryview) -> int | None:
        """Offset of the first non-zero reserved byte (nested structures included), or None."""
        hits: list[int] = []
        for start, stop in cls._RESERVED:
            segment = bytes(raw[start:stop])
            if any(segment):
                hits.append(start + next(i for i, b in enumerate(segment) if b))
                break
        for f in cls.LAYOUT:
            if isinstance(f.kind, type) and issubclass(f.kind, Struct):
                inner = f.kind.reserved_nonzero(raw[f.offset : f.end])
                if inner is not None:
                    hits.append(f.offset + inner)
                    break
        return min(hits, default=None)

    def to_bytes(self) -> bytes:
        out = bytearray(self.SIZE)
        for f in self.LAYOUT:
            value = getattr(self, f.name)
            if f.kind is int:
                if not 0 <= value < 1 << (8 * f.size):
                    raise StructError(f"{self.NAME}.{f.name}={value} does not fit {f.size} bytes")
                out[f.offset : f.end] = value.to_bytes(f.size, "little")
            elif f.kind is bytes:
                if len(value) != f.size:
                    raise StructError(f"{self.NAME}.{f.name} must be {f.size} bytes")
                out[f.offset : f.end] = value
            else:
                out[f.offset : f.end] = value.to_bytes()
        return bytes(out)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    # -- dictionaries (JSON) -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Field names to values: ints stay ints, byte strings become hex, nested dicts."""
        out: dict[str, Any] = {}
        for f in self.LAYOUT:
            value = getattr(self, f.name)
            if f.kind is int:
                out[f.name] = value
            elif f.kind is bytes:
                out[f.name] = value.hex()
            else:
                out[f.name] = value.to_dict()
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, where: str = "") -> Self:
        """Build from a dictionary keyed by lower-case SDM field names; missing fields are zero.

        ``where`` prefixes error messages (e.g. ``"ops[3].secs"``).
        """
        label = where or cls.NAME.lower()
        if not isinstance(obj, Mapping):
            raise StructError(f"{label}: expected an object with {cls.NAME} fields")
        names = {f.name: f for f in cls.LAYOUT}
        unknown = sorted(set(obj) - set(names))
        if unknown:
            raise StructError(f"{label}.{unknown[0]}: not a field of {cls.NAME}")
        values: dict[str, Any] = {}
        for f in cls.LAYOUT:
            path = f"{label}.{f.name}"
            if f.name not in obj:
                values[f.name] = _zero(f)
                continue
            raw = obj[f.name]
            if f.kind is int:
                if isinstance(raw, bool) or not isinstance(raw, int):
                    raise StructError(f"{path}: expected an integer")
                if not 0 <= raw < 1 << (8 * f.size):
                    raise StructError(f"{path}: {raw} does not fit in {f.size} bytes")
                values[f.name] = raw
            elif f.kind is bytes:
                values[f.name] = parse_hex(raw, f.size, path)
            else:
                values[f.name] = f.kind.from_dict(raw, where=path)  # type: ignore[attr-defined]
        return cls(**values)

    @classmethod
    def zero(cls) -> Self:
        return cls.from_bytes(bytes(cls.SIZE))


def _zero(f: Field) -> Any:
    if f.kind is int:
        return 0
    if f.kind is bytes:
        return bytes(f.size)
    return f.kind.zero()  # type: ignore[attr-defined]


def parse_hex(raw: Any, size: int | None, path: str) -> bytes:
    """Decode a hex string, optionally of an exact byte length, with a path-naming error."""
    if not isinstance(raw, str):
        raise StructError(f"{path}: expected a hex string")
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        raise StructError(f"{path}: not a valid hex string") from None
    if size is not None and len(value) != size:
        raise StructError(f"{path}: expected {size} bytes ({2 * size} hex digits), "
                          f"got {len(value)}")
    return value


def struct_dataclass(cls: type[Struct]) -> type[Struct]:
    """Check that a structure's dataclass fields and its ``LAYOUT`` name the same fields."""
    declared = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    laid_out = [f.name for f in cls.LAYOUT]
    if declared != laid_out:
        raise TypeError(f"{cls.NAME}: dataclass fields {declared} != layout {laid_out}")
    return cls
