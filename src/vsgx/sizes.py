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
