"""``Struct.reserved_mask`` marks exactly the bytes ``reserved_nonzero`` reports (nested
structures included): the batched ELDB/ELDU checks many PCMDs' reserved bytes with it."""

from __future__ import annotations

import pytest

import vsgx.arch as arch
from vsgx.arch import Struct

NAMES = sorted(n for n in arch.__all__ if isinstance(getattr(arch, n), type)
               and issubclass(getattr(arch, n), Struct) and getattr(arch, n) is not Struct)


@pytest.mark.parametrize("name", NAMES)
def test_mask_marks_the_reserved_bytes(name: str) -> None:
    cls = getattr(arch, name)
    mask = cls.reserved_mask()
    assert len(mask) == cls.SIZE and set(mask) <= {0, 0xFF}
    for offset in range(cls.SIZE):
        image = bytearray(cls.SIZE)
        image[offset] = 1
        reported = cls.reserved_nonzero(bytes(image))
        assert (reported == offset) == (mask[offset] == 0xFF), offset
        assert reported in (None, offset)


def test_pcmd_mask() -> None:
    mask = arch.PCMD.reserved_mask()
    assert mask == bytes(8) + b"\xff" * 56 + bytes(8) + b"\xff" * 40 + bytes(16)
