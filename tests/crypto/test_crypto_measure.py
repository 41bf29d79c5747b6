"""MRENCLAVE: the streaming builder against a known answer and an independent construction."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.crypto import MeasurementBuilder

WORKED_EXAMPLE = "0adaa61d33155ae41db2764fc8ec8dbac8e1a98292df84729cf03f663859ce83"
PAGE = bytes(range(256)) * 16


def gramine_style_measurement() -> bytes:
    """The reference §2 example, built the way Gramine's ``generate_measurement`` does."""
    h = hashlib.sha256()
    h.update(struct.pack("<8sLQ44s", b"ECREATE", 1, 0x4000, b""))
    h.update(struct.pack("<8sQQ40s", b"EADD", 0, 0x100, b""))
    h.update(struct.pack("<8sQQ40s", b"EADD", 0x1000, 0x205, b""))
    for k in range(16):
        h.update(struct.pack("<8sQ48s", b"EEXTEND", 0x1000 + k * 256, b""))
        h.update(PAGE[k * 256 : (k + 1) * 256])
    return h.digest()


@pytest.mark.parametrize("tcs_flags", [0x100, 0x107, 0x103])
def test_worked_example_with_single_records(tcs_flags: int) -> None:
    m = MeasurementBuilder()
    m.ecreate(1, 0x4000)
    m.eadd(0, tcs_flags)
    m.eadd(0x1000, 0x205)
    for k in range(16):
        m.eextend(0x1000 + k * 256, PAGE[k * 256 : (k + 1) * 256])
    assert m.digest().hex() == WORKED_EXAMPLE
    assert gramine_style_measurement().hex() == WORKED_EXAMPLE
    assert m.update_count == 1 + 2 + 16 * 5


def test_worked_example_with_add_pages() -> None:
    m = MeasurementBuilder()
    m.ecreate(1, 0x4000)
    m.add_pages([0, 0x1000], [0x107, 0x205], bytes(4096) + PAGE, [False, True])
    assert m.digest().hex() == WORKED_EXAMPLE
    assert m.update_count == 83


def test_rwx_kept_for_non_tcs_pages() -> None:
    a, b = MeasurementBuilder(), MeasurementBuilder()
    a.eadd(0x1000, 0x200)
    b.eadd(0x1000, 0x207)
    assert a.digest() != b.digest()


def test_digest_is_non_destructive_and_copy_is_independent() -> None:
    m = MeasurementBuilder()
    m.ecreate(2, 0x8000)
    first = m.digest()
    assert m.digest() == first
    clone = m.copy()
    clone.eadd(0, 0x203)
    assert m.digest() == first
    assert clone.digest() != first
    assert (m.update_count, clone.update_count) == (1, 2)


def test_empty_builder_is_sha256_of_nothing() -> None:
    assert MeasurementBuilder().digest() == hashlib.sha256().digest()


@pytest.mark.parametrize("size", [0, 255, 257, 4096])
def test_eextend_rejects_wrong_chunk_length(size: int) -> None:
    with pytest.raises(ValueError, match="256"):
        MeasurementBuilder().eextend(0, bytes(size))


def test_eextend_accepts_memoryview() -> None:
    a, b = MeasurementBuilder(), MeasurementBuilder()
    a.eextend(0x100, memoryview(PAGE)[:256])
    b.eextend(0x100, PAGE[:256])
    assert a.digest() == b.digest()


@pytest.mark.parametrize("call", [
    lambda m: m.ecreate(-1, 0x4000),
    lambda m: m.ecreate(1 << 32, 0x4000),
    lambda m: m.ecreate(1, 1 << 64),
    lambda m: m.eadd(-4096, 0x203),
    lambda m: m.eadd(0, 1 << 64),
    lambda m: m.eextend(1 << 64, bytes(256)),
    lambda m: m.add_pages([0, 4096], 0x203, bytes(4096), True),
    lambda m: m.add_pages([0], [0x203, 0x203], bytes(4096), True),
    lambda m: m.add_pages([0], 0x203, bytes(4096), [True, False]),
    lambda m: m.add_pages([-4096], 0x203, bytes(4096), True),
    lambda m: m.add_pages([(1 << 64) - 0x800], 0x203, bytes(4096), True),
])
def test_out_of_range_arguments_are_rejected(call: object) -> None:
    m = MeasurementBuilder()
    with pytest.raises(ValueError):
        call(m)  # type: ignore[operator]
    assert m.update_count == 0


def test_add_pages_with_no_pages_hashes_nothing() -> None:
    m = MeasurementBuilder()
    m.add_pages([], 0x203, b"", True)
    assert m.update_count == 0


page_lists = st.integers(min_value=0, max_value=67).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, (1 << 52) - 1).map(lambda p: p * 4096), min_size=n, max_size=n),
        st.lists(st.sampled_from([0x100, 0x107, 0x201, 0x203, 0x205, 0x207, 0x20B, 0x500]),
                 min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.integers(0, 2**32).map(lambda seed: random.Random(seed).randbytes(n * 4096)),
    ))


@settings(max_examples=40, deadline=None)
@given(page_lists)
def test_add_pages_equals_eadd_eextend_sequence(
    case: tuple[list[int], list[int], list[bool], bytes],
) -> None:
    offsets, flags, measured, data = case
    fast, slow = MeasurementBuilder(), MeasurementBuilder()
    fast.ecreate(1, 1 << 40)
    slow.ecreate(1, 1 << 40)
    fast.add_pages(offsets, flags, memoryview(data), measured)
    for i, offset in enumerate(offsets):
        slow.eadd(offset, flags[i])
        if measured[i]:
            for k in range(16):
                start = i * 4096 + k * 256
                slow.eextend(offset + k * 256, data[start : start + 256])
    assert fast.digest() == slow.digest()
    assert fast.update_count == slow.update_count


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.sampled_from([0x203, 0x107]), st.booleans())
def test_add_pages_scalar_flags_and_mask(n: int, flags: int, measured: bool) -> None:
    data = bytes(range(256)) * 16 * n
    offsets = [i * 4096 for i in range(n)]
    a, b = MeasurementBuilder(), MeasurementBuilder()
    a.add_pages(offsets, flags, data, measured)
    b.add_pages(offsets, [flags] * n, data, [measured] * n)
    assert a.digest() == b.digest()
