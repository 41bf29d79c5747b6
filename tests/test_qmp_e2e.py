"""A real vsgx machine behind its QMP monitor, driven by QEMU's own client (``qemu.qmp``):
in-process, and ``vsgx run`` as a separate process the way an operator starts it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from qemu.qmp import ExecuteError, QMPClient
from seeds import SEED_NUMA
from vmhelpers import ecreate

from vsgx.machine import Machine
from vsgx.monitor import QmpServer

T = TypeVar("T")
TIMEOUT = 20.0
SECTIONS = [{"node": 0, "size": 67108864}, {"node": 1, "size": 29360128}]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


@pytest.fixture
def sock() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="vsgx-e2e-"))
    yield directory / "qmp.sock"
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()


def test_qemu_client_drives_a_real_machine(sock: Path) -> None:
    args = [*shlex.split(SEED_NUMA), "-qmp", f"unix:{sock},server=on,wait=off", "-name", "g1"]
    vm = Machine.from_args(args)
    with vm, QmpServer(vm, vm.config.qmp[0]):
        vm.start()
        ecreate(vm, vm.layout.epc_base)
        assert vm.processor is not None and vm.processor.epcm.valid(0)

        async def session() -> None:
            client = QMPClient("e2e")
            await client.connect(str(sock))
            assert await client.execute("query-sgx") == {
                "sgx": True, "sgx1": True, "sgx2": True, "flc": True,
                "section-size": 96468992, "sections": SECTIONS}
            assert await client.execute("query-name") == {"name": "g1"}
            text = await client.execute("human-monitor-command",
                                        {"command-line": "info sgx"})
            assert text.endswith("NUMA node #0: size=67108864\r\n"
                                 "NUMA node #1: size=29360128\r\n")
            devices = await client.execute("query-memory-devices")
            assert [d["data"]["memaddr"] for d in devices] == [0x180000000, 0x184000000]
            cpus = await client.execute("query-cpus-fast")
            assert [c["props"]["node-id"] for c in cpus] == [0, 0, 1, 1]
            with client.listener() as listener:
                await client.execute("system_reset")
                event = await asyncio.wait_for(listener.get(), TIMEOUT)
            assert event["event"] == "RESET"
            assert event["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
            await client.execute("stop")
            assert (await client.execute("query-status"))["status"] == "paused"
            await client.execute("cont")
            await client.disconnect()

        run(session())
        assert not vm.processor.epcm.valid(0)  # system_reset emptied the EPC
        assert vm.guest.dmesg  # and the guest booted again


def test_vsgx_run_serves_qmp_until_quit(sock: Path) -> None:
    exe = Path(sys.executable).with_name("vsgx")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vsgx.cli"]
    proc = subprocess.Popen([*cmd, "run", *shlex.split(SEED_NUMA),
                             "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the monitor listens
        assert "machine running" in banner, banner + proc.stderr.read()
        assert oct(sock.stat().st_mode & 0o777) == "0o600"

        async def session() -> None:
            client = QMPClient("e2e")
            await client.connect(str(sock))
            assert (await client.execute("query-sgx"))["sections"] == SECTIONS
            assert (await client.execute("query-status"))["running"] is True
            assert await client.execute("quit") == {}
            # The server hangs up after quit, as QEMU exits; qemu.qmp reports EOFError then.
            with contextlib.suppress(EOFError):
                await client.disconnect()

        run(session())
        assert proc.wait(timeout=TIMEOUT) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=TIMEOUT)


def test_vsgx_run_stops_on_sigterm(sock: Path) -> None:
    exe = Path(sys.executable).with_name("vsgx")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vsgx.cli"]
    proc = subprocess.Popen([*cmd, "run", "-cpu", "host",
                             "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and "machine running" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 0


def test_vsgx_run_with_wait_on_blocks_until_a_client_connects(sock: Path) -> None:
    exe = Path(sys.executable).with_name("vsgx")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vsgx.cli"]
    proc = subprocess.Popen([*cmd, "run", "-cpu", "host",
                             "-qmp", f"unix:{sock},server=on,wait=on"],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "waiting for a QMP client on unix:" in proc.stderr.readline()

        async def session() -> None:
            client = QMPClient("e2e")
            await client.connect(str(sock))
            assert (await client.execute("query-status"))["status"] == "running"
            await client.execute("quit")
            with contextlib.suppress(EOFError):
                await client.disconnect()

        run(session())
        assert "machine running" in proc.stderr.readline()
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)


MIGRATING = ("-machine q35 -m 256M -smp 2 -cpu host,+sgxlc "
             "-object memory-backend-epc,id=mem1,size=8M "
             "-M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0")


def test_qemu_client_migrates_a_machine_to_another_host(sock: Path) -> None:
    from vsgx.platform.host import open_host

    stream = sock.with_name("vm.mig")
    src_sock, dst_sock = sock.with_name("src.sock"), sock.with_name("dst.sock")
    src = Machine.from_args([*MIGRATING.split(), "-qmp", f"unix:{src_sock},server=on,wait=off"],
                            host=open_host("a", persist=False))
    dst = Machine.from_args([*MIGRATING.split(), "-qmp", f"unix:{dst_sock},server=on,wait=off",
                             "-incoming", "defer"], host=open_host("b", persist=False))
    with src, dst, QmpServer(src, src.config.qmp[0]), QmpServer(dst, dst.config.qmp[0]):
        src.start()
        dst.start()
        src.ram.write(0x10000, b"carried over")
        ecreate(src, src.layout.epc_base)

        async def session() -> None:
            source, target = QMPClient("src"), QMPClient("dst")
            await source.connect(str(src_sock))
            await target.connect(str(dst_sock))
            assert await source.execute("query-migrate") == {}
            assert (await target.execute("query-status"))["status"] == "inmigrate"
            for client in (source, target):
                await client.execute("migrate-set-capabilities", {"capabilities": [
                    {"capability": "events", "state": True}]})
            with source.listener() as listener:
                assert await source.execute("migrate", {"uri": f"file:{stream}"}) == {}
                seen = [await asyncio.wait_for(listener.get(), TIMEOUT) for _ in range(4)]
            assert [(e["event"], e.get("data")) for e in seen] == [
                ("MIGRATION", {"status": "setup"}), ("MIGRATION", {"status": "active"}),
                ("STOP", None), ("MIGRATION", {"status": "completed"})]
            info = await source.execute("query-migrate")
            assert info["status"] == "completed" and info["ram"]["normal"] == 3
            assert (await source.execute("query-status"))["status"] == "postmigrate"
            with target.listener() as listener:
                await target.execute("migrate-incoming", {"uri": f"file:{stream}"})
                seen = [await asyncio.wait_for(listener.get(), TIMEOUT) for _ in range(4)]
            assert [e["event"] for e in seen] == ["MIGRATION", "MIGRATION", "RESUME",
                                                  "MIGRATION"]
            assert await target.execute("query-migrate") == {"status": "completed"}
            assert (await target.execute("query-status"))["running"] is True
            with pytest.raises(ExecuteError, match="vsgx migrates only to and from"):
                await source.execute("migrate", {"uri": "tcp:localhost:4444"})
            await source.disconnect()
            await target.disconnect()

        run(session())
        assert dst.ram.read(0x10000, 12) == b"carried over"
        assert dst.processor is not None and not dst.processor.epcm.valid(0)
        assert src.vcpu_msrs[0].lepubkeyhash == dst.vcpu_msrs[0].lepubkeyhash


def test_vsgx_run_restores_a_snapshot_on_another_host(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("vsgx")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vsgx.cli"]
    stream = tmp_path / "vm.mig"
    save = tmp_path / "save.py"
    save.write_text(f"vm.ram.write(0x4000, b'from host a')\nvm.migrate_to_file({str(stream)!r})\n"
                    "print(vm.query_status()['status'])\n")
    check = tmp_path / "check.py"
    check.write_text("print(vm.ram.read(0x4000, 11).decode(), vm.query_status()['status'])\n")
    saved = subprocess.run([*cmd, "run", "--host", "mig-a", *MIGRATING.split(), "--",
                            str(save)], capture_output=True, text=True, timeout=TIMEOUT,
                           check=False)
    assert saved.returncode == 0 and saved.stdout == "postmigrate\n", saved.stderr
    loaded = subprocess.run([*cmd, "run", "--host", "mig-b", *MIGRATING.split(), "-incoming",
                             f"file:{stream}", "--", str(check)], capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert loaded.returncode == 0 and loaded.stdout == "from host a running\n", loaded.stderr
    stream.write_bytes(stream.read_bytes()[:-1])
    refused = subprocess.run([*cmd, "run", *MIGRATING.split(), "-incoming", f"file:{stream}"],
                             capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("vsgx: load of migration failed: Input/output error")
    assert "Traceback" not in refused.stderr
