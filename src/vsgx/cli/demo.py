"""``vsgx demo``: the whole system at work, in one command.

It boots the seed page's NUMA example machine (two nodes, 64 MiB + 28 MiB of virtual EPC,
``-cpu host,+sgx-provisionkey``) on the default emulated host, shows what the guest sees of
SGX (CPUID, the kernel's EPC and SRAT lines), signs the shipped sample enclaves with a
throwaway key, runs every sample (ecalls and ocalls, sealing, local attestation, in-enclave
exceptions, threads, SGX2), shows the EPC each NUMA node lends to enclaves loaded on it,
migrates the running VM to another emulated host with an enclave in it (:func:`_migration`),
and ends with a summary table. ``vsgx demo --migrate`` runs only the migration. Nothing is
compiled: the samples ship prebuilt. Exit status 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vsgx.sdk import sample

SEED_NUMA = """-machine q35 -m 4G -smp 4
  -cpu host,+sgx-provisionkey
  -object memory-backend-ram,size=2G,host-nodes=0,policy=bind,id=node0
  -object memory-backend-epc,id=mem0,size=64M,prealloc=on,host-nodes=0,policy=bind
  -numa node,nodeid=0,cpus=0-1,memdev=node0
  -object memory-backend-ram,size=2G,host-nodes=1,policy=bind,id=node1
  -object memory-backend-epc,id=mem1,size=28M,prealloc=on,host-nodes=1,policy=bind
  -numa node,nodeid=1,cpus=2-3,memdev=node1
  -M sgx-epc.0.memdev=mem0,sgx-epc.0.node=0,sgx-epc.1.memdev=mem1,sgx-epc.1.node=1"""
"""The seed page's NUMA example; ``-smp 4`` because QEMU refuses ``cpus=0-1``/``2-3`` with
the default single vCPU."""

SAMPLES = ("hello", "sealing", "attestation", "exception", "threads", "sgx2")
MiB = 1 << 20
DEST_HOST = "vsgx-demo-b"
"""The throwaway emulated host the migration goes to: other fused keys than the default."""


def examples_dir() -> Path:
    """The sample enclaves and programs shipped with vsgx."""
    return Path(str(resources.files("vsgx") / "examples"))


def load_sample(name: str) -> ModuleType:
    """``examples/NAME/app.py`` as a module (its ``run(process, key)`` drives the sample)."""
    return sample.load_sample(examples_dir() / name / "app.py")


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""
    rows: list[tuple[str, str]] = field(default_factory=list)


class Demo:
    """The demo's steps, each timed and recorded for the summary."""

    def __init__(self, console: Console, verbose: bool) -> None:
        self.console = console
        self.verbose = verbose
        self.steps: list[Step] = []

    def step(self, name: str, work: Callable[[], Any]) -> Any:
        record = Step(name)
        self.steps.append(record)
        start = time.perf_counter()
        with self.console.status(f"{name}…"):
            try:
                result = work()
            except Exception as exc:
                record.ok, record.detail = False, f"{type(exc).__name__}: {exc}"
                if self.verbose:
                    self.console.print(traceback.format_exc(), markup=False)
                result = None
        record.seconds = time.perf_counter() - start
        mark = "[green]ok[/]" if record.ok else f"[red]FAILED[/] {record.detail}"
        self.console.print(f"  {name}: {mark} ({record.seconds:.2f} s)")
        if isinstance(result, list) and all(isinstance(r, tuple) for r in result):
            record.rows = result
        return result


def _guest_view(console: Console, vm: Any) -> None:
    from vsgx.cli.machine import _decode

    table = Table(title="what the guest sees: CPUID leaf 7 and 0x12")
    for column in ("leaf", "sub", "meaning"):
        table.add_column(column)
    for e in vm.cpuid.entries():
        if e["leaf"] in (0x7, 0x12):
            table.add_row(f"{e['leaf']:#x}", str(e["subleaf"]), _decode(e))
    console.print(table)
    flags = [f for f in vm.guest.cpuinfo_flags if f.startswith("sgx")]
    console.print(f"/proc/cpuinfo flags: {' '.join(flags)}; devices: "
                  f"{', '.join(vm.guest.devices)}")
    for line in vm.guest.dmesg:
        if "sgx:" in line or "SRAT: Node" in line:
            console.print(f"  [dim]dmesg[/] {escape(line)}", highlight=False)


def _samples_table(console: Console, name: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=f"sample: {name}", show_header=False)
    table.add_column("check")
    table.add_column("outcome")
    for check, outcome in rows:
        table.add_row(check, outcome)
    console.print(table)


def _numa(console: Console, vm: Any, key: Any) -> list[tuple[str, str]]:
    """Load the hello enclave once from a process on each node and show where its EPC came
    from (the guest allocates from the caller's node first)."""
    from vsgx.sdk import Enclave

    epc = vm.guest.epc
    before = epc.node_usage()
    elf = examples_dir() / "hello" / "enclave.elf"
    loaded = []
    procs = [vm.guest.spawn(node=node) for node in sorted(before)]
    try:
        for proc in procs:
            loaded.append(Enclave.load(proc, elf, key=key))
        during = epc.node_usage()
        host = {s["node"]: s for s in vm.epc_usage()}
        table = Table(title="EPC per NUMA node (an enclave loaded from a process on each)")
        for column in ("node", "EPC", "used by enclaves", "free", "host memory committed"):
            table.add_column(column, justify="right")
        rows = []
        for node, (total, free) in sorted(during.items()):
            used = (before[node][1] - free) * 4096
            committed = host.get(node, {}).get("committed", 0)
            table.add_row(str(node), f"{total * 4096 // MiB} MiB", f"{used // 1024} KiB",
                          f"{free * 4096 / MiB:.1f} MiB", f"{committed // MiB} MiB")
            rows.append((f"node {node}: EPC pages taken by its enclave", f"{used // 1024} KiB"))
            sample.check(used > 0, f"node {node}'s enclave took no EPC from node {node}")
        console.print(table)
        return rows
    finally:
        for enclave in loaded:
            enclave.close()
        for proc in procs:
            proc.exit()


class _Migration:
    """The migration section's state, handed from step to step."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.enclave: Any = None
        self.dest: Any = None
        self.blob = b""
        self.mrenclave = b""


class _QmpSession:
    """The few lines of QMP the demo speaks to a machine's monitor, over a unix socket (QMP
    specification, ``docs/interop/qmp-spec``): the greeting, ``qmp_capabilities``, then
    commands; events that arrive meanwhile are kept in :attr:`events`."""

    def __init__(self, vm: Any, path: str) -> None:
        from vsgx.monitor.server import QmpServer
        from vsgx.platform.config import QmpConfig

        self._server = QmpServer(vm, QmpConfig("unix", path=path, wait=False))
        self._server.start()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(path)
        self._stream = self._socket.makefile("rwb")
        self.events: list[dict[str, Any]] = []
        json.loads(self._stream.readline())  # the greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments: Any) -> Any:
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self._stream.write(json.dumps(request).encode() + b"\n")
        self._stream.flush()
        while True:
            reply = json.loads(self._stream.readline())
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise sample.CheckFailed(f"QMP {command}: {reply['error']['desc']}")
            else:
                return reply["return"]

    def __enter__(self) -> _QmpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self._socket.close()
        self._server.close()


def _migration(demo: Demo, console: Console, vm: Any, key: Any) -> None:
    """Seal a secret in an enclave on the demo's host (A), migrate the running VM through QMP,
    spoken over each machine's monitor socket (``migrate`` to ``file:`` with the ``events``
    capability, ``migrate-incoming`` on a destination started with ``-incoming defer`` on the
    throwaway host B), and show, each as a timed and checked step: the fault on
    the first ecall, the recovery (rebuilt, same MRENCLAVE), the old blob refused on B and the
    secret provisioned again. ``vm`` is in ``postmigrate`` afterwards."""
    from vsgx.cpu.processor import cpusvn_beyond
    from vsgx.machine import Machine
    from vsgx.platform.host import open_host
    from vsgx.sdk import Enclave, EnclaveLost

    sealing = load_sample("sealing")
    secret, check = sealing.SECRET, sample.check
    state = _Migration()
    elf = examples_dir() / "sealing" / "enclave.elf"

    def seal_on_a() -> list[tuple[str, str]]:
        state.proc = vm.guest.spawn()
        # recover=False so that the fault and the recovery show as two steps; an application
        # keeps the default (recover=True) and gets both from its first ecall
        state.enclave = Enclave.load(state.proc, elf, key=key, recover=False)
        state.mrenclave = state.enclave.mrenclave
        state.blob = sealing.seal(state.enclave, sealing.KEYPOLICY_MRENCLAVE, secret)
        status, text = sealing.unseal(state.enclave, state.blob, len(secret))
        check(status == sealing.SUCCESS and text == secret, "the blob does not unseal on A")
        return [("host", vm.host.name), ("enclave", f"pid {state.proc.pid}, MRENCLAVE "
                                                   f"{state.mrenclave.hex()[:16]}…"),
                ("sealed (MRENCLAVE policy)", f"a {len(state.blob)}-byte blob, unseals on A")]

    def migrate() -> list[tuple[str, str]]:
        state.dest = Machine.from_args([*shlex.split(SEED_NUMA), "-incoming", "defer"],
                                       host=open_host(DEST_HOST, persist=False))
        state.dest.start()
        with tempfile.TemporaryDirectory(prefix="vsgx-demo-") as tmp:
            uri = f"file:{tmp}/vm.mig"
            with _QmpSession(vm, f"{tmp}/a.qmp") as qmp_a, \
                    _QmpSession(state.dest, f"{tmp}/b.qmp") as qmp_b:
                qmp_a.execute("migrate-set-capabilities",
                              capabilities=[{"capability": "events", "state": True}])
                qmp_a.execute("migrate", uri=uri)
                qmp_b.execute("migrate-incoming", uri=uri)
                out, into = qmp_a.execute("query-migrate"), qmp_b.execute("query-migrate")
                events = [e["data"]["status"] for e in qmp_a.events if e["event"] == "MIGRATION"]
        check(out.get("status") == "completed" and into.get("status") == "completed",
              f"migration status: {out.get('status')} on A, {into.get('status')} on B")
        check(state.dest.state.value == "running", f"B is {state.dest.state.value}")
        moved = state.dest.guest.process(state.proc.pid)
        state.enclave.migrated(moved)
        state.proc = moved
        ram = out.get("ram", {})
        check(events[-1:] == ["completed"], f"MIGRATION events on A: {events}")
        return [("QMP", f"migrate file: on {vm.host.name}, migrate-incoming on {DEST_HOST}"),
                ("MIGRATION events on A", " → ".join(events)),
                ("query-migrate", f"completed: {ram.get('normal', 0)} pages sent, "
                                  f"{ram.get('duplicate', 0)} zero pages left out, "
                                  f"downtime {out.get('downtime', 0)} ms"),
                ("states", f"A {vm.state.value}, B {state.dest.state.value}"),
                ("process", f"pid {moved.pid} on B; Enclave.migrated(process)")]

    def fault() -> list[tuple[str, str]]:
        try:
            state.enclave.ecall("sealed_size", len(secret))
        except EnclaveLost as lost:
            check(not lost.recreated, "the enclave was rebuilt with recover=False")
            return [("first ecall on B", "EnclaveLost: EENTER faulted (#PF, PFEC.SGX): the "
                                         "EPC did not migrate")]
        raise sample.CheckFailed("the first ecall on B did not fault")

    def recover() -> list[tuple[str, str]]:
        state.enclave.recover = True
        try:
            state.enclave.ecall("sealed_size", len(secret))
        except EnclaveLost as lost:
            check(lost.recreated, "the enclave was not rebuilt")
        else:
            raise sample.CheckFailed("the ecall did not see the loss again")
        size = state.enclave.ecall("sealed_size", len(secret))
        check(size == len(state.blob), f"the rebuilt enclave says {size} bytes")
        check(state.enclave.mrenclave == state.mrenclave and state.enclave.generation == 1,
              "the rebuilt enclave has another MRENCLAVE")
        return [("rebuilt", f"generation {state.enclave.generation}, same MRENCLAVE "
                            f"{state.mrenclave.hex()[:16]}…, ecalls answer again")]

    def unseal_old() -> list[tuple[str, str]]:
        status, _ = sealing.unseal(state.enclave, state.blob, len(secret))
        a, b = vm.host.secrets, state.dest.host.secrets
        # the blob's KEYREQUEST carries A's CPUSVN: the same as B's on hosts of one profile,
        # so B derives a key from its own seal fuses and the MAC check fails; a CPUSVN beyond
        # B's (a host with newer microcode) would make EGETKEY refuse the request instead
        wanted = (sealing.ERROR_KEY if cpusvn_beyond(a.cpusvn, b.cpusvn)
                  else sealing.ERROR_MAC_MISMATCH)
        names = {sealing.SUCCESS: "unsealed",
                 sealing.ERROR_KEY: "refused (VSGX_ERROR_KEY): EGETKEY refused the blob's "
                                    "KEYREQUEST, whose CPUSVN (host A's) is beyond B's",
                 sealing.ERROR_MAC_MISMATCH: "refused (VSGX_ERROR_MAC_MISMATCH): B's seal "
                                             "fuses derive another key"}
        outcome = names.get(status, f"status {status:#x}")
        check(status == wanted, f"the blob from A on B: {outcome}; expected {names[wanted]}")
        return [("host A's blob on host B", outcome)]

    def reprovision() -> list[tuple[str, str]]:
        blob = sealing.seal(state.enclave, sealing.KEYPOLICY_MRENCLAVE, secret)
        status, text = sealing.unseal(state.enclave, blob, len(secret))
        check(status == sealing.SUCCESS and text == secret, "the new blob does not unseal")
        return [("secret provisioned again", f"sealed on {DEST_HOST}, unseals there")]

    rows: list[tuple[str, str]] = []
    try:
        for name, work in (
                (f"migration: seal a secret on host {vm.host.name}", seal_on_a),
                (f"migration: migrate the running VM to host {DEST_HOST} (QMP)", migrate),
                ("migration: first ecall on the destination faults (enclave lost)", fault),
                ("migration: recovery (enclave rebuilt, same MRENCLAVE)", recover),
                ("migration: the old sealed blob fails to unseal on the new host", unseal_old),
                ("migration: re-provision the secret (seal again, unseal)", reprovision)):
            result = demo.step(name, work)
            if not demo.steps[-1].ok:
                break
            rows += result
        _samples_table(console, "migration", rows)
    finally:
        if state.enclave is not None:
            try:
                state.enclave.close()
            except Exception:
                pass  # the machine it lives in is being torn down anyway
        if state.dest is not None:
            state.dest.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    from vsgx.crypto import generate_signing_key
    from vsgx.machine import Machine

    console = Console()
    demo = Demo(console, args.verbose)
    console.rule("vsgx demo: a virtual SGX machine, its guest, and real enclaves")
    console.print(f"QEMU options (the seed page's NUMA example):\n  {SEED_NUMA}", markup=False,
                  highlight=False, soft_wrap=True)
    vm = demo.step("boot the NUMA machine (2 nodes, 64 MiB + 28 MiB EPC, prealloc=on)",
                   lambda: _boot(Machine))
    if vm is None:
        return _summary(console, demo)
    try:
        _guest_view(console, vm)
        key = demo.step("generate a throwaway RSA-3072 (e=3) signing key",
                        generate_signing_key)
        if key is None:
            return _summary(console, demo)
        if args.migrate:
            _migration(demo, console, vm, key)
            return _summary(console, demo)
        for name in SAMPLES:
            module = load_sample(name)
            title = (module.__doc__ or name).strip().splitlines()[0]

            def work(module: ModuleType = module) -> list[tuple[str, str]]:
                proc = vm.guest.spawn()
                try:
                    rows: list[tuple[str, str]] = module.run(proc, key)
                    return rows
                finally:
                    proc.exit()

            rows = demo.step(f"{name}: {title}", work)
            if rows:
                _samples_table(console, name, rows)
        demo.step("EPC per NUMA node", lambda: _numa(console, vm, key))
        _migration(demo, console, vm, key)
    finally:
        vm.stop()
    return _summary(console, demo)


def _boot(factory: Any) -> Any:
    vm = factory.from_args(shlex.split(SEED_NUMA))
    vm.start()
    return vm


def _summary(console: Console, demo: Demo) -> int:
    table = Table(title="summary")
    for column in ("step", "checks", "result", "time"):
        table.add_column(column)
    for step in demo.steps:
        result = "[green]passed[/]" if step.ok else f"[red]failed[/]: {step.detail}"
        table.add_row(step.name, str(len(step.rows)) if step.rows else "-", result,
                      f"{step.seconds:.2f} s")
    console.print(table)
    failed = [s for s in demo.steps if not s.ok]
    if failed:
        console.print(f"[red]{len(failed)} step(s) failed[/]")
        return 1
    console.print("[green]every step passed[/]")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="boot the seed page's NUMA machine and run the sample enclaves",
        description="Boot the seed page's NUMA example machine on the default host, show what "
                    "the guest sees of SGX, and build nothing: sign the shipped sample enclaves "
                    "with a throwaway key, run them (ecalls, ocalls, sealing, attestation, "
                    "exceptions, threads, SGX2), show EPC per NUMA node, migrate the running VM "
                    "to another emulated host with an enclave in it, and a summary.")
    demo.add_argument("--migrate", action="store_true",
                      help="only the migration: seal a secret in an enclave on the default "
                           "host, migrate the running VM through QMP to the throwaway host "
                           f"'{DEST_HOST}' (other fused keys) and show the fault, the "
                           "recovery, the failed unseal and the re-provisioning, each timed")
    demo.set_defaults(func=cmd_demo)
