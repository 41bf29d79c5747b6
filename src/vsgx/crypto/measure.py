"""MRENCLAVE: the SHA-256 measurement ECREATE, EADD and EEXTEND build and EINIT finalises.

MRENCLAVE is plain SHA-256 over a stream of 64-byte records (SDM Vol. 3D 38.7.2 and the
ECREATE, EADD, EEXTEND and EINIT pseudo-code):

* ECREATE, one block: ``"ECREATE\\0"`` | SSAFRAMESIZE u32 | SIZE u64 | 44 zero bytes.
* EADD, one block: ``"EADD\\0\\0\\0\\0"`` | ENCLAVEOFFSET u64 | SECINFO.FLAGS u64 | 40 zero bytes
  (SECINFO[0:48]; its reserved bytes are zero). For a TCS page R/W/X are forced to 0 first.
* EEXTEND, five blocks: ``"EEXTEND\\0"`` | offset u64 | 48 zero bytes, then the 256 data bytes.

EINIT's ``SHA256FINAL(MRENCLAVE, update_count * 512)`` is the standard SHA-256 length padding,
so the final value is an ordinary SHA-256 digest of the record stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from vsgx.arch.constants import (
    EEXTEND_CHUNK,
    PAGE_SIZE,
    SECINFO_PAGE_TYPE_SHIFT,
    SECINFO_RWX,
    PageType,
)

_BLOCK = 64
"""Bytes per SHA-256 update in the measurement stream."""

_ECREATE = b"ECREATE\0"
_EADD = b"EADD\0\0\0\0"
_EEXTEND = b"EEXTEND\0"

_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1

_CHUNKS_PER_PAGE = PAGE_SIZE // EEXTEND_CHUNK  # 16 EEXTENDs measure a page
_BLOCKS_PER_CHUNK = 1 + EEXTEND_CHUNK // _BLOCK  # header + 4 data blocks
_BLOCKS_PER_PAGE = 1 + _CHUNKS_PER_PAGE * _BLOCKS_PER_CHUNK  # EADD + 16 * 5 = 81
_BATCH_PAGES = 64
"""Pages per numpy batch in :meth:`MeasurementBuilder.add_pages` (about 330 KB per batch)."""

_TCS_TYPE = int(PageType.PT_TCS)
_RWX = int(SECINFO_RWX)
_U64 = np.dtype("<u8")


def _check_uint(value: int, limit: int, name: str) -> int:
    if not 0 <= value <= limit:
        raise ValueError(f"{name}={value:#x} does not fit in {limit.bit_length()} bits")
    return value


def _measured_flags(secinfo_flags: int) -> int:
    """SECINFO.FLAGS as EADD hashes them: R/W/X cleared for a TCS page (SDM EADD, "For TCS
    pages, force EPCM.rwx bits to 0")."""
    if (secinfo_flags >> SECINFO_PAGE_TYPE_SHIFT) & 0xFF == _TCS_TYPE:
        return secinfo_flags & ~_RWX
    return secinfo_flags


def _u64_array(values: Sequence[int] | npt.NDArray[np.uint64] | int, count: int,
               name: str) -> npt.NDArray[np.uint64]:
    """Validate ``values`` (one per page, or a single int for all) as unsigned 64-bit ints."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu" or (values.size and int(values.min()) < 0):
            raise ValueError(f"{name} must be unsigned 64-bit integers")
        raw = values.astype(np.uint64)
    else:
        try:
            raw = np.array(values, dtype=np.uint64)
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"{name} must be unsigned 64-bit integers") from None
    if raw.ndim == 0:
        return np.full(count, raw, dtype=np.uint64)
    if raw.shape != (count,):
        raise ValueError(f"{name} must have one entry per page ({count}), got shape {raw.shape}")
    return raw


def _bool_array(values: Sequence[bool] | bool, count: int) -> npt.NDArray[np.bool_]:
    raw = np.asarray(values, dtype=np.bool_)
    if raw.ndim == 0:
        return np.full(count, bool(raw))
    if raw.shape != (count,):
        raise ValueError(f"measured must have one entry per page ({count}), got {raw.shape}")
    return raw


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int, bool]]:
    """Maximal runs ``(start, stop, value)`` of equal values in a boolean vector."""
    if mask.size == 0:
        return []
    edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    starts = [0, *edges.tolist()]
    stops = [*edges.tolist(), int(mask.size)]
    return [(a, b, bool(mask[a])) for a, b in zip(starts, stops, strict=True)]


class MeasurementBuilder:
    """A streaming MRENCLAVE: one SHA-256 state fed the ECREATE/EADD/EEXTEND records."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._blocks = 0

    def _update(self, data: bytes | memoryview, blocks: int) -> None:
        self._hash.update(data)
        self._blocks += blocks

    def ecreate(self, ssaframesize: int, size: int) -> None:
        """Hash ECREATE's record: SSAFRAMESIZE and SIZE (SDM ECREATE)."""
        _check_uint(ssaframesize, _U32_MAX, "ssaframesize")
        _check_uint(size, _U64_MAX, "size")
        record = (_ECREATE + ssaframesize.to_bytes(4, "little") + size.to_bytes(8, "little")
                  + bytes(44))
        self._update(record, 1)

    def eadd(self, offset: int, secinfo_flags: int) -> None:
        """Hash EADD's record: the page offset within the enclave and its SECINFO flags
        (SDM EADD; TCS pages are hashed with R/W/X cleared)."""
        _check_uint(offset, _U64_MAX, "offset")
        _check_uint(secinfo_flags, _U64_MAX, "secinfo_flags")
        record = (_EADD + offset.to_bytes(8, "little")
                  + _measured_flags(secinfo_flags).to_bytes(8, "little") + bytes(40))
        self._update(record, 1)

    def eextend(self, offset: int, chunk: bytes | memoryview) -> None:
        """Hash EEXTEND's header for the 256-byte chunk at ``offset`` and then the chunk
        (SDM EEXTEND)."""
        _check_uint(offset, _U64_MAX, "offset")
        data = memoryview(chunk).cast("B")
        if data.nbytes != EEXTEND_CHUNK:
            raise ValueError(f"EEXTEND measures {EEXTEND_CHUNK} bytes, got {data.nbytes}")
        self._update(_EEXTEND + offset.to_bytes(8, "little") + bytes(48), 1)
        self._update(data, EEXTEND_CHUNK // _BLOCK)

    def add_pages(
        self,
        offsets: Sequence[int] | npt.NDArray[np.uint64],
        flags: Sequence[int] | int,
        data: bytes | memoryview,
        measured: Sequence[bool] | bool,
    ) -> None:
        """EADD each page in order and, where ``measured``, EEXTEND all 16 of its chunks.

        Equivalent to ``eadd(offsets[i], flags[i])`` followed, for measured pages, by
        ``eextend(offsets[i] + k * 256, page_i[k * 256 : (k + 1) * 256])`` for k = 0..15.
        ``data`` holds ``len(offsets)`` pages of 4096 bytes. The records are laid out with
        numpy, 64 pages per batch, and each batch is hashed by a single ``update``.
        """
        count = len(offsets)
        offs = _u64_array(offsets, count, "offsets")
        flag_words = _u64_array(flags, count, "flags")
        page_types = (flag_words >> np.uint64(SECINFO_PAGE_TYPE_SHIFT)) & np.uint64(0xFF)
        flag_words = np.where(page_types == _TCS_TYPE, flag_words & np.uint64(~_RWX & _U64_MAX),
                              flag_words)
        measure = _bool_array(measured, count)
        pages = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        if pages.size != count * PAGE_SIZE:
            raise ValueError(f"data must be {count} pages ({count * PAGE_SIZE} bytes), "
                             f"got {pages.size} bytes")
        last_chunk = np.uint64(PAGE_SIZE - EEXTEND_CHUNK)
        if measure.any() and int(offs[measure].max()) > _U64_MAX - int(last_chunk):
            raise ValueError("a measured page's chunk offsets do not fit in 64 bits")
        pages = pages.reshape(count, PAGE_SIZE)
        for start, stop, is_measured in _runs(measure):
            if is_measured:
                self._add_measured(offs[start:stop], flag_words[start:stop], pages[start:stop])
            else:
                self._add_unmeasured(offs[start:stop], flag_words[start:stop])

    def _add_unmeasured(self, offs: npt.NDArray[np.uint64],
                        flag_words: npt.NDArray[np.uint64]) -> None:
        records = np.zeros((offs.size, _BLOCK // 8), dtype=_U64)
        records[:, 0] = int.from_bytes(_EADD, "little")
        records[:, 1] = offs
        records[:, 2] = flag_words
        self._update(records.data.cast("B"), offs.size)

    def _add_measured(self, offs: npt.NDArray[np.uint64], flag_words: npt.NDArray[np.uint64],
                      pages: npt.NDArray[np.uint8]) -> None:
        batch = min(_BATCH_PAGES, offs.size)
        buf = np.zeros((batch, _BLOCKS_PER_PAGE, _BLOCK), dtype=np.uint8)
        words = buf.view(_U64)  # (batch, 81, 8)
        words[:, 0, 0] = int.from_bytes(_EADD, "little")
        words[:, 1::_BLOCKS_PER_CHUNK, 0] = int.from_bytes(_EEXTEND, "little")
        # The four data blocks after each EEXTEND header, as (batch, 16 chunks, 256 bytes).
        chunk_data = buf[:, 1:, :].reshape(batch, _CHUNKS_PER_PAGE, _BLOCKS_PER_CHUNK * _BLOCK)
        chunk_data = chunk_data[:, :, _BLOCK:]
        chunk_steps = np.arange(_CHUNKS_PER_PAGE, dtype=np.uint64) * np.uint64(EEXTEND_CHUNK)
        for first in range(0, offs.size, batch):
            n = min(batch, offs.size - first)
            sel = slice(first, first + n)
            words[:n, 0, 1] = offs[sel]
            words[:n, 0, 2] = flag_words[sel]
            words[:n, 1::_BLOCKS_PER_CHUNK, 1] = offs[sel, None] + chunk_steps
            chunk_data[:n] = pages[sel].reshape(n, _CHUNKS_PER_PAGE, EEXTEND_CHUNK)
            self._update(buf[:n].data.cast("B"), n * _BLOCKS_PER_PAGE)

    def copy(self) -> MeasurementBuilder:
        """An independent builder with the same state."""
        clone = MeasurementBuilder()
        clone._hash = self._hash.copy()
        clone._blocks = self._blocks
        return clone

    def digest(self) -> bytes:
        """MRENCLAVE as EINIT finalises it (SHA256FINAL); the builder's own state is kept."""
        return bytes(self._hash.copy().digest())

    @property
    def update_count(self) -> int:
        """Number of 64-byte blocks hashed so far."""
        return self._blocks
