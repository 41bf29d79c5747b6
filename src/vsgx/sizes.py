"""Byte sizes written the way QEMU's command line writes them (``util/cutils.c``
``qemu_strtosz``): a number with an optional suffix B, K, M, G, T, P or E (powers of 1024,
case-insensitive). A bare number means bytes."""

from __future__ import annotations

import re

_SUFFIX = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
           "P": 1 << 50, "E": 1 << 60}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([BKMGTPE]?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse ``"8M"``, ``"512k"``, ``"1.5G"`` or ``"4096"`` into bytes; ValueError otherwise."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"invalid size '{text}'")
    number, suffix = match.groups()
    scale = _SUFFIX[suffix.upper()]
    if "." in number:
        if scale == 1:
            raise ValueError(f"invalid size '{text}': fractions need a unit suffix")
        value = round(float(number) * scale)
    else:
        value = int(number) * scale
    if value >= 1 << 64:
        raise ValueError(f"size '{text}' is too large")
    return value


class SizeError(ValueError):
    """A QEMU size string was rejected; ``out_of_range`` tells ``-ERANGE`` from ``-EINVAL``
    apart, because QEMU's callers word the two differently."""

    def __init__(self, text: str, *, out_of_range: bool) -> None:
        super().__init__(f"invalid size '{text}'")
        self.text = text
        self.out_of_range = out_of_range


_U64_MAX = (1 << 64) - 1
_STRTOD_FRACTION = re.compile(r"\.[0-9]*(?:[eE][+-]?[0-9]+)?")


def _strtou64(text: str, pos: int, base: int) -> tuple[int, int]:
    """``qemu_strtou64`` (``util/cutils.c``) from ``pos``: C ``strtoull`` semantics (leading
    blanks, a sign, ``0x`` for base 16) returning (value, end); SizeError when no digits."""
    match = re.compile(r"[ \t\n\v\f\r]*([+-]?)").match(text, pos)
    assert match is not None
    sign, i = match.group(1), match.end()
    if base == 16 and text[i:i + 2].lower() == "0x" and i + 2 < len(text) \
            and text[i + 2] in "0123456789abcdefABCDEF":
        i += 2
    allowed = "0123456789" if base == 10 else "0123456789abcdefABCDEF"
    start = i
    while i < len(text) and text[i] in allowed:
        i += 1
    if i == start:
        raise SizeError(text, out_of_range=False)
    value = int(text[start:i], base)
    if value > _U64_MAX:
        raise SizeError(text, out_of_range=True)
    if sign == "-":
        value = (-value) & _U64_MAX
    return value, i


def strtosz(text: str) -> int:
    """Parse a size exactly as QEMU 7.2's ``qemu_strtosz()`` (``util/cutils.c``
    ``do_strtosz``, default suffix B, unit 1024) does, and return the byte count.

    The integral part is decimal (``strtoull``: leading blanks and ``+`` allowed, any ``-``
    rejected); ``0x`` switches to hexadecimal with no fraction; a fraction (``1.5G``) needs a
    suffix other than B and is truncated, not rounded; an exponent is refused; one suffix of
    ``BKMGTPE`` (either case) may follow; nothing may trail it. Raises :class:`SizeError`
    with ``out_of_range`` set for values of 2**64 and above (QEMU's ``-ERANGE``)."""
    value, end = _strtou64(text, 0, 10)
    if "-" in text[:end]:
        raise SizeError(text, out_of_range=False)
    fraction = 0.0
    if value == 0 and end < len(text) and text[end] in "xX":
        value, end = _strtou64(text, 0, 16)
        if text[end:end + 1] == ".":  # a suffix on hex is only deprecated (a warning) in 7.2
            raise SizeError(text, out_of_range=False)
    elif text[end:end + 1] == ".":
        frac = _STRTOD_FRACTION.match(text, end)
        assert frac is not None
        body = frac.group(0)
        if body == ".":  # strtod() fails on a bare '.': QEMU skips it and reads on
            end += 1
        elif "e" in body.lower():
            raise SizeError(text, out_of_range=False)
        else:
            fraction = float("0" + body)
            end = frac.end()
    suffix = text[end:end + 1].upper()
    if suffix and suffix in _SUFFIX:
        mul = _SUFFIX[suffix]
        end += 1
    else:
        mul = 1
    if end != len(text):
        raise SizeError(text, out_of_range=False)
    if mul == 1 and fraction != 0:
        raise SizeError(text, out_of_range=False)
    extra = int(fraction * mul)
    if value > (_U64_MAX - extra) // mul:
        raise SizeError(text, out_of_range=True)
    return value * mul + extra
