"""``vsgx demo``: the whole system at work, in one command.

It boots the seed page's NUMA example machine (two nodes, 64 MiB + 28 MiB of virtual EPC,
``-cpu host,+sgx-provisionkey``) on the default emulated host, shows what the guest sees of
SGX (CPUID, the kernel's EPC and SRAT lines), signs the shipped sample enclaves with a
throwaway key, runs every sample (ecalls and ocalls, sealing, local attestation, in-enclave
exceptions, threads, SGX2), shows the EPC each NUMA node lends to enclaves loaded on it, and
ends with a summary table. Nothing is compiled: the samples ship prebuilt. Exit status 0
when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shlex
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
                    "exceptions, threads, SGX2), show EPC per NUMA node and a summary.")
    demo.set_defaults(func=cmd_demo)
