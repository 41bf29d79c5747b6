"""The ``vsgx`` command: ``main(argv) -> exit code``, library errors mapped to one-line
messages (the pypa/build pattern); ``-v`` shows a traceback for unexpected errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vsgx import __version__
from vsgx.cli import demo, machine, sdk, signing

EXIT_USAGE = 2


def one_line(message: str) -> str:
    """Escape control characters so an error quoting user input stays on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in message)


def _fail(message: str) -> int:
    print(one_line(message), file=sys.stderr)
    return EXIT_USAGE


def _cmd_isa(args: argparse.Namespace) -> int:
    from vsgx.isa import ScriptError, run_script

    try:
        if args.script == "-":
            stream = getattr(sys.stdin, "buffer", None)  # absent when stdin is a text stub
            text = stream.read().decode("utf-8") if stream is not None else sys.stdin.read()
        else:
            text = Path(args.script).read_bytes().decode("utf-8")
    except OSError as exc:
        return _fail(f"vsgx isa: cannot read {args.script}: {exc.strerror}")
    except UnicodeDecodeError:
        return _fail(f"vsgx isa: {args.script} is not UTF-8 text")
    try:
        results = run_script(text)
    except ScriptError as exc:
        return _fail(f"vsgx isa: {exc}")
    indent = None if args.compact else 2
    print(json.dumps(results, indent=indent))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsgx", description="vsgx: a virtual Intel SGX platform.")
    parser.add_argument("--version", action="version", version=f"vsgx {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show a traceback for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    isa = sub.add_parser(
        "isa", help="run a JSON script of SGX leaf invocations on a fresh emulated platform",
        description="Run SCRIPT (JSON: {\"platform\": {...}, \"ops\": [...]}) on a fresh "
                    "emulated SGX platform and print one JSON result per op. '-' reads stdin.")
    isa.add_argument("script", metavar="SCRIPT")
    isa.add_argument("--compact", action="store_true", help="print the results on one line")
    isa.set_defaults(func=_cmd_isa)
    machine.register(sub)
    signing.register(sub)
    sdk.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = 0
    while first < len(argv) and argv[first] in ("-v", "--verbose"):
        first += 1
    verbose = first > 0
    if first < len(argv) and argv[first] in machine.COMMANDS:
        # QEMU options follow these commands; argparse cannot take them as a remainder.
        command = argv[first:]

        def run() -> int:
            return machine.dispatch(parser, command)
    else:
        args = parser.parse_args(argv)
        verbose = args.verbose
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE

        def run() -> int:
            code: int = args.func(args)
            return code
    try:
        return run()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a bug, reported without a traceback
        if verbose:
            raise
        print(f"vsgx: internal error: {type(exc).__name__}: {exc} (run with -v for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
