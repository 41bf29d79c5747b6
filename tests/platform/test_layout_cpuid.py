"""Guest-physical layout, guest CPUID and fw_cfg feature control, against QEMU's formulas."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgx.arch import FeatureControl
from vsgx.cpu.msr import SgxMsrs
from vsgx.platform import QemuOptionError, SgxFeature, parse_qemu_args
from vsgx.platform.config import MachineType
from vsgx.platform.cpuid import guest_cpuid
from vsgx.platform.firmware import MSR_FEATURE_CONTROL_FILE, apply_feature_control, fw_cfg_files
from vsgx.platform.host import PROFILES
from vsgx.platform.layout import E820Type, guest_layout, lowmem_size

GiB = 1 << 30
MiB = 1 << 20


def _cfg(args: str):  # type: ignore[no-untyped-def]
    return parse_qemu_args(shlex.split(args))


def _epc(*sizes: str) -> str:
    objs = " ".join(f"-object memory-backend-epc,id=e{i},size={s}" for i, s in enumerate(sizes))
    m = ",".join(f"sgx-epc.{i}.memdev=e{i},sgx-epc.{i}.node=0" for i in range(len(sizes)))
    return f"{objs} -M {m}"


@pytest.mark.parametrize(("machine", "ram", "below"), [
    (MachineType.Q35, 4 * GiB, 2 * GiB), (MachineType.Q35, 2 * GiB, 2 * GiB),
    (MachineType.Q35, 0xB000_0000, 2 * GiB), (MachineType.Q35, 0xAFFF_E000, 0xAFFF_E000),
    (MachineType.PC, 4 * GiB, 3 * GiB), (MachineType.PC, 0xE000_0000, 3 * GiB),
    (MachineType.PC, 0xDFFF_E000, 0xDFFF_E000), (MachineType.PC, 128 * MiB, 128 * MiB),
])
def test_ram_split_below_4g(machine: MachineType, ram: int, below: int) -> None:
    assert lowmem_size(machine, ram) == below


@pytest.mark.parametrize(("args", "base"), [
    ("-machine pc -m 4G", 0x1_4000_0000),   # seed: pc, 4G -> 0x140000000
    ("-machine q35 -m 4G", 0x1_8000_0000),  # seed: q35, 4G -> 0x180000000
    ("-machine q35 -m 2G", 0x1_0000_0000),
    ("-machine pc", 0x1_0000_0000),
])
def test_epc_base_follows_above_4g_ram(args: str, base: int) -> None:
    layout = guest_layout(_cfg(f"{args} {_epc('64M', '28M')}"))
    assert layout.epc_base == base
    assert [(s.addr, s.size) for s in layout.epc_sections] == [
        (base, 64 * MiB), (base + 64 * MiB, 28 * MiB)]
    assert layout.e820()[-1].type is E820Type.RESERVED
    assert (layout.e820()[-1].base, layout.e820()[-1].length) == (base, 92 * MiB)


def test_device_memory_starts_1g_aligned_after_the_epc() -> None:
    layout = guest_layout(_cfg(f"-machine q35 -m 4G,slots=2,maxmem=8G {_epc('64M')}"))
    assert layout.device_memory_base == 0x1_C000_0000
    assert layout.device_memory_size == 4 * GiB + 2 * GiB


def test_epc_that_wraps_the_address_space_is_refused() -> None:
    big = f"{(1 << 64) - 8 * GiB}"
    with pytest.raises(QemuOptionError, match=r"^Size of all 'sgx-epc' =0x[0-9a-f]+ causes "
                                              r"EPC to wrap$"):
        guest_layout(_cfg(f"-machine q35 -m 4G {_epc(big, big)}"))


def _cpuid(args: str, profile: str = "icelake-sp"):  # type: ignore[no-untyped-def]
    cfg = _cfg(args)
    return guest_cpuid(cfg.cpu, PROFILES[profile], guest_layout(cfg))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4096), min_size=1, max_size=10), st.sampled_from(["pc", "q35"]),
       st.integers(1, 16))
def test_subleaf_2_and_up_follow_qemus_formula(sizes_mib: list[int], machine: str,
                                               ram_gib: int) -> None:
    args = f"-machine {machine} -m {ram_gib}G -cpu host {_epc(*(f'{s}M' for s in sizes_mib))}"
    cpuid = _cpuid(args)
    layout = guest_layout(_cfg(args))
    for s in layout.epc_sections:
        host_ecx = PROFILES["icelake-sp"].cpuid(0x12, 2)[2]
        assert cpuid(0x12, 2 + s.index) == (
            (s.addr & 0xFFFFF000) | 1, s.addr >> 32, (s.size & 0xFFFFF000) | (host_ecx & 0xF),
            s.size >> 32)
    assert cpuid(0x12, 2 + len(sizes_mib)) == (0, 0, 0, 0)


def test_minus_provisionkey_clears_bit_4_of_subleaf_1() -> None:
    assert _cpuid("-cpu host")(0x12, 1)[0] >> 4 & 1
    assert not _cpuid("-cpu host,-sgx-provisionkey")(0x12, 1)[0] >> 4 & 1
    assert not _cpuid("-cpu host,sgx-provisionkey=off")(0x12, 1)[0] >> 4 & 1


def test_a_host_without_sgx2_never_shows_sgx2() -> None:
    for args in ("-cpu host", "-cpu host,+sgx2", "-cpu host,sgx2=on", "-cpu qemu64,+sgx,+sgx2"):
        cpuid = _cpuid(args, "coffeelake")
        assert not cpuid(0x12, 0)[0] >> 1 & 1
        assert not cpuid.has(SgxFeature.SGX2)
        assert not cpuid.sgx_features().sgx2


def test_requesting_what_the_host_lacks_warns_in_qemus_format() -> None:
    cpuid = _cpuid("-cpu host,+sgx2,+sgxlc,+sgx-kss", "coffeelake")
    assert cpuid.warnings == (
        "host doesn't support requested feature: CPUID[eax=07h,ecx=00h].ECX.sgxlc [bit 30]",
        "host doesn't support requested feature: CPUID[eax=12h,ecx=00h].EAX.sgx2 [bit 1]",
        "host doesn't support requested feature: CPUID[eax=12h,ecx=01h].EAX.sgx-kss [bit 7]",
    )
    assert _cpuid("-cpu host").warnings == ()


def test_a_named_model_gets_only_the_flags_it_asks_for() -> None:
    cpuid = _cpuid("-cpu qemu64,+sgx,+sgx1,+sgx-debug,+sgx-mode64")
    assert cpuid(0x7, 0)[1:3] == (1 << 2, 0)
    assert cpuid(0x12, 0)[0] == 1
    assert cpuid(0x12, 1) == (0b110, 0, 0x3, 0)  # XFRM: x87|SSE only (no XSAVE in qemu64)
    assert _cpuid("-cpu qemu64,+sgx1").leaves.keys() == {(0x7, 0)}  # no sgx: leaf 0x12 is 0


def test_host_model_passes_the_host_through() -> None:
    host = PROFILES["icelake-sp"]
    cpuid = _cpuid("-cpu host")
    assert cpuid(0x12, 0) == (*host.cpuid(0x12, 0)[:2], 0, host.cpuid(0x12, 0)[3])
    assert cpuid(0x12, 1) == host.cpuid(0x12, 1)
    features = cpuid.sgx_features()
    assert (features.sgx2, features.flc, features.kss, features.aexnotify) == (
        True, True, True, True)


def test_locked_host_gives_sgx_without_lc_or_provisioning() -> None:
    cpuid = _cpuid("-cpu host", "coffeelake")
    assert cpuid.has(SgxFeature.SGX) and not cpuid.has(SgxFeature.SGXLC)
    assert not cpuid.has(SgxFeature.SGX_PROVISIONKEY)  # no /dev/sgx_provision on the host
    assert cpuid.warnings == ()


@pytest.mark.parametrize(("args", "profile", "value"), [
    ("-cpu host", "icelake-sp", FeatureControl.LOCKED | FeatureControl.SGX | FeatureControl.SGX_LC),
    ("-cpu host,-sgxlc", "icelake-sp", FeatureControl.LOCKED | FeatureControl.SGX),
    ("-cpu host", "coffeelake", FeatureControl.LOCKED | FeatureControl.SGX),
    ("-cpu host,-sgx", "icelake-sp", None),
    ("-cpu qemu64", "icelake-sp", None),
])
def test_fw_cfg_feature_control(args: str, profile: str, value: int | None) -> None:
    cpuid = _cpuid(args, profile)
    files = fw_cfg_files(cpuid)
    msrs = [SgxMsrs(cpuid.sgx_features()) for _ in range(2)]
    apply_feature_control(files, msrs)
    if value is None:
        assert files == {} and all(m.feature_control == 0 for m in msrs)
    else:
        assert files[MSR_FEATURE_CONTROL_FILE] == int(value).to_bytes(8, "little")
        assert all(m.feature_control == value for m in msrs)
