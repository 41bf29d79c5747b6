"""``vsgx info``, ``cpuid``, ``dmesg`` and ``export``: the seed page's examples end to end, host
options, and QEMU-style failures (exit 1, one message, no traceback)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from seeds import SEED_NUMA
from test_cli import run_main, vsgx

PC_SINGLE = ("-machine pc -m 4G -cpu host "
             "-object memory-backend-epc,id=mem1,size=64M,prealloc=on "
             "-M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0")
Q35_NUMA = SEED_NUMA
FW_BUG = ("sgx: [Firmware Bug]: Unable to map EPC section to online node. "
          "Fallback to the NUMA node 0.")


def cli(args: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    return run_main(shlex.split(args), capsys, monkeypatch)


def test_seed_single_section_dmesg(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(f"dmesg {PC_SINGLE}", capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["sgx: EPC section 0x140000000-0x143ffffff", FW_BUG]


def test_seed_numa_dmesg(capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(f"dmesg {Q35_NUMA}", capsys, monkeypatch)
    lines = out.splitlines()
    assert code == 0
    for line in ("sgx: EPC section 0x180000000-0x183ffffff",
                 "sgx: EPC section 0x184000000-0x185bfffff",
                 "ACPI: SRAT: Node 0 PXM 0 [mem 0x180000000-0x183ffffff]",
                 "ACPI: SRAT: Node 1 PXM 1 [mem 0x184000000-0x185bfffff]"):
        assert line in lines
    assert FW_BUG not in lines


def test_seed_numa_info_sgx_json_and_hmp(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(f"info sgx --json {Q35_NUMA}", capsys, monkeypatch)
    assert code == 0
    info = json.loads(out)
    assert info["sections"] == [{"node": 0, "size": 67108864}, {"node": 1, "size": 29360128}]
    code, out, _ = cli(f"info sgx {Q35_NUMA}", capsys, monkeypatch)
    assert out == ("SGX support: enabled\nSGX1 support: enabled\nSGX2 support: enabled\n"
                   "FLC support: enabled\nsize: 96468992\nNUMA node #0: size=67108864\n"
                   "NUMA node #1: size=29360128\n")


def test_64_sections_of_1m_boot_and_linux_uses_8(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    objs = " ".join(f"-object memory-backend-epc,id=m{i},size=1M" for i in range(64))
    epc = ",".join(f"sgx-epc.{i}.memdev=m{i},sgx-epc.{i}.node=0" for i in range(64))
    args = f"-machine q35 -m 2G -cpu host {objs} -M {epc}"
    code, out, _ = cli(f"info sgx --json {args}", capsys, monkeypatch)
    assert code == 0 and len(json.loads(out)["sections"]) == 64
    code, out, _ = cli(f"cpuid --json {args}", capsys, monkeypatch)
    sections = [e for e in json.loads(out) if e["leaf"] == 0x12 and e["eax"] & 0xF == 1]
    assert len(sections) == 64
    code, out, _ = cli(f"dmesg {args}", capsys, monkeypatch)
    lines = [line for line in out.splitlines() if line.startswith("sgx: EPC section")]
    assert lines[0] == "sgx: EPC section 0x100000000-0x1000fffff"
    assert len(lines) == 8 and lines[-1] == "sgx: EPC section 0x100700000-0x1007fffff"


def test_cpuid_json_shape(capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(f"cpuid --json {PC_SINGLE}", capsys, monkeypatch)
    entries = json.loads(out)
    assert code == 0
    assert [(e["leaf"], e["subleaf"]) for e in entries] == [
        (7, 0), (0x12, 0), (0x12, 1), (0x12, 2), (0x12, 3)]
    assert set(entries[0]) == {"leaf", "subleaf", "eax", "ebx", "ecx", "edx"}
    assert entries[3]["eax"] == 0x4000_0001 and entries[3]["ebx"] == 1
    code, out, _ = cli(f"cpuid {PC_SINGLE}", capsys, monkeypatch)
    assert code == 0 and "guest CPUID" in out and "40000001" in out


def test_host_profile_and_its_warning(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(f"cpuid --json --host client --host-profile coffeelake "
                         f"-cpu host,+sgx2 {PC_SINGLE.replace('-cpu host ', '')}",
                         capsys, monkeypatch)
    assert code == 0
    assert err == ("vsgx: warning: host doesn't support requested feature: "
                   "CPUID[eax=12h,ecx=00h].EAX.sgx2 [bit 1]\n")
    leaf12 = next(e for e in json.loads(out) if (e["leaf"], e["subleaf"]) == (0x12, 0))
    assert leaf12["eax"] & 0b10 == 0


def test_locked_host_still_runs_sgx_guests(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(f"info sgx --json --host-profile=coffeelake --host=lc {PC_SINGLE}",
                       capsys, monkeypatch)
    assert code == 0 and json.loads(out)["sections"] == [{"node": 0, "size": 64 << 20}]


def test_info_sgx_capabilities(capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli("info sgx-capabilities --json", capsys, monkeypatch)
    assert code == 0 and json.loads(out)["sgx2"] is True
    code, out, _ = cli("info sgx-capabilities --host c --host-profile coffeelake",
                       capsys, monkeypatch)
    assert code == 0 and "locked to Intel's key" in out
    code, _, err = cli("info sgx-capabilities --host n --host-profile no-sgx", capsys,
                       monkeypatch)
    assert (code, err) == (1, "vsgx: SGX is not enabled in KVM\n")


@pytest.mark.parametrize(("args", "message"), [
    ("info sgx -M sgx-epc.0.memdev=nope,sgx-epc.0.node=0", "vsgx: Device 'nope' not found"),
    ("info sgx -cpu host", "vsgx: No EPC regions defined, SGX not available"),
    (f"dmesg --host-profile epyc {PC_SINGLE}",
     "vsgx: unknown host profile 'epyc' (known profiles: coffeelake, icelake-sp, no-sgx)"),
    (f"dmesg --host ../x {PC_SINGLE}", "vsgx: host name '../x' is not valid: use up to 64 "
                                       "letters, digits, '.', '_' and '-', not starting with "
                                       "'.' or '-'"),
    (f"info sgx --host-profile no-sgx --host n {PC_SINGLE}",
     "vsgx: invalid object type: memory-backend-epc\n"
     "(host 'n' is a no-sgx host, which has no SGX)"),
    ("cpuid -m 4X", "vsgx: -m 4X: Parameter 'size' expects a non-negative number below 2^64\n"
                    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                    "peta-\nand exabytes, respectively."),
])
def test_failures_are_qemu_style(args: str, message: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(args, capsys, monkeypatch)
    assert (code, out, err) == (1, "", message + "\n")


def test_profile_and_host_listings(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli("cpuid --host-profile help", capsys, monkeypatch)
    assert code == 0 and "icelake-sp" in out and "coffeelake" in out
    cli("cpuid --host lab -cpu host", capsys, monkeypatch)
    code, out, _ = cli("cpuid --host help", capsys, monkeypatch)
    assert code == 0 and "lab" in out


def test_export_both_forms(capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(f"export qemu {PC_SINGLE}", capsys, monkeypatch)
    assert code == 0 and out.startswith("qemu-system-x86_64 \\\n    -accel kvm \\\n")
    code, out, err = cli(f"export libvirt {Q35_NUMA}", capsys, monkeypatch)
    assert code == 0 and out.count("<memory model=\"sgx-epc\">") == 2 and out.endswith(">\n")
    assert err.startswith("vsgx: warning: ")


def test_double_dash_separates_qemu_options(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(f"info sgx --json -- {PC_SINGLE}", capsys, monkeypatch)
    assert code == 0 and json.loads(out)["sections"][0]["size"] == 64 << 20


def test_the_installed_command_exits_1_without_traceback() -> None:
    proc = vsgx("dmesg", "-machine", "pc", "-M", "sgx-epc.0.node=0")
    assert proc.returncode == 1
    assert proc.stderr == "vsgx: Parameter 'sgx-epc.0.memdev' is missing\n"
    assert sys.executable  # the helper picked an interpreter


def test_run_a_python_program_against_the_machine(tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text(
        "import sys, json\n"
        "proc = vm.guest.spawn()\n"  # vm: the global the runner provides
        "print(json.dumps({'argv': sys.argv[1:], 'sections': vm.query_sgx()['sections'],\n"
        "                  'devices': list(vm.guest.devices), 'pid': proc.pid}))\n"
        "sys.exit(3)\n")
    proc = vsgx("run", *shlex.split(SEED_NUMA), "--", str(program), "a", "b")
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["argv"] == ["a", "b"] and doc["pid"] == 1
    assert doc["sections"] == [{"node": 0, "size": 64 << 20}, {"node": 1, "size": 28 << 20}]
    assert "/dev/sgx_enclave" in doc["devices"]


def test_run_program_errors(tmp_path: Path) -> None:
    missing = vsgx("run", "-cpu", "host", "--", str(tmp_path / "nope.py"))
    assert missing.returncode == 2
    assert missing.stderr == (f"vsgx run: cannot read {tmp_path / 'nope.py'}: "
                              "No such file or directory\n")
    boom = tmp_path / "boom.py"
    boom.write_text("raise RuntimeError('in the user program')\n")
    failed = vsgx("run", "-cpu", "host", "--", str(boom))
    assert failed.returncode == 1 and "RuntimeError: in the user program" in failed.stderr
    assert vsgx("run", "-cpu", "host", "--").returncode == 2
