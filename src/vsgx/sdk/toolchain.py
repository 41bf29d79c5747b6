"""``vsgx build``: C enclave sources to an enclave ELF with the system's gcc.

The sources are compiled freestanding and position-independent, linked ``-static-pie`` at
address 0 with vsgx's trusted runtime (``runtime/``: entry and exit, ecall dispatch, ocalls,
exception handlers, heap, ENCLU wrappers, sealing and its AES-GCM) by the runtime's linker
script, and the configuration is embedded as a non-loaded section (``.vsgx.config``).

Builds are reproducible: fixed flags, no build ID, source paths mapped to fixed prefixes, and
objects in a deterministic order, so the same sources, configuration and compiler give the
same bytes and therefore the same MRENCLAVE.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from vsgx.sdk.config import EnclaveConfig

RUNTIME_SOURCES = ("entry.S", "trts.c", "mem.c", "heap.c", "enclu.c", "rand.c", "seal.c",
                   "crypto/aes.c", "crypto/gcm.c", "crypto/cmac.c")
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-ffreestanding", "-fPIE",
          "-fvisibility=hidden", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
          "-fno-unwind-tables", "-fno-plt", "-fno-jump-tables", "-fcf-protection=none",
          "-mno-red-zone")
LDFLAGS = ("-nostdlib", "-static-pie", "-Wl,--build-id=none", "-Wl,-z,noexecstack",
           "-Wl,--no-undefined", "-Wl,-e,enclave_entry", "-Wl,--hash-style=gnu")


class BuildError(Exception):
    """The enclave could not be built; the message says why (compiler output included)."""


def runtime_dir() -> Path:
    """The trusted runtime's sources as installed with vsgx."""
    return Path(str(resources.files("vsgx.sdk") / "runtime"))


def find_compiler(cc: str | None = None) -> str:
    """The C compiler to use: ``cc`` or gcc on PATH; BuildError when there is none."""
    name = cc or "gcc"
    path = shutil.which(name)
    if path is None:
        where = "does not exist or is not executable" if "/" in name else "is not on PATH"
        raise BuildError(f"vsgx build: needs a C compiler and '{name}' {where}; install gcc "
                         "(e.g. 'apt install gcc'), or use the prebuilt sample enclaves, which "
                         "need no compiler")
    return path


def check_target(compiler: str) -> None:
    """Enclaves are x86-64 code: refuse a compiler that targets anything else."""
    done = subprocess.run([compiler, "-dumpmachine"], capture_output=True, text=True,
                          check=False)
    target = done.stdout.strip()
    if done.returncode or not target.startswith("x86_64-"):
        raise BuildError(f"vsgx build: {compiler} targets '{target or 'unknown'}', not x86-64; "
                         "enclaves are x86-64 code: use a cross compiler, e.g. "
                         "--cc x86_64-linux-gnu-gcc")


def compiler_version(cc: str | None = None) -> str:
    """``gcc -dumpfullversion`` plus the target: what a reproducible build depends on."""
    compiler = find_compiler(cc)
    out = subprocess.run([compiler, "-dumpfullversion"], capture_output=True, text=True,
                         check=False)
    machine = subprocess.run([compiler, "-dumpmachine"], capture_output=True, text=True,
                             check=False)
    return f"{Path(compiler).name} {out.stdout.strip()} {machine.stdout.strip()}"


def _config_object(config: EnclaveConfig) -> str:
    """Assembly for the non-loaded section holding the configuration."""
    data = config.to_json()
    rows = [", ".join(str(b) for b in data[i:i + 32]) for i in range(0, len(data), 32)]
    body = "\n".join(f"    .byte {row}" for row in rows)
    return (f'    .section .vsgx.config, "", @progbits\n{body}\n'
            '    .section .note.GNU-stack, "", @progbits\n')


def _run(argv: Sequence[str], what: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode:
        output = (done.stderr or done.stdout).strip()
        raise BuildError(f"vsgx build: {what} failed (exit {done.returncode}):\n{output}")


def build(sources: Sequence[str | Path], output: str | Path, config: EnclaveConfig, *,
          include_dirs: Sequence[str | Path] = (), cc: str | None = None,
          extra_cflags: Sequence[str] = ()) -> Path:
    """Compile ``sources`` (C or assembly) with the trusted runtime into ``output``."""
    compiler = find_compiler(cc)
    check_target(compiler)
    if not sources:
        raise BuildError("vsgx build: no source files")
    runtime = runtime_dir()
    srcs = [Path(s) for s in sources]
    for src in srcs:
        if not src.is_file():
            raise BuildError(f"vsgx build: {src}: no such file")
        if src.suffix not in (".c", ".S", ".s"):
            raise BuildError(f"vsgx build: {src}: not a C (.c) or assembly (.S) source")
    includes = [f"-I{runtime / 'include'}", *(f"-I{d}" for d in include_dirs)]
    out = Path(output)
    with tempfile.TemporaryDirectory(prefix="vsgx-build-") as tmp:
        work = Path(tmp)
        objects = []
        inputs = [(runtime / name, f"runtime-{k}") for k, name in enumerate(RUNTIME_SOURCES)]
        inputs += [(src, f"user-{k}") for k, src in enumerate(srcs)]
        for src, stem in inputs:
            obj = work / f"{stem}.o"
            prefix_maps = [f"-ffile-prefix-map={runtime}=vsgx-runtime",
                           f"-ffile-prefix-map={src.resolve().parent}=src",
                           f"-ffile-prefix-map={work}=build"]
            _run([compiler, *CFLAGS, *extra_cflags, *includes, *prefix_maps, "-c", str(src),
                  "-o", str(obj)], f"compiling {src.name}")
            objects.append(str(obj))
        cfg = work / "config.S"
        cfg.write_text(_config_object(config))
        _run([compiler, "-c", str(cfg), "-o", str(work / "config.o")], "assembling the config")
        objects.append(str(work / "config.o"))
        linked = work / "enclave.elf"
        _run([compiler, *LDFLAGS, f"-Wl,-T,{runtime / 'enclave.lds'}", "-o", str(linked),
              *objects], "linking")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(linked, out)
    return out
