"""``vsgx build``, ``vsgx sign`` and ``vsgx measure``: enclave images from C sources to a
SIGSTRUCT, with no SGX machine involved.

``build`` compiles sources with the trusted runtime (:func:`vsgx.sdk.build`), embedding the
configuration: ``-c FILE``, else ``enclave.toml`` beside the first source, else the defaults.
``sign`` writes the SIGSTRUCT (1808 bytes) beside the enclave (``ENCLAVE.sig``), atomically.
``measure`` prints MRENCLAVE, optionally with the layout that produced it; ``--config`` lays
the same ELF out under another ``enclave.toml`` instead of the embedded configuration (keys the
file leaves out take their defaults, as in ``vsgx build``). Rebuilding with that file can
measure differently still: the first segment maps the ELF header, whose section-header offset
moves with the length of the embedded configuration.

Failures are one line on stderr naming the file and the problem, exit status 2; a compiler's
diagnostics are passed through to stderr before that line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from rich.console import Console
from rich.table import Table

from vsgx.arch import PAGE_SIZE, PageType
from vsgx.cli.signing import CliError, describe, guarded
from vsgx.crypto import SigningKeyError, load_signing_key
from vsgx.sdk import (
    BuildError,
    ConfigError,
    EnclaveConfig,
    EnclaveElf,
    EnclaveImage,
    ImageError,
    build,
    sigstruct_path,
)
from vsgx.sdk.layout import Region

DEFAULT_CONFIG = "enclave.toml"
SIGSTRUCT_MODE = 0o644
"""A SIGSTRUCT is public: anyone may read it."""
_DATE = re.compile(r"[0-9]{8}")


def read_config(path: str | Path, command: str) -> EnclaveConfig:
    """The ``[enclave]`` configuration in the TOML file ``path``."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"{command}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{command}: {path} is not UTF-8 text") from None
    try:
        return EnclaveConfig.from_toml(text, where=str(path))
    except ConfigError as exc:
        raise CliError(f"{command}: {exc}") from None


def load_image(path: str | Path, command: str,
               config: EnclaveConfig | None = None) -> EnclaveImage:
    """The enclave image in ``path``, under ``config`` or the embedded configuration; an image
    with neither is laid out with the defaults, which is said on stderr."""
    try:
        elf = EnclaveElf.read(path)
        if config is None and elf.config is None:
            print(f"{command}: {path} has no embedded configuration; using the defaults",
                  file=sys.stderr)
        return EnclaveImage.from_elf(elf, config, name=str(path))
    except ImageError as exc:
        raise CliError(f"{command}: {exc}") from None


def _build_error(exc: BuildError) -> CliError:
    """The one-line error for ``exc``; the compiler output after its first line goes to
    stderr first."""
    first, _, details = str(exc).partition("\n")
    if details:
        print(details, file=sys.stderr)
    return CliError(first.rstrip(":"))


def _build_config(args: argparse.Namespace, first_source: Path) -> EnclaveConfig:
    """``-c FILE``, else ``enclave.toml`` beside the first source, else the defaults (the
    implicit choices are said on stderr)."""
    if args.config is not None:
        return read_config(args.config, "vsgx build")
    beside = first_source.parent / DEFAULT_CONFIG
    if beside.is_file():
        print(f"vsgx build: configuration from {beside}", file=sys.stderr)
        return read_config(beside, "vsgx build")
    print(f"vsgx build: no {DEFAULT_CONFIG} beside {first_source}; using the default "
          "configuration", file=sys.stderr)
    return EnclaveConfig()


def cmd_build(args: argparse.Namespace) -> int:
    """``vsgx build``: compile, then print the output path and its MRENCLAVE."""
    sources = [Path(s) for s in args.sources]
    if args.output is not None:
        output = Path(args.output)
    elif len(sources) == 1:
        output = Path(sources[0].stem + ".elf")
    else:
        raise CliError("vsgx build: -o OUTPUT is required with more than one source")
    if any(output.resolve() == src.resolve() for src in sources):
        raise CliError(f"vsgx build: output {output} is one of the sources")
    config = _build_config(args, sources[0])
    try:
        built = build(sources, output, config, include_dirs=args.include, cc=args.cc)
    except BuildError as exc:
        raise _build_error(exc) from None
    except OSError as exc:
        raise CliError(f"vsgx build: cannot write {output}: {exc.strerror}") from None
    image = load_image(built, "vsgx build")
    print(f"output: {built}")
    print(f"mrenclave: {image.measure().hex()}")
    return 0


def parse_date(text: str | None) -> datetime.date:
    """``--date YYYYMMDD`` as a calendar date; today (UTC) without one."""
    if text is None:
        return datetime.datetime.now(datetime.UTC).date()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise CliError(f"vsgx sign: --date {text!r} is not a calendar date written "
                       "YYYYMMDD") from None


def read_key(path: str) -> rsa.RSAPrivateKey:
    """The signing key in the PEM file ``path`` (RSA-3072, e = 3)."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"vsgx sign: cannot read {path}: {exc.strerror}") from None
    try:
        return load_signing_key(pem)
    except SigningKeyError as exc:
        raise CliError(f"vsgx sign: {path}: {exc}") from None


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` in one step (a temporary file beside it, renamed), so
    a reader never sees a partial file and a failure leaves the old one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def cmd_sign(args: argparse.Namespace) -> int:
    """``vsgx sign``: write the SIGSTRUCT, then print its MRENCLAVE and MRSIGNER."""
    day = parse_date(args.date)
    key = read_key(args.key)
    image = load_image(args.enclave, "vsgx sign")
    output = Path(args.output) if args.output is not None else sigstruct_path(args.enclave)
    if output.resolve() == Path(args.enclave).resolve():
        raise CliError(f"vsgx sign: output {output} is the enclave itself")
    sig = image.sign(key, date=day)
    try:
        write_atomically(output, sig.to_bytes(), SIGSTRUCT_MODE)
    except OSError as exc:
        raise CliError(f"vsgx sign: cannot write {output}: {exc.strerror}") from None
    fields = describe(sig)
    print(f"sigstruct: {output}")
    print(f"mrenclave: {fields['mrenclave']}")
    print(f"mrsigner: {fields['mrsigner']}")
    return 0


def measurement(image: EnclaveImage, mrenclave: str) -> dict[str, Any]:
    """``vsgx measure --json``: the SECS fields ECREATE gets, the regions and the ecalls."""
    secs = image.secs()
    return {
        "mrenclave": mrenclave,
        "size": secs.size,
        "ssaframesize": secs.ssaframesize,
        "attributes": secs.attributes.to_dict(),
        "miscselect": secs.miscselect,
        "regions": [{"name": r.name, "offset": r.offset, "size": r.size, "secinfo": r.secinfo,
                     "measured": r.added} for r in image.layout.regions],
        "ecalls": list(image.elf.ecalls),
    }


def secinfo_text(secinfo: int) -> str:
    """SECINFO.FLAGS as ``RW- REG``; the dynamic range (nothing added) as ``(EAUG)``."""
    if not secinfo:
        return "(EAUG)"
    rwx = "".join(c if secinfo & bit else "-" for c, bit in (("R", 1), ("W", 2), ("X", 4)))
    page_type = PageType(secinfo >> 8).name.removeprefix("PT_")
    return f"{rwx} {page_type}"


def size_text(size: int) -> str:
    """A byte count in the largest binary unit that divides it (``64K``, ``2M``)."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


def _region_row(region: Region) -> tuple[str, ...]:
    """One row of the layout table."""
    return (region.name, f"{region.offset:#x}", size_text(region.size),
            str(region.size // PAGE_SIZE), secinfo_text(region.secinfo),
            "yes" if region.added else "no")


def _print_layout(path: str, image: EnclaveImage, mrenclave: str) -> None:
    """The regions as a table, then the totals."""
    layout = image.layout
    table = Table(title=f"enclave {path}")
    for column in ("region", "offset", "size", "pages", "SECINFO", "measured"):
        table.add_column(column, justify="right" if column in ("offset", "size", "pages")
                         else "left")
    for region in layout.regions:
        table.add_row(*_region_row(region))
    totals = Table.grid(padding=(0, 2))
    totals.add_row("MRENCLAVE", mrenclave)
    totals.add_row("ELRANGE size", f"{layout.size:#x} ({size_text(layout.size)})")
    totals.add_row("pages added", f"{layout.page_count} (all measured)")
    totals.add_row("SSAFRAMESIZE", str(layout.ssa_frame_size))
    totals.add_row("threads (TCS)", str(len(layout.threads)))
    totals.add_row("ecalls", ", ".join(image.elf.ecalls) or "(none)")
    console = Console()
    console.print(table)
    console.print(totals)


def cmd_measure(args: argparse.Namespace) -> int:
    """``vsgx measure``: MRENCLAVE alone, as JSON, or with the layout table."""
    config = read_config(args.config, "vsgx measure") if args.config is not None else None
    image = load_image(args.enclave, "vsgx measure", config)
    mrenclave = image.measure().hex()
    if args.json:
        print(json.dumps(measurement(image, mrenclave)))
    elif args.layout:
        _print_layout(args.enclave, image, mrenclave)
    else:
        print(mrenclave)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``build``, ``sign`` and ``measure`` to the ``vsgx`` command."""
    build_cmd = sub.add_parser(
        "build", help="compile C enclave sources into an enclave ELF",
        description="Compile SOURCE files (C or assembly) with vsgx's trusted runtime into an "
                    "enclave ELF with its configuration embedded, and print its MRENCLAVE.")
    build_cmd.add_argument("-c", "--config", metavar="TOML",
                           help=f"the configuration (default: {DEFAULT_CONFIG} beside the "
                                "first source if there is one, else the defaults)")
    build_cmd.add_argument("-o", "--output", metavar="OUT",
                           help="the enclave ELF (default with one source: its stem + .elf "
                                "in the current directory)")
    build_cmd.add_argument("-I", dest="include", metavar="DIR", action="append", default=[],
                           help="add DIR to the include path (repeatable)")
    build_cmd.add_argument("--cc", metavar="COMPILER", help="the C compiler (default: gcc)")
    build_cmd.add_argument("sources", metavar="SOURCE", nargs="+")
    build_cmd.set_defaults(func=guarded(cmd_build))

    sign = sub.add_parser(
        "sign", help="sign an enclave: write its SIGSTRUCT",
        description="Measure ENCLAVE and write its SIGSTRUCT, signed with KEY (RSA-3072, e=3; "
                    "see 'vsgx keygen'), to ENCLAVE.sig.")
    sign.add_argument("--key", metavar="KEY.pem", required=True)
    sign.add_argument("--date", metavar="YYYYMMDD", help="SIGSTRUCT.DATE (default: today, UTC)")
    sign.add_argument("-o", "--output", metavar="SIG",
                      help="where to write the SIGSTRUCT (default: ENCLAVE.sig)")
    sign.add_argument("enclave", metavar="ENCLAVE")
    sign.set_defaults(func=guarded(cmd_sign))

    measure = sub.add_parser(
        "measure", help="print an enclave's MRENCLAVE",
        description="Print the MRENCLAVE that loading ENCLAVE produces (ECREATE, then EADD and "
                    "EEXTEND of every page in layout order).")
    output = measure.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="the SECS fields, regions and ecalls as one JSON object")
    output.add_argument("-v", "--verbose", dest="layout", action="store_true",
                        help="also show the layout: regions, SECINFO and totals")
    measure.add_argument("--config", metavar="TOML",
                         help="lay the image out under this configuration instead of the "
                              "embedded one")
    measure.add_argument("enclave", metavar="ENCLAVE")
    measure.set_defaults(func=guarded(cmd_measure))
