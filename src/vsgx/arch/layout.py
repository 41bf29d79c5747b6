"""Declarative byte layouts for SGX architectural structures.

Each structure is a frozen dataclass whose fields are listed once, with offset and size, in
``LAYOUT``. From that single table come parsing (with length, alignment-free, and reserved-byte
checks), serialisation, and the JSON-friendly dictionary form the ``vsgx isa`` runner uses
(keys are the SDM field names in lower case). Sizes are asserted when a class is defined, in the
manner of Fortanix ``sgx-isa``: a transcription error fails at import time, not at run time.
"""

from __future__ import annotations

import dataclasses
import struct as _struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
""":mod:`struct` codes of the little-endian unsigned integer field sizes."""


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
    """Base class: subclasses are frozen dataclasses with a ``LAYOUT`` table.

    Subclasses are decorated with :func:`struct_dataclass`, so the dataclass takes the fields in
    ``LAYOUT`` order; parsing relies on it. Integer fields are 1, 2, 4 or 8 bytes (every
    architectural structure's are), so each class precompiles one little-endian
    :class:`struct.Struct` covering its fields and reserved gaps.
    """

    NAME: ClassVar[str]
    SIZE: ClassVar[int]
    ALIGN: ClassVar[int]
    LAYOUT: ClassVar[tuple[Field, ...]]
    _RESERVED: ClassVar[tuple[tuple[int, int], ...]]
    _ALL_RESERVED: ClassVar[tuple[tuple[int, int, bytes], ...]]
    """Every reserved byte range, nested structures' included, in image offsets, sorted, each
    with its all-zero contents."""
    _RESERVED_MASK: ClassVar[bytes]
    _PACKER: ClassVar[_struct.Struct]
    """Fields in ``LAYOUT`` order (nested structures and byte strings as ``Ns``), gaps as pad."""
    _NESTED: ClassVar[tuple[tuple[int, type[Struct]], ...]]
    """(position in ``LAYOUT``, class) of each nested structure."""
    _BYTES_SIZES: ClassVar[tuple[tuple[int, int], ...]]
    """(position in ``LAYOUT``, size) of each byte-string field."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "LAYOUT" not in cls.__dict__:
            return
        end = 0
        gaps: list[tuple[int, int]] = []
        fmt = ["<"]
        nested: list[tuple[int, type[Struct]]] = []
        all_reserved: list[tuple[int, int]] = []
        for pos, f in enumerate(cls.LAYOUT):
            if f.offset < end:
                raise TypeError(f"{cls.NAME}.{f.name} overlaps the previous field")
            if f.offset > end:
                gaps.append((end, f.offset))
                fmt.append(f"{f.offset - end}x")
            if f.kind is int:
                if f.size not in _INT_FORMATS:
                    raise TypeError(f"{cls.NAME}.{f.name}: integer fields are 1, 2, 4 or 8 bytes")
                fmt.append(_INT_FORMATS[f.size])
            else:
                fmt.append(f"{f.size}s")
            if isinstance(f.kind, type) and issubclass(f.kind, Struct):
                if f.kind.SIZE != f.size:
                    raise TypeError(f"{cls.NAME}.{f.name}: nested size mismatch")
                nested.append((pos, f.kind))
                all_reserved += [(f.offset + a, f.offset + b)
                                 for a, b, _ in f.kind._ALL_RESERVED]
            end = f.end
        if end > cls.SIZE:
            raise TypeError(f"{cls.NAME} fields run past its size {cls.SIZE}")
        if end < cls.SIZE:
            gaps.append((end, cls.SIZE))
            fmt.append(f"{cls.SIZE - end}x")
        cls._RESERVED = tuple(gaps)
        cls._ALL_RESERVED = tuple((a, b, bytes(b - a)) for a, b in sorted(all_reserved + gaps))
        mask = bytearray(cls.SIZE)
        for a, b, _ in cls._ALL_RESERVED:
            mask[a:b] = b"\xff" * (b - a)
        cls._RESERVED_MASK = bytes(mask)
        cls._PACKER = _struct.Struct("".join(fmt))
        cls._NESTED = tuple(nested)
        cls._BYTES_SIZES = tuple((pos, f.size) for pos, f in enumerate(cls.LAYOUT)
                                 if f.kind is bytes)

    # -- bytes -------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, strict: bool = True) -> Self:
        """Parse exactly ``SIZE`` bytes. With ``strict``, reserved bytes must be zero."""
        raw = data if isinstance(data, bytes) else bytes(data)
        if len(raw) != cls.SIZE:
            raise StructError(f"{cls.NAME} must be {cls.SIZE} bytes, got {len(raw)}")
        if strict:
            bad = cls.reserved_nonzero(raw)
            if bad is not None:
                raise StructError(f"{cls.NAME}: reserved byte at offset {bad} is not zero")
        values = cls._PACKER.unpack(raw)
        if cls._NESTED:
            items = list(values)
            for pos, kind in cls._NESTED:
                # The reserved bytes of nested structures were checked with the outer ones.
                items[pos] = kind.from_bytes(items[pos], strict=False)
            return cls(*items)
        return cls(*values)

    @classmethod
    def reserved_nonzero(cls, raw: bytes | bytearray | memoryview) -> int | None:
        """Offset of the first non-zero reserved byte (nested structures included), or None."""
        image = raw if isinstance(raw, bytes) else bytes(raw)
        for start, stop, zeros in cls._ALL_RESERVED:
            segment = image[start:stop]
            if segment != zeros and segment.count(0) != len(segment):
                return start + len(segment) - len(segment.lstrip(b"\0"))
        return None

    @classmethod
    def reserved_mask(cls) -> bytes:
        """``SIZE`` bytes, 0xFF over every reserved byte (nested structures included) and 0
        elsewhere: :meth:`reserved_nonzero` for many images at once is a masked any()."""
        return cls._RESERVED_MASK

    def to_bytes(self) -> bytes:
        """The ``SIZE``-byte image, reserved bytes zero; StructError if a value does not fit
        its field."""
        values = [getattr(self, f.name) for f in self.LAYOUT]
        for pos, _ in self._NESTED:
            values[pos] = values[pos].to_bytes()
        if any(len(values[pos]) != size for pos, size in self._BYTES_SIZES):
            self._check_values(values)  # raises: ``s`` would pad or truncate silently
        try:
            return self._PACKER.pack(*values)
        except _struct.error:
            self._check_values(values)
        # Every value fits: a byte string given as another buffer type (``s`` packs bytes).
        for pos, _ in self._BYTES_SIZES:
            values[pos] = bytes(values[pos])
        return self._PACKER.pack(*values)

    def _check_values(self, values: list[Any]) -> None:
        """Raise :class:`StructError` for the first field (in layout order) whose value does
        not fit: an integer out of range or a byte string of the wrong length."""
        for f, value in zip(self.LAYOUT, values, strict=True):
            if f.kind is int:
                if not 0 <= value < 1 << (8 * f.size):
                    raise StructError(f"{self.NAME}.{f.name}={value} does not fit {f.size} bytes")
            elif f.kind is bytes and len(value) != f.size:
                raise StructError(f"{self.NAME}.{f.name} must be {f.size} bytes")

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
    def field_offset(cls, name: str) -> int:
        """Byte offset of field ``name`` in the image (for code that reads or writes one field
        of a live structure in place)."""
        for f in cls.LAYOUT:
            if f.name == name:
                return f.offset
        raise KeyError(f"{cls.NAME} has no field {name!r}")

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
