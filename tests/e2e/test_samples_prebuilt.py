"""The prebuilt sample enclaves: every sample the demo runs exists, and each enclave.elf is
exactly what `vsgx build` makes of its enclave.c and enclave.toml. Builds are reproducible
(two builds give the same bytes); the shipped bytes are compared when the compiler is the one
recorded in examples/BUILT_WITH (another gcc may legitimately emit other code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsgx.cli.demo import SAMPLES, examples_dir
from vsgx.sdk import EnclaveConfig, EnclaveImage, build
from vsgx.sdk.toolchain import BuildError, compiler_version

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENCLAVES = sorted(p.parent.name for p in EXAMPLES.glob("*/enclave.toml"))


def test_the_demo_runs_every_sample_and_ships_them() -> None:
    assert sorted(SAMPLES) == ENCLAVES
    assert examples_dir().resolve() == EXAMPLES.resolve()
    for name in ENCLAVES:
        image = EnclaveImage.load(EXAMPLES / name / "enclave.elf")
        assert image.elf.config == EnclaveConfig.from_toml(
            (EXAMPLES / name / "enclave.toml").read_text())


@pytest.mark.parametrize("name", ENCLAVES)
def test_prebuilt_enclave_is_a_reproducible_build_of_its_sources(name: str,
                                                                 tmp_path: Path) -> None:
    try:
        version = compiler_version()
    except BuildError:
        pytest.skip("no C compiler")
    folder = EXAMPLES / name
    config = EnclaveConfig.from_toml((folder / "enclave.toml").read_text())
    first = build([folder / "enclave.c"], tmp_path / "a.elf", config).read_bytes()
    second = build([folder / "enclave.c"], tmp_path / "b.elf", config).read_bytes()
    assert first == second, "two builds of the same sources differ"
    recorded = (EXAMPLES / "BUILT_WITH").read_text().strip()
    if version != recorded:
        pytest.skip(f"shipped enclaves were built with {recorded}, this is {version}")
    assert first == (folder / "enclave.elf").read_bytes(), (
        f"examples/{name}/enclave.elf is stale: rebuild it with vsgx build -c "
        f"examples/{name}/enclave.toml -o examples/{name}/enclave.elf examples/{name}/enclave.c")
