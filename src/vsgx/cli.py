"""The ``vsgx`` command: ``main(argv) -> exit code``, library errors mapped to one-line
messages (the pypa/build pattern); ``-v`` shows a traceback for unexpected errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vsgx import __version__

EXIT_USAGE = 2


def _cmd_isa(args: argparse.Namespace) -> int:
    from vsgx.isa import ScriptError, run_script

    try:
        text = sys.stdin.read() if args.script == "-" else Path(args.script).read_text()
    except OSError as exc:
        print(f"vsgx isa: cannot read {args.script}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError:
        print(f"vsgx isa: {args.script} is not UTF-8 text", file=sys.stderr)
        return EXIT_USAGE
    try:
        results = run_script(text)
    except ScriptError as exc:
        print(f"vsgx isa: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a bug, reported without a traceback
        if args.verbose:
            raise
        print(f"vsgx: internal error: {type(exc).__name__}: {exc} (run with -v for details)",
              file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
