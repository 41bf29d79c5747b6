"""The ``vsgx`` commands that take a QEMU command line: ``info``, ``cpuid``, ``dmesg``,
``export`` and ``run``.

Their own options come first; the first argument that is not one of them starts the QEMU
options (``--`` may separate the two explicitly). QEMU errors are printed the way QEMU prints
them (``vsgx: <QEMU's message>``) with exit status 1, as QEMU exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from vsgx.arch.cpuid import EPC_SECTION_VALID, decode_epc_section
from vsgx.monitor.hmp import format_info_sgx
from vsgx.platform.host import (
    DEFAULT_HOST,
    PROFILES,
    Host,
    HostError,
    data_dir,
    open_host,
)
from vsgx.platform.machine import MachineError, VirtualMachine, host_sgx_capabilities
from vsgx.platform.qemuopts import QemuOptionError

EXIT_QEMU = 1
PROG = "vsgx"


class CommandFailed(Exception):
    """A failure already worded for the user; ``code`` is the exit status."""

    def __init__(self, text: str, code: int = EXIT_QEMU) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


def split_options(argv: Sequence[str], takes_value: set[str], flags: set[str]
                  ) -> tuple[list[str], list[str]]:
    """Split ``argv`` into the command's own options and the QEMU options that follow."""
    own: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = arg.split("=", 1)[0]
        if arg == "--":
            return own, list(argv[index + 1:])
        if arg in flags or arg in ("-h", "--help"):
            own.append(arg)
        elif name in takes_value:
            own.append(arg)
            if "=" not in arg and index + 1 < len(argv):
                index += 1
                own.append(argv[index])
        else:
            break
        index += 1
    return own, list(argv[index:])


def add_host_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, metavar="NAME",
                        help="the emulated host (its keys persist under "
                             f"{data_dir()}/hosts; 'help' lists them; default: %(default)s)")
    parser.add_argument("--host-profile", metavar="PROFILE",
                        help="the kind of host to create (default icelake-sp; 'help' lists "
                             "the profiles); must match an existing host's")


def _open(args: argparse.Namespace) -> Host:
    if args.host_profile == "help":
        _print_profiles()
        raise CommandFailed("", 0)
    if args.host == "help":
        _print_hosts()
        raise CommandFailed("", 0)
    try:
        return open_host(args.host, args.host_profile)
    except HostError as exc:
        raise CommandFailed(f"{PROG}: {exc}") from None


def build_machine(args: argparse.Namespace, qemu: list[str],
                  factory: Callable[..., VirtualMachine] = VirtualMachine.from_args
                  ) -> VirtualMachine:
    """Build the machine, printing QEMU's warnings; QEMU's errors become CommandFailed."""
    host = _open(args)
    try:
        vm = factory(qemu, host=host)
    except QemuOptionError as exc:
        raise CommandFailed(exc.render(PROG).rstrip("\n")) from None
    for warning in vm.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return vm


def _print_profiles() -> None:
    table = Table(title="host profiles (--host-profile)")
    table.add_column("name")
    table.add_column("EPC")
    table.add_column("description")
    for prof in PROFILES.values():
        table.add_row(prof.name, _size(prof.epc_size) if prof.sgx else "-", prof.description)
    Console().print(table)


def _print_hosts() -> None:
    table = Table(title=f"hosts in {data_dir() / 'hosts'} (--host)")
    table.add_column("name")
    table.add_column("profile")
    for path in sorted((data_dir() / "hosts").glob("*.json")):
        try:
            prof = json.loads(path.read_text(encoding="utf-8")).get("profile", "?")
        except (OSError, ValueError, AttributeError):
            prof = "(damaged)"
        table.add_row(path.stem, str(prof))
    Console().print(table)


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} B"


# -- info -----------------------------------------------------------------------------------


def cmd_info_sgx(args: argparse.Namespace, qemu: list[str]) -> int:
    vm = build_machine(args, qemu)
    try:
        info = vm.query_sgx()
    except MachineError as exc:
        raise CommandFailed(f"{PROG}: {exc}") from None
    finally:
        vm.close()
    if args.json:
        print(json.dumps(info))
    else:
        sys.stdout.write(format_info_sgx(info))
    return 0


def cmd_info_capabilities(args: argparse.Namespace, qemu: list[str]) -> int:
    if qemu:
        raise CommandFailed(f"{PROG} info sgx-capabilities: takes no QEMU options "
                            f"(got '{qemu[0]}'); it describes the host", 2)
    host = _open(args)
    try:
        caps = host_sgx_capabilities(host)
    except MachineError as exc:
        raise CommandFailed(f"{PROG}: {exc}") from None
    if args.json:
        print(json.dumps(caps))
        return 0
    table = Table(title=f"host '{host.name}' ({host.profile.name}): SGX capabilities")
    table.add_column("capability")
    table.add_column("value")
    for key in ("sgx", "sgx1", "sgx2", "flc"):
        table.add_row(key, "yes" if caps[key] else "no")
    for s in caps["sections"]:
        table.add_row(f"EPC section (node {s['node']})", f"{s['size']} ({_size(s['size'])})")
    table.add_row("launch control", "locked to Intel's key" if host.profile.lc_locked
                  else "unlocked" if host.profile.flc else "not supported")
    Console().print(table)
    return 0


# -- cpuid ------------------------------------------------------------------------------------


def _decode(e: dict[str, int]) -> str:
    """A short reading of one CPUID entry for people (SDM 36.7.2 field names)."""
    leaf, subleaf, eax, ebx, ecx, edx = (e[k] for k in ("leaf", "subleaf", "eax", "ebx",
                                                         "ecx", "edx"))
    if leaf == 0x7:
        flags = [name for name, on in (("SGX", ebx >> 2 & 1), ("SGX_LC", ecx >> 30 & 1)) if on]
        return " ".join(flags) or "no SGX"
    if subleaf == 0:
        names = [n for n, bit in (("SGX1", 0), ("SGX2", 1), ("ENCLV", 5), ("ENCLS-C", 6),
                                  ("EDECCSSA", 11)) if eax >> bit & 1]
        return (f"{' '.join(names)}; MISCSELECT {ebx:#x}; max enclave 2^{edx & 0xFF} / "
                f"2^{edx >> 8 & 0xFF} (64-bit)")
    if subleaf == 1:
        return f"ATTRIBUTES {ebx << 32 | eax:#x}; XFRM {edx << 32 | ecx:#x}"
    kind, base, size = decode_epc_section((eax, ebx, ecx, edx))
    if kind == EPC_SECTION_VALID:
        return f"EPC section {base:#x}, {_size(size)}"
    return "end of EPC sections"


def cmd_cpuid(args: argparse.Namespace, qemu: list[str]) -> int:
    vm = build_machine(args, qemu)
    entries = vm.cpuid.entries()
    vm.close()
    if args.json:
        print(json.dumps(entries))
        return 0
    table = Table(title="guest CPUID")
    for column in ("leaf", "sub", "eax", "ebx", "ecx", "edx"):
        table.add_column(column, no_wrap=True)
    table.add_column("meaning")
    for e in entries:
        table.add_row(f"{e['leaf']:#x}", str(e["subleaf"]),
                      *(f"{e[r]:08x}" for r in ("eax", "ebx", "ecx", "edx")), _decode(e))
    Console().print(table)
    return 0


# -- dmesg --------------------------------------------------------------------------------------


def cmd_dmesg(args: argparse.Namespace, qemu: list[str]) -> int:
    from vsgx.machine import Machine

    vm = build_machine(args, qemu, Machine.from_args)
    assert isinstance(vm, Machine)
    try:
        vm.start()
        sys.stdout.write("".join(line + "\n" for line in vm.guest.dmesg))
    except MachineError as exc:
        raise CommandFailed(f"{PROG}: {exc}") from None
    finally:
        vm.close()
    return 0


# -- export -----------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace, qemu: list[str]) -> int:
    from vsgx.platform.export import format_shell, to_libvirt_xml, to_qemu_command

    vm = build_machine(args, qemu)
    vm.close()
    if args.format == "qemu":
        print(format_shell(to_qemu_command(vm.config)))
        return 0
    result = to_libvirt_xml(vm.config)
    for warning in result.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    sys.stdout.write(result.xml if result.xml.endswith("\n") else result.xml + "\n")
    return 0


# -- run ----------------------------------------------------------------------------------------


def run_program(vm: VirtualMachine, program: list[str]) -> int:
    """Run the Python file ``program[0]`` with ``sys.argv = program`` and the global ``vm``
    (the running :class:`vsgx.Machine`; ``vm.guest.spawn()`` gives it a guest process).
    Its exit status is the command's: 0 when it returns, ``SystemExit``'s code otherwise; an
    uncaught exception prints its traceback (it is the user's program) and gives 1."""
    import runpy
    import traceback

    saved = sys.argv
    sys.argv = list(program)
    try:
        runpy.run_path(program[0], init_globals={"vm": vm}, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.filename == program[0]:
            raise CommandFailed(f"{PROG} run: cannot read {program[0]}: {exc.strerror}",
                                2) from None
        traceback.print_exc()
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved
    return 0


def cmd_run(args: argparse.Namespace, qemu: list[str]) -> int:
    """Start the machine with its QMP monitors and keep it running until QMP ``quit``,
    SIGINT or SIGTERM; or, with ``-- PROGRAM.py [ARGS]`` after the QEMU options, run that
    Python program against the running machine and stop when it ends."""
    from vsgx.machine import Machine
    from vsgx.monitor.server import QmpServer

    program: list[str] = []
    if "--" in qemu:
        cut = qemu.index("--")
        qemu, program = qemu[:cut], qemu[cut + 1:]
        if not program:
            raise CommandFailed(f"{PROG} run: '--' must be followed by a Python program", 2)
    vm = build_machine(args, qemu, Machine.from_args)
    done = threading.Event()
    vm.subscribe(lambda event, _data: done.set() if event == "SHUTDOWN" else None)
    servers = [QmpServer(vm, qmp) for qmp in vm.config.qmp]
    try:
        # The machine is up before any monitor answers, as QEMU finishes machine init
        # before its main loop serves monitor commands.
        vm.start()
        for server, qmp in zip(servers, vm.config.qmp, strict=True):
            if qmp.wait:  # QEMU blocks here too, until the first client connects
                where = qmp.path if qmp.transport == "unix" else f"{qmp.host}:{qmp.port}"
                print(f"{PROG}: waiting for a QMP client on {qmp.transport}:{where} "
                      "(wait=on)", file=sys.stderr, flush=True)
            server.start()
    except (OSError, MachineError) as exc:
        for server in servers:
            server.close()
        vm.close()
        raise CommandFailed(f"{PROG}: {exc}") from None
    if program:
        try:
            return run_program(vm, program)
        finally:
            for server in servers:
                server.close()
            vm.close()
    previous = {sig: signal.signal(sig, lambda *_: done.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        where = ", ".join(str(s.address) for s in servers) or "no QMP monitor"
        print(f"{PROG}: machine running ({where}); stop it with QMP 'quit' or Ctrl-C",
              file=sys.stderr, flush=True)
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for server in servers:
            server.close()
        vm.close()
    return 0


COMMANDS = ("info", "cpuid", "dmesg", "export", "run")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the machine commands to the top-level parser (for help and dispatch)."""
    usage_tail = "[QEMU-OPTION ...]"
    info = sub.add_parser("info", help="what QEMU's HMP/QMP 'info' shows for a machine or host")
    info_sub = info.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, helptext in (("sgx", "HMP 'info sgx' (or query-sgx with --json)"),
                           ("sgx-capabilities", "the host's SGX capabilities "
                                                "(query-sgx-capabilities)")):
        p = info_sub.add_parser(name, help=helptext,
                                usage=f"vsgx info {name} [--json] [--host NAME] "
                                      f"[--host-profile PROFILE] "
                                      f"{usage_tail if name == 'sgx' else ''}")
        p.add_argument("--json", action="store_true", help="print the QMP return object")
        add_host_options(p)
        p.set_defaults(machine=cmd_info_sgx if name == "sgx" else cmd_info_capabilities)
    cpuid = sub.add_parser("cpuid", help="the guest's CPUID leaf 7 and 0x12 subleaves",
                           usage=f"vsgx cpuid [--json] [--host NAME] {usage_tail}")
    cpuid.add_argument("--json", action="store_true", help="print a JSON list")
    add_host_options(cpuid)
    cpuid.set_defaults(machine=cmd_cpuid)
    dmesg = sub.add_parser("dmesg", help="the guest kernel's SGX and NUMA boot lines",
                           usage=f"vsgx dmesg [--host NAME] {usage_tail}")
    add_host_options(dmesg)
    dmesg.set_defaults(machine=cmd_dmesg)
    export = sub.add_parser("export", help="the same machine for real QEMU/KVM or libvirt",
                            usage=f"vsgx export {{qemu,libvirt}} [--host NAME] {usage_tail}")
    export.add_argument("format", choices=("qemu", "libvirt"))
    add_host_options(export)
    export.set_defaults(machine=cmd_export)
    run = sub.add_parser("run", help="start the machine and keep it running (QMP with -qmp), "
                                     "or run a Python program against it",
                         usage=f"vsgx run [--host NAME] {usage_tail} [-- PROGRAM.py [ARG ...]]")
    add_host_options(run)
    run.set_defaults(machine=cmd_run)


_VALUE_OPTIONS = {"--host", "--host-profile"}
_FLAG_OPTIONS = {"--json"}


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    """Run a machine command: ``argv`` starts with the command name (and, for ``info`` and
    ``export``, its positional word)."""
    head = list(argv[:2]) if argv[0] in ("info", "export") else [argv[0]]
    own, qemu = split_options(argv[len(head):], _VALUE_OPTIONS, _FLAG_OPTIONS)
    args = parser.parse_args([*head, *own])
    try:
        code: int = args.machine(args, qemu)
    except CommandFailed as exc:
        if exc.text:
            print(exc.text, file=sys.stderr)
        return exc.code
    return code
