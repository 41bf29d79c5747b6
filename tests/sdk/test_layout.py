"""Enclave images: ELF checks, the layout's invariants (hypothesis over configurations), the
thread data words the runtime reads, and the ABI constants shared with the C runtime."""

from __future__ import annotations

import itertools
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.arch import PAGE_SIZE, TCS
from vsgx.guest.uapi import SGX_SECINFO_TCS
from vsgx.sdk import EnclaveConfig, EnclaveElf, EnclaveImage, ImageError, abi, compute_layout
from vsgx.sdk.toolchain import runtime_dir


@pytest.fixture(scope="module")
def elf(basic_elf: Path) -> EnclaveElf:
    return EnclaveElf.read(basic_elf)


def test_elf_facts(elf: EnclaveElf) -> None:
    assert "add" in elf.ecalls and "mrenclave" in elf.ecalls
    assert elf.config is not None and elf.config.tcs_count == 2
    assert [s.executable for s in elf.segments] == [True, False, False]
    assert elf.segments[0].vaddr == 0


@pytest.mark.parametrize(("data", "message"), [
    (b"not an elf", "not an ELF file"),
    (b"", "not an ELF file"),
])
def test_not_an_elf(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        EnclaveElf.parse(data, where="x")


def test_an_ordinary_program_is_refused() -> None:
    true = Path("/bin/true")
    if not true.exists():
        pytest.skip("no /bin/true")
    with pytest.raises(ImageError, match=r"PT_INTERP|not position-independent|relocation"):
        EnclaveElf.read(true)


def test_a_segment_too_large_for_an_enclave(basic_elf: Path) -> None:
    data = bytearray(basic_elf.read_bytes())
    phoff = struct.unpack_from("<Q", data, 32)[0]
    struct.pack_into("<Q", data, phoff + 40, 1 << 48)  # the first PT_LOAD's p_memsz
    with pytest.raises(ImageError, match="does not fit an enclave"):
        EnclaveElf.parse(bytes(data), where="x")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"cannot read .*missing\.elf"):
        EnclaveElf.read(tmp_path / "missing.elf")


def test_stripped_image_is_refused(basic_elf: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("strip") is None:
        pytest.skip("no strip")
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["strip", "-o", str(stripped), str(basic_elf)], check=True)
    with pytest.raises(ImageError, match="no symbol table"):
        EnclaveElf.read(stripped)


layouts = st.builds(
    EnclaveConfig, tcs_count=st.integers(1, 6), ssa_frames=st.integers(1, 4),
    ssa_frame_size=st.integers(1, 3), stack_size=st.integers(1, 16).map(lambda n: n * 4096),
    exception_stack_size=st.integers(1, 4).map(lambda n: n * 4096),
    heap_size=st.integers(0, 64).map(lambda n: n * 4096),
    dynamic_size=st.integers(0, 64).map(lambda n: n * 4096))


@settings(max_examples=60, deadline=None)
@given(cfg=layouts)
def test_layout_invariants(elf: EnclaveElf, cfg: EnclaveConfig) -> None:
    layout = compute_layout(elf, cfg)
    assert layout.size & (layout.size - 1) == 0 and layout.size >= 2 * PAGE_SIZE
    regions = sorted(layout.regions, key=lambda r: r.offset)
    for a, b in itertools.pairwise(regions):
        assert a.end <= b.offset, (a.name, b.name)
    assert regions[-1].end <= layout.size
    for r in layout.regions:
        assert r.offset % PAGE_SIZE == 0 and r.size % PAGE_SIZE == 0
        assert len(r.data) == (r.size if r.added else 0)
    for t in layout.threads:
        tcs = next(r for r in layout.regions if r.offset == t.tcs)
        assert tcs.secinfo == SGX_SECINFO_TCS
        fields = TCS.from_bytes(tcs.data)
        assert (fields.ossa, fields.nssa, fields.oentry) == (t.ssa, cfg.ssa_frames, elf.entry)
        assert fields.ofsbasgx == fields.ogsbasgx == t.thread_data
        # guard pages: nothing at the page below the stack or above it
        starts = {r.offset for r in layout.regions}
        ends = {r.end for r in layout.regions}
        assert t.stack_limit - PAGE_SIZE not in starts and t.stack_limit not in ends
        assert t.stack_top not in starts
        td = next(r for r in layout.regions if r.offset == t.thread_data).data
        words = struct.unpack_from("<15Q", td)
        assert words[0] == t.stack_top and words[5] == t.tcs and words[8] == layout.size
        assert words[9] == t.index and words[10] == cfg.tcs_count
    assert layout.page_count == sum(r.size for r in layout.added) // PAGE_SIZE


def test_guard_pages_separate_image_heap_and_threads(elf: EnclaveElf) -> None:
    layout = compute_layout(elf, EnclaveConfig(tcs_count=1))
    names = [r.name for r in layout.regions]
    heap = layout.regions[names.index("heap")]
    assert heap.offset - layout.regions[names.index("heap") - 1].end == PAGE_SIZE


def test_every_added_page_is_measured(basic_elf: Path) -> None:
    image = EnclaveImage.load(basic_elf)
    changed = EnclaveImage.load(basic_elf, image.config.with_changes(stack_size="36K"))
    assert image.measure() != changed.measure()
    assert image.measure() == EnclaveImage.load(basic_elf).measure()


def test_a_layout_that_does_not_fit(elf: EnclaveElf) -> None:
    huge = EnclaveConfig(dynamic_size=1 << 47)
    with pytest.raises(ImageError, match="more than"):
        compute_layout(elf, huge)


def _header_defines() -> dict[str, int]:
    text = (runtime_dir() / "include" / "vsgx" / "abi.h").read_text()
    return {name: int(value.strip("()"), 0) for name, value in
            re.findall(r"#define (VSGX_\w+)\s+(\(?-?\w+\)?)", text)}


def test_abi_header_matches_python() -> None:
    defines = _header_defines()
    assert defines["VSGX_CMD_ORET"] == abi.CMD_ORET
    assert defines["VSGX_CMD_EXCEPTION"] == abi.CMD_EXCEPTION
    for member in abi.Exit:
        assert defines[f"VSGX_EXIT_{member.name}"] == member
    for status in abi.Status:
        assert defines[f"VSGX_STATUS_{status.name}"] == status
    for name in ("ARGS", "RET", "STATUS", "NAME", "SCRATCH", "SIZE"):
        assert defines[f"VSGX_SHARED_{name}"] == getattr(abi, f"SHARED_{name}")
    assert defines["VSGX_OCALL_NAME_MAX"] == abi.OCALL_NAME_MAX
    assert defines["VSGX_MAX_ARGS"] == abi.MAX_ARGS
    # the thread data words the loader writes, in order
    words = [n for n in defines if n.startswith("VSGX_TD_") and defines[n] < 0x100]
    assert [defines[n] for n in words] == [8 * i for i in range(16)]
    assert words[-1] == "VSGX_TD_LAYOUT_END"
