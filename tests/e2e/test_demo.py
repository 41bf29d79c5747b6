"""`vsgx demo`, the main job: the seed page's NUMA machine, every sample, EPC per node, and a
summary; a failing step makes the exit status 1 without hiding the others."""

from __future__ import annotations

from types import ModuleType

import pytest

from vsgx.cli import demo, main


def test_demo_passes_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "every step passed" in out
    assert "ACPI: SRAT: Node 1 PXM 1 [mem 0x184000000-0x185bfffff]" in out
    assert "sgx: EPC section 0x180000000-0x183ffffff" in out
    for name in demo.SAMPLES:
        assert f"sample: {name}" in out
    # the EPC table: one row per node, each with its own section's size (the demo itself
    # checks that the enclave loaded from each node took EPC from that node)
    assert "│    0 │ 64 MiB │" in out and "│    1 │ 28 MiB │" in out
    # the migration section: every step of it ran (and checked itself)
    assert "sample: migration" in out
    for step in MIGRATION_STEPS:
        assert f"  {step}" in out


def test_a_failing_sample_fails_the_demo(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo.load_sample

    def broken(name: str) -> ModuleType:
        module = real(name)
        if name == "hello":
            def run(*_: object) -> list[tuple[str, str]]:
                raise RuntimeError("greeting went missing")
            module.run = run  # type: ignore[attr-defined]
        return module

    monkeypatch.setattr(demo, "load_sample", broken)
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "RuntimeError: greeting went missing" in out
    assert "sample: sealing" in out  # the other samples still ran
    assert "1 step(s) failed" in out


MIGRATION_STEPS = ("migration: seal a secret on host", "migration: migrate the running VM",
                   "migration: first ecall on the destination faults",
                   "migration: recovery (enclave rebuilt", "migration: the old sealed blob",
                   "migration: re-provision the secret")


def test_demo_migrate_runs_only_the_migration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--migrate"]) == 0
    out = capsys.readouterr().out
    assert "every step passed" in out
    assert "sample: migration" in out and "sample: hello" not in out
    for step in MIGRATION_STEPS:
        assert f"  {step}" in out
    assert "EnclaveLost: EENTER faulted (#PF, PFEC.SGX)" in out
    assert "A postmigrate, B running" in out
    assert "refused (VSGX_ERROR_" in out and "sealed on vsgx-demo-b, unseals there" in out


def test_a_failed_migration_step_fails_the_demo(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from vsgx.sdk import Enclave

    # a runtime that does not follow the process keeps calling the enclave left behind on the
    # source, whose EPC is still there: the demo's check that the first ecall faults fails
    monkeypatch.setattr(Enclave, "migrated", lambda self, process: None)
    assert main(["demo", "--migrate"]) == 1
    out = capsys.readouterr().out
    assert "CheckFailed: the first ecall on B did not fault" in out
    assert "1 step(s) failed" in out
