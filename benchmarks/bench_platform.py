"""Virtual machine start-up cost with a large lazy EPC, what prealloc really commits, and QMP
round trips.

1. **Lazy EPC**: build and start (firmware + guest boot) a q35 VM with 64 GiB of virtual EPC,
   ``prealloc=off``, on the default Ice Lake-SP host profile (128 GiB of host EPC), against the
   same VM with a 4 MiB EPC. Reported: start time of each, the ratio small / large (target:
   about 1, the large EPC costs nothing until touched), the large VM's absolute start time
   (target < 1 s) and the RSS it adds (target < 100 MiB).
2. **prealloc=on**: the RSS a VM with a 256 MiB ``prealloc=on`` EPC adds (target >= 256 MiB:
   the pages are really committed), and its start time against touching 256 MiB of a fresh
   anonymous mapping with numpy (the irreducible part), as a ratio.
3. **QMP**: ``query-sgx`` round trips per second over the unix socket of ``-qmp
   unix:PATH,server=on,wait=off`` (a raw-socket client sending one command and reading one
   reply at a time), against a trivial unix-socket echo server in the same process answering
   the same bytes with the same framing. The ratio echo / QMP says what the monitor adds.

Each case runs in a fresh Python process (RSS deltas are otherwise polluted by what earlier
cases left in the allocator); best of 3 for timings.

Run: ``python benchmarks/bench_platform.py``
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

MIB = 1 << 20
REPEATS = 3
ROUND_TRIPS = 2000


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _epc_args(size: str, prealloc: bool) -> list[str]:
    p = ",prealloc=on" if prealloc else ""
    return ["-machine", "q35", "-m", "2G", "-cpu", "host",
            "-object", f"memory-backend-epc,id=e0,size={size}{p}",
            "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]


def case_start(size: str, prealloc: bool) -> dict[str, float]:
    """Build + start one VM in this (fresh) process: seconds and RSS added."""
    from vsgx.machine import Machine
    from vsgx.platform.host import open_host

    host = open_host("bench", persist=False)
    args = _epc_args(size, prealloc)
    with Machine.from_args(args, host=host):  # warm the imports and caches
        pass
    before = _rss()
    t0 = time.perf_counter()
    vm = Machine.from_args(args, host=host)
    vm.start()
    seconds = time.perf_counter() - t0
    added = _rss() - before
    vm.close()
    return {"seconds": seconds, "rss": added}


def case_touch(size_mib: int) -> dict[str, float]:
    """Baseline for prealloc: touch every page of a fresh anonymous mapping."""
    import numpy as np

    before = _rss()
    t0 = time.perf_counter()
    m = mmap.mmap(-1, size_mib * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    np.frombuffer(m, dtype=np.uint8)[::4096] = 0
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rss": _rss() - before}


def _round_trips(path: str, request: bytes) -> float:
    """Send ``request`` and read one newline-terminated reply, ROUND_TRIPS times: per second."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        reader = s.makefile("rb")
        reader.readline()  # greeting (QMP) or nothing-to-skip marker (echo)
        s.sendall(b'{"execute": "qmp_capabilities"}\n')
        reader.readline()
        t0 = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            s.sendall(request)
            reader.readline()
        return ROUND_TRIPS / (time.perf_counter() - t0)


def case_qmp() -> dict[str, float]:
    from vsgx.machine import Machine
    from vsgx.platform.host import open_host

    request = b'{"execute": "query-sgx"}\n'
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "qmp.sock")
        args = [*_epc_args("64M", False), "-qmp", f"unix:{path},server=on,wait=off"]
        from vsgx.monitor.server import QmpServer

        with Machine.from_args(args, host=open_host("bench", persist=False)) as vm:
            vm.start()
            server = QmpServer(vm, vm.config.qmp[0])
            server.start()
            try:
                reply = json.dumps({"return": vm.query_sgx()}).encode() + b"\r\n"
                qmp = max(_round_trips(path, request) for _ in range(REPEATS))
            finally:
                server.close()
        echo_path = os.path.join(tmp, "echo.sock")
        echo = max(_echo_round_trips(echo_path, request, reply) for _ in range(REPEATS))
    return {"qmp": qmp, "echo": echo}


def _echo_round_trips(path: str, request: bytes, reply: bytes) -> float:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            f = conn.makefile("rb")
            conn.sendall(b"{}\r\n")
            while f.readline():
                conn.sendall(reply if b"query-sgx" in request else b"{}\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        return _round_trips(path, request)
    finally:
        listener.close()
        os.unlink(path)
        thread.join(timeout=5)


CASES: dict[str, Callable[..., dict[str, float]]] = {
    "start": case_start, "touch": case_touch, "qmp": case_qmp}


def _run(name: str, *args: Any) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--case", name, json.dumps(args)],
                         capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _best(name: str, *args: Any) -> dict[str, float]:
    runs = [_run(name, *args) for _ in range(REPEATS)]
    return min(runs, key=lambda r: r.get("seconds", 0.0))


def main() -> None:
    large = _best("start", "64G", False)
    small = _best("start", "4M", False)
    pre = _best("start", "256M", True)
    touch = _best("touch", 256)
    qmp = _run("qmp")
    rows = [
        ("start, 64 GiB EPC prealloc=off", f"{large['seconds'] * 1e3:.1f} ms",
         f"RSS +{large['rss'] / MIB:.1f} MiB", "target < 1 s, < 100 MiB"),
        ("start, 4 MiB EPC prealloc=off", f"{small['seconds'] * 1e3:.1f} ms",
         f"RSS +{small['rss'] / MIB:.1f} MiB", ""),
        ("  ratio 4 MiB / 64 GiB start time", f"{small['seconds'] / large['seconds']:.2f}", "",
         "target ~1"),
        ("start, 256 MiB EPC prealloc=on", f"{pre['seconds'] * 1e3:.1f} ms",
         f"RSS +{pre['rss'] / MIB:.1f} MiB", "target RSS >= 256 MiB"),
        ("touch 256 MiB anonymous memory", f"{touch['seconds'] * 1e3:.1f} ms",
         f"RSS +{touch['rss'] / MIB:.1f} MiB", ""),
        ("  ratio touch / prealloc start", f"{touch['seconds'] / pre['seconds']:.2f}", "", ""),
        ("query-sgx over QMP unix socket", f"{qmp['qmp']:.0f} /s", "", ""),
        ("same bytes, echo server", f"{qmp['echo']:.0f} /s", "", ""),
        ("  ratio QMP / echo", f"{qmp['qmp'] / qmp['echo']:.2f}", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, extra, target in rows:
        print(f"{label:<{width}}  {value:>12}  {extra:<18} {target}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(CASES[sys.argv[2]](*json.loads(sys.argv[3]))))
    else:
        main()
