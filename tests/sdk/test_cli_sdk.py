"""``vsgx build``, ``vsgx sign`` and ``vsgx measure`` run in-process: the measurement agrees
with the SIGSTRUCT ``sign`` writes (read back by ``vsgx sigstruct``), follows the code and the
configuration, and every bad input is one line on stderr, exit status 2, no traceback.

One enclave is compiled per module (gcc needed; those tests are skipped without it); the error
tests need no compiler.
"""

from __future__ import annotations

import datetime
import io
import itertools
import json
import shutil
import stat
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.cli import main
from vsgx.crypto import generate_signing_key
from vsgx.crypto.sigstruct import signing_key_pem

SOURCE = """#include "vsgx/enclave.h"
{include}
VSGX_ECALL(add)(uint64_t a, uint64_t b) {{ return {expr}; }}
"""
SIGSTRUCT_SIZE = 1808


@dataclass(frozen=True)
class Built:
    """The module's enclave and what ``vsgx build`` said about it."""

    elf: Path
    mrenclave: str
    stdout: str
    stderr: str


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``vsgx ARGV`` in-process: exit status, stdout, stderr."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_quietly(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """``vsgx ARGV`` in ``cwd`` with its output captured, for module-scoped fixtures."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        if cwd is not None:
            mp.chdir(cwd)
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_error(result: tuple[int, str, str], *parts: str) -> None:
    """Exit status 2, nothing on stdout, and a last stderr line naming every part."""
    code, out, err = result
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err and err.endswith("\n")
    last = err.splitlines()[-1]
    for part in parts:
        assert part in last, last


def mrenclave_of(result: tuple[int, str, str]) -> str:
    """The MRENCLAVE line of ``vsgx build``'s output."""
    code, out, err = result
    assert code == 0, err
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    return lines["mrenclave"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("gcc") is None:
        pytest.skip("vsgx build needs gcc")
    work = tmp_path_factory.mktemp("enclave")
    (work / "add.c").write_text(SOURCE.format(include="", expr="a + b"))
    result = run_quietly(["build", "add.c"], cwd=work)
    return Built(work / "add.elf", mrenclave_of(result), result[1], result[2])


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "key.pem"
    path.write_bytes(signing_key_pem(generate_signing_key()))
    return path


# -- build, sign, measure -------------------------------------------------------------------


def test_build_defaults(built: Built) -> None:
    assert built.elf.is_file()
    assert built.stdout == f"output: add.elf\nmrenclave: {built.mrenclave}\n"
    assert len(bytes.fromhex(built.mrenclave)) == 32
    assert built.stderr == ("vsgx build: no enclave.toml beside add.c; using the default "
                            "configuration\n")


def test_measure_is_the_signed_enclavehash(built: Built, key: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["measure", str(built.elf)], capsys)
    assert (code, out, err) == (0, built.mrenclave + "\n", "")

    sig = Path(f"{built.elf}.sig")
    for _ in range(2):  # an existing SIGSTRUCT is replaced
        code, out, err = run(["sign", "--key", str(key), "--date", "20240229",
                              str(built.elf)], capsys)
        assert (code, err) == (0, "")
    signed = dict(line.split(": ", 1) for line in out.splitlines())
    assert signed["sigstruct"] == str(sig) and signed["mrenclave"] == built.mrenclave
    assert sig.stat().st_size == SIGSTRUCT_SIZE
    assert stat.S_IMODE(sig.stat().st_mode) == 0o644
    assert not [p for p in built.elf.parent.iterdir() if p.name.endswith(".tmp")]

    code, out, _ = run(["sigstruct", "--json", str(sig)], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["signature_valid"] is True
    assert doc["enclavehash"] == built.mrenclave
    assert doc["mrsigner"] == signed["mrsigner"]
    assert doc["date"] == 0x20240229
    assert doc["attributes"] == {"flags": 0x6, "xfrm": 0x3}  # MODE64BIT | DEBUG, x87 | SSE


def test_sign_output_and_default_date(built: Built, key: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.datetime.now(datetime.UTC).date()
    target = tmp_path / "other.sig"
    code, _, err = run(["sign", "--key", str(key), "-o", str(target), str(built.elf)], capsys)
    assert (code, err) == (0, "")
    after = datetime.datetime.now(datetime.UTC).date()
    _, out, _ = run(["sigstruct", "--json", str(target)], capsys)
    assert json.loads(out)["date"] in {int(d.strftime("%Y%m%d"), 16) for d in (before, after)}


def test_measure_json(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["measure", "--json", str(built.elf)], capsys)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {"mrenclave", "size", "ssaframesize", "attributes", "miscselect",
                        "regions", "ecalls"}
    assert doc["mrenclave"] == built.mrenclave
    assert doc["size"] & (doc["size"] - 1) == 0  # SECS.SIZE is a power of two
    assert (doc["ssaframesize"], doc["miscselect"]) == (1, 1)
    assert doc["attributes"] == {"flags": 0x6, "xfrm": 0x3}
    assert doc["ecalls"] == ["add"]
    regions = {r["name"]: r for r in doc["regions"]}
    assert {"text", "rodata", "data", "heap", "stack 0", "tcs 0", "ssa 0", "thread data 0",
            "exception stack 0"} <= set(regions)
    assert regions["text"]["secinfo"] == 0x205  # PT_REG, R and X
    assert regions["tcs 0"]["secinfo"] == 0x100  # PT_TCS, no permissions
    assert regions["heap"] == {"name": "heap", "offset": regions["heap"]["offset"],
                               "size": 1 << 20, "secinfo": 0x203, "measured": True}
    ends = [(r["offset"], r["offset"] + r["size"]) for r in doc["regions"]]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ends))
    assert ends[-1][1] <= doc["size"]


def test_measure_verbose_table(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["measure", "-v", str(built.elf)], capsys)
    assert (code, err) == (0, "")
    for text in ("text", "heap", "stack 0", "tcs 0", "ssa 0", "exception stack 0",
                 "R-X REG", "RW- REG", "--- TCS", "1M", "256", built.mrenclave,
                 "ELRANGE size", "SSAFRAMESIZE", "threads (TCS)", "add"):
        assert text in out, text


def test_image_without_a_configuration(built: Built, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    objcopy = shutil.which("objcopy")
    if objcopy is None:
        pytest.skip("needs objcopy")
    bare = tmp_path / "bare.elf"
    subprocess.run([objcopy, "--remove-section", ".vsgx.config", str(built.elf), str(bare)],
                   check=True)
    code, out, err = run(["measure", str(bare)], capsys)
    assert code == 0
    assert err == f"vsgx measure: {bare} has no embedded configuration; using the defaults\n"
    defaults = tmp_path / "defaults.toml"
    defaults.write_text("[enclave]\n")
    assert run(["measure", "--config", str(defaults), str(bare)], capsys) == (0, out, "")


def test_measure_under_another_configuration(built: Built, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    same = tmp_path / "same.toml"  # the embedded configuration, written out
    same.write_text('[enclave]\nheap_size = "1M"\n')
    assert run(["measure", "--config", str(same), str(built.elf)], capsys) == (
        0, built.mrenclave + "\n", "")
    bigger = tmp_path / "bigger.toml"
    bigger.write_text('[enclave]\nheap_size = "2M"\n')
    code, out, _ = run(["measure", "--config", str(bigger), str(built.elf)], capsys)
    assert code == 0 and out.strip() != built.mrenclave
    _, out, _ = run(["measure", "--json", "--config", str(bigger), str(built.elf)], capsys)
    heap = next(r for r in json.loads(out)["regions"] if r["name"] == "heap")
    assert heap["size"] == 2 << 20


def test_measure_under_a_configuration_equals_building_with_it(
        built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only loaded bytes are measured: a configuration of another length embedded in the ELF
    (moving the section headers) does not change MRENCLAVE."""
    toml = tmp_path / "long.toml"
    toml.write_text('[enclave]\nheap_size = "2M"\nisvprodid = 12345\nisvsvn = 54321\n')
    predicted = run(["measure", "--config", str(toml), str(built.elf)], capsys)[1]
    elf = tmp_path / "rebuilt.elf"
    assert run(["build", "-c", str(toml), "-o", str(elf), str(built.elf.parent / "add.c")],
               capsys)[0] == 0
    assert run(["measure", str(elf)], capsys)[1] == predicted


def test_configuration_beside_the_source(built: Built, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "enclave.toml"
    toml.write_text('[enclave]\nheap_size = "64K"\ntcs_count = 2\n')
    shutil.copy(built.elf.parent / "add.c", tmp_path / "add.c")
    elf = tmp_path / "add.elf"
    result = run(["build", "-o", str(elf), str(tmp_path / "add.c")], capsys)
    assert result[2] == f"vsgx build: configuration from {toml}\n"
    assert mrenclave_of(result) != built.mrenclave
    code, out, _ = run(["measure", "--json", str(elf)], capsys)
    assert code == 0
    regions = {r["name"]: r for r in json.loads(out)["regions"]}
    assert "tcs 1" in regions and regions["heap"]["size"] == 64 << 10


def test_changing_the_code_changes_mrenclave(built: Built, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    include = tmp_path / "inc"
    include.mkdir()
    (include / "delta.h").write_text("#define DELTA 1\n")
    source = tmp_path / "add.c"
    source.write_text(SOURCE.format(include='#include "delta.h"', expr="a + b + DELTA"))
    result = run(["build", "-I", str(include), "-o", str(tmp_path / "add.elf"), str(source)],
                 capsys)
    assert mrenclave_of(result) != built.mrenclave


# -- errors ---------------------------------------------------------------------------------


def test_measure_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.elf")
    assert_error(run(["measure", missing], capsys),
                 "vsgx measure: cannot read", missing, "No such file")
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF\n")
    assert_error(run(["measure", "-v", str(text)], capsys), str(text), "not an ELF file")
    if Path("/bin/true").is_file():  # an ELF, but not an enclave
        assert_error(run(["measure", "/bin/true"], capsys), "vsgx measure: /bin/true: ")


def test_sign_input_errors(key: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    missing_elf = str(tmp_path / "missing.elf")
    assert_error(run(["sign", "--key", str(key), missing_elf], capsys),
                 "vsgx sign: cannot read", missing_elf, "No such file")
    enclave = "e.elf"  # the key is read before the enclave
    missing = str(tmp_path / "missing.pem")
    assert_error(run(["sign", "--key", missing, enclave], capsys),
                 "vsgx sign: cannot read", missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    assert_error(run(["sign", "--key", str(junk), enclave], capsys),
                 str(junk), "not a readable PEM private key")
    small = tmp_path / "rsa2048.pem"
    small.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                      .private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    assert_error(run(["sign", "--key", str(small), enclave], capsys),
                 str(small), "RSA-3072 with public exponent 3", "RSA-2048 e=65537")


@pytest.mark.parametrize("date", ["20230229", "20241301", "2024-01-01", "2024010", "abcdefgh"])
def test_sign_bad_date(date: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the date is checked before the key and the enclave are read
    assert_error(run(["sign", "--key", "k.pem", "--date", date, "e.elf"], capsys),
                 f"vsgx sign: --date '{date}'", "YYYYMMDD")


def test_sign_write_errors(built: Built, key: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    enclave = str(built.elf)
    assert_error(run(["sign", "--key", str(key), "-o", enclave, enclave], capsys),
                 "is the enclave itself")
    directory = tmp_path / "adir"
    directory.mkdir()
    assert_error(run(["sign", "--key", str(key), "-o", str(directory), enclave], capsys),
                 f"vsgx sign: cannot write {directory}")
    assert list(tmp_path.iterdir()) == [directory]  # the temporary file is gone


@pytest.mark.parametrize(("toml", "problem"), [
    ('[enclave]\nheapsize = "1M"\n', "unknown key 'heapsize'"),
    ('[enclave]\nheap_size = "1X"\n', "heap_size: invalid size '1X'"),
    ("[enclave]\nheap_size = 100\n", "heap_size must be a multiple of 4K"),
    ("[enclave]\ndebug = 1\n", "debug must be true or false"),
    ("[enclave\n", "Expected ']'"),
])
def test_bad_configuration(toml: str, problem: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    source = tmp_path / "add.c"
    source.write_text(SOURCE.format(include="", expr="a + b"))
    assert_error(run(["build", "-c", str(config), str(source)], capsys),
                 f"vsgx build: {config}: ", problem)
    assert_error(run(["measure", "--config", str(config), "whatever.elf"], capsys),
                 f"vsgx measure: {config}: ", problem)


@pytest.mark.parametrize("cc", ["/nonexistent/gcc", "vsgx-no-such-compiler"])
def test_missing_compiler(cc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "add.c"
    source.write_text(SOURCE.format(include="", expr="a + b"))
    assert_error(run(["build", "--cc", cc, "-o", str(tmp_path / "x.elf"), str(source)],
                     capsys), "vsgx build: needs a C compiler", cc)
    assert not (tmp_path / "x.elf").exists()


def test_build_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(run(["build", "a.c", "b.c"], capsys), "-o OUTPUT is required")
    source = tmp_path / "add.c"
    assert_error(run(["build", "-o", str(source), str(source)], capsys),
                 f"output {source} is one of the sources")
    if shutil.which("gcc") is not None:
        missing = tmp_path / "missing.c"
        assert_error(run(["build", str(missing)], capsys), f"vsgx build: {missing}: no such")


def test_compiler_diagnostics_then_one_line(built: Built, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "broken.c"
    source.write_text(SOURCE.format(include="", expr="a +"))
    result = run(["build", "-o", str(tmp_path / "broken.elf"), str(source)], capsys)
    assert_error(result, "vsgx build: compiling broken.c failed (exit 1)")
    assert "error: expected expression" in result[2]
    assert not (tmp_path / "broken.elf").exists()


def test_measure_json_and_verbose_exclude_each_other(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["measure", "--json", "-v", "e.elf"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
