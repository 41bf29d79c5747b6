"""Guest processes across a migration (issue 6): the same pids, address spaces, descriptors and
kernel allocator state on the destination; their enclaves' EPC left behind, so EENTER faults
with PFEC.SGX and evicted pages cannot be loaded back; a damaged ``guest`` section refused
with nothing loaded."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sgx_user import MACHINE, REG_RX, EnclaveBuilder, User, machine, tcs_page

import vsgx
from vsgx.arch import PAGE_SIZE, Pfec, Vector
from vsgx.guest import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    O_RDONLY,
    O_RDWR,
    PROT_READ,
    PROT_WRITE,
    SGX_SECINFO_TCS,
    Process,
)
from vsgx.guest.vdso import RUN_SIZE, GuestFault
from vsgx.platform.host import open_host
from vsgx.platform.machine import MachineError, RunState, VirtualMachine
from vsgx.platform.migration import StreamWriter, read_stream

EENTER = 2
SUM = bytes.fromhex(
    "4889f8"      # mov rax, rdi
    "4801f0"      # add rax, rsi
    "4889c2"      # mov rdx, rax
    "4889cb"      # mov rbx, rcx    ; EEXIT to the instruction after the vDSO's ENCLU
    "b804000000"  # mov eax, 4
    "0f01d7")     # enclu


def pair(machines: list[VirtualMachine]) -> tuple[vsgx.Machine, vsgx.Machine]:
    """A started source on host ``guest-tests`` and a destination waiting on another host."""
    src = machine()
    dst = vsgx.Machine.from_args([*MACHINE, "-incoming", "defer"],
                                 host=open_host("migration-dest", persist=False))
    assert isinstance(dst, vsgx.Machine)
    machines += [src, dst]
    dst.start()
    return src, dst


def describe(proc: Process) -> str:
    """A digest of what must not change: pid, node, mappings (flags, file), descriptors, the
    page table outside enclaves, and every byte of memory outside enclave ranges."""
    digest = hashlib.sha256()
    vmas = proc.mm.vmas()
    enclave_pages = {va for va, _ in proc.mm.ptes().items()
                     if any(v.start <= va < v.end and v.file is not None for v in vmas)}
    fds = [(fd, f.path, f.flags) for fd in range(16) if (f := proc.fget(fd)) is not None]
    layout = [(v.start, v.end, v.flags, None if v.file is None else v.file.path) for v in vmas]
    ptes = sorted((va, pa) for va, pa in proc.mm.ptes().items() if va not in enclave_pages)
    digest.update(json.dumps([proc.pid, proc.node, fds, layout, ptes]).encode())
    for v in vmas:
        if v.file is None:
            digest.update(proc.read_memory(v.start, v.end - v.start))
    return digest.hexdigest()


def sum_enclave(user: User) -> EnclaveBuilder:
    """An initialized DEBUG enclave whose TCS (at its base) enters code returning RDI + RSI in
    RDX, with a RW data page at 0x3000, mapped with each page's protection."""
    b = EnclaveBuilder(user).open().create()
    b.add(0, tcs_page(), SGX_SECINFO_TCS)
    b.add(0x1000)
    b.add(0x2000, SUM + b"\xcc" * (PAGE_SIZE - len(SUM)), REG_RX)
    b.add(0x3000, b"\x5a" * PAGE_SIZE)
    b.add(0x4000, b"\xa5" * PAGE_SIZE)
    b.init()
    b.map_standard()
    return b


def put_run(proc: Process, addr: int, tcs: int, handler: int = 0) -> None:
    proc.write_memory(addr, struct.pack("<QIHHQQQ", tcs, 0, 0, 0, 0, handler, 0)
                      + bytes(RUN_SIZE - 40))


def run_fields(proc: Process, addr: int) -> tuple[int, int, int, int]:
    _, function, vector, error, fault = struct.unpack_from("<QIHHQ", proc.read_memory(addr, 24))
    return function, vector, error, fault


def test_processes_keep_pids_memory_mappings_and_descriptors(
        machines: list[VirtualMachine]) -> None:
    src, dst = pair(machines)
    first = src.guest.spawn()
    first.exit()  # pid 1 is gone, and stays gone
    user = User(src.guest.spawn(node=0))
    proc = user.proc
    proc.write_memory(user.buf + (7 << 20) + 123, b"anonymous memory survives")
    proc.write_memory(user.buf + (5 << 20), bytes(range(256)) * 64)
    proc.mprotect(user.buf + (6 << 20), PAGE_SIZE, 1)  # splits the buffer's VMA
    provision = proc.open("/dev/sgx_provision", O_RDONLY)
    b = sum_enclave(user)
    other = src.guest.spawn()
    other.open("/dev/sgx_enclave", O_RDWR)  # an enclave never created
    before = {p.pid: describe(p) for p in src.guest.processes}
    assert src.guest.epc is not None
    free_ram, free_epc = src.guest.memory.nr_free_pages, src.guest.epc.nr_free_pages

    src.migrate(dst)

    assert src.state is RunState.POSTMIGRATE and dst.state is RunState.RUNNING
    assert [p.pid for p in dst.guest.processes] == [2, 3]
    assert {p.pid: describe(p) for p in dst.guest.processes} == before
    moved = dst.guest.process(proc.pid)
    assert moved.read_memory(user.buf + (7 << 20) + 123, 25) == b"anonymous memory survives"
    assert [(v.start, v.end, v.flags) for v in moved.mm.vmas()] == [
        (v.start, v.end, v.flags) for v in proc.mm.vmas()]
    assert moved.mm.ptes() == proc.mm.ptes()  # enclave PTEs too: same (now stale) EPC pages
    file = moved.fget(provision)
    assert file is not None and file.path == "/dev/sgx_provision"
    # the allocators carry on where the source's stopped: nothing is handed out twice
    assert dst.guest.memory.nr_free_pages == free_ram
    assert dst.guest.epc is not None and dst.guest.epc.nr_free_pages == free_epc
    encl = dst_enclave(moved, b.fd)
    assert encl.initialized and encl.base == b.base and sorted(encl.page_array) == sorted(
        b.enclave.page_array)
    assert dst.guest.spawn().pid == 4
    new_page = dst.guest.memory.alloc_page()
    assert new_page not in set(moved.mm.ptes().values())
    with pytest.raises(ProcessLookupError, match="no process with pid 1 runs"):
        dst.guest.process(1)
    # a fresh enclave on the destination gets EPC the migrated bookkeeping does not name
    fresh = sum_enclave(User(dst.guest.spawn()))
    named = {e.epc_page.pa for e in encl.page_array.values()} | {encl.secs_pa}
    assert not named & {e.epc_page.pa for e in fresh.enclave.page_array.values()}


def dst_enclave(proc: Process, fd: int) -> vsgx.guest.Enclave:
    file = proc.fget(fd)
    assert file is not None and isinstance(file.private_data, vsgx.guest.Enclave)
    return file.private_data


def test_enclaves_fault_with_pfec_sgx_after_migration(machines: list[VirtualMachine]) -> None:
    src, dst = pair(machines)
    user = User(src.guest.spawn())
    b = sum_enclave(user)
    seen: list[int] = []

    def handler(rdi: int, rsi: int, rdx: int, rsp: int, r8: int, r9: int, run: int) -> int:
        seen.append(rdx)
        return 0

    token = user.proc.register_user_handler(handler)
    run = user.buf + (4 << 20)
    put_run(user.proc, run, b.base, token)
    assert user.proc.vdso_sgx_enter_enclave(40, 2, 0, EENTER, 0, 0, run) == 0 and seen == [42]

    src.migrate(dst)

    epc = dst.guest.epc
    assert epc is not None
    proc = dst.guest.process(user.proc.pid)
    layout = proc.mm.vmas()
    put_run(proc, run, b.base)
    assert proc.vdso_sgx_enter_enclave(40, 2, 0, EENTER, 0, 0, run) == 0
    function, vector, error, addr = run_fields(proc, run)
    assert (function, vector, addr) == (EENTER, Vector.PF, b.base)  # EENTER itself faulted
    assert error & Pfec.SGX and error & Pfec.P
    # the migrated thread stack was reused: the address space did not grow
    assert [(v.start, v.end) for v in proc.mm.vmas()] == [(v.start, v.end) for v in layout]
    # the handler did not migrate: its token is dead, and says why
    put_run(proc, run, b.base, token)
    with pytest.raises(GuestFault, match="registered before a migration"):
        proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run)
    again = proc.register_user_handler(lambda *args: 0)
    assert again != token
    put_run(proc, run, b.base, again)
    assert proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, run) == 0
    # the source still runs its enclave (its EPC stayed where it was)
    src.cont()
    put_run(user.proc, run, b.base, token)
    assert user.proc.vdso_sgx_enter_enclave(1, 2, 0, EENTER, 0, 0, run) == 0 and seen == [42, 3]
    # tearing the dead enclave down gives its EPC pages back to the destination's kernel
    used = epc.total_pages - epc.nr_free_pages
    assert used == len(b.enclave.page_array) + 2  # the pages, the SECS, one VA page
    proc.close(b.fd)
    proc.exit()
    assert epc.nr_free_pages == epc.total_pages and not dst.guest.processes


def test_evicted_pages_cannot_be_loaded_back(machines: list[VirtualMachine]) -> None:
    src, dst = pair(machines)
    user = User(src.guest.spawn())
    b = sum_enclave(user)
    assert user.proc.read_memory(b.base + 0x3000, 4) == b"\x5a" * 4  # EDBGRD: DEBUG enclave
    assert src.guest.epc is not None
    assert src.guest.epc.reclaimer.reclaim_pages() == len(b.enclave.page_array) + 1  # and the SECS
    assert b.enclave.secs is None and b.enclave.backing.nr_pages

    src.migrate(dst)

    proc = dst.guest.process(user.proc.pid)
    encl = dst_enclave(proc, b.fd)
    assert encl.secs is None and encl.secs_va_slot is not None
    assert all(e.resident is None and e.va_slot is not None for e in encl.page_array.values())
    assert encl.backing.file_pages() == b.enclave.backing.file_pages()
    epc = dst.guest.epc
    assert epc is not None
    free = epc.nr_free_pages
    with pytest.raises(OSError) as info:  # ELDU fails: the VA page is not valid EPC here
        proc.read_memory(b.base + 0x3000, 4)
    assert info.value.errno == errno.EIO
    assert encl.secs is None and epc.nr_free_pages == free  # nothing was accepted
    put_run(proc, user.buf, b.base)  # EENTER: the TCS cannot be faulted in (SIGBUS)
    assert proc.vdso_sgx_enter_enclave(0, 0, 0, EENTER, 0, 0, user.buf) == 0
    assert run_fields(proc, user.buf)[:2] == (EENTER, Vector.PF)
    proc.exit()
    assert epc.nr_free_pages == epc.total_pages
    # the source loads its pages back as before
    assert user.proc.read_memory(b.base + 0x3000, 4) == b"\x5a" * 4


def _edit(name: str) -> Callable[[dict[str, Any]], None]:
    def first_process(state: dict[str, Any]) -> dict[str, Any]:
        process: dict[str, Any] = state["processes"][0]
        return process

    edits: dict[str, Callable[[dict[str, Any]], None]] = {
        "unknown file": lambda s: first_process(s)["fds"].append([9, 99]),
        "RAM page mapped twice": lambda s: first_process(s)["ptes"].append(
            [0x1000_0000, first_process(s)["ptes"][0][1]]),
        "free RAM page mapped": lambda s: s["memory"]["recycled"].append(
            first_process(s)["ptes"][0][1]),
        "EPC page free and used": lambda s: s["epc"]["free"][0][1].append(
            next(f["enclave"]["secs"] for f in s["files"] if f["enclave"])),
        "PTE outside the VMAs": lambda s: first_process(s)["ptes"].append([0x2000_0000,
                                                                           0x200_0000]),
        "pid repeated": lambda s: s["processes"].append(first_process(s)),
        "wrong type": lambda s: s.update({"next-pid": "3"}),
    }
    return edits[name]


@pytest.mark.parametrize("damage", ["unknown file", "RAM page mapped twice",
                                    "free RAM page mapped", "EPC page free and used",
                                    "PTE outside the VMAs", "pid repeated", "wrong type",
                                    "not JSON"])
def test_a_bad_guest_section_loads_nothing(machines: list[VirtualMachine], tmp_path: Path,
                                           damage: str) -> None:
    src, dst = pair(machines)
    user = User(src.guest.spawn())
    user.proc.write_memory(user.buf + (7 << 20), b"x")
    user.proc.open("/dev/sgx_enclave", O_RDWR)
    EnclaveBuilder(user).open().create()
    good = tmp_path / "good.mig"
    src.migrate_to_file(good)
    sections = {name: bytes(view) for name, view in read_stream(good.read_bytes()).items()}
    if damage == "not JSON":
        sections["guest"] = sections["guest"][:-1]
    else:
        state = json.loads(sections["guest"])
        _edit(damage)(state)
        sections["guest"] = json.dumps(state).encode()
    out = io.BytesIO()
    writer = StreamWriter(out)
    for name, payload in sections.items():
        writer.section(name, payload)
    writer.finish()
    bad = tmp_path / "bad.mig"
    bad.write_bytes(out.getvalue())
    with pytest.raises(MachineError, match=r"load of migration failed: Invalid argument \(the "
                                           r"guest section (is inconsistent|is not valid JSON)"):
        dst.migrate_incoming(f"file:{bad}")
    assert dst.state is RunState.INMIGRATE and dst._guest is None  # not even booted
    assert dst.query_migrate()["status"] == "failed"
    dst.migrate_incoming(f"file:{good}")  # the good stream still loads afterwards
    assert dst.guest.process(user.proc.pid).read_memory(user.buf + (7 << 20), 1) == b"x"


def test_a_bare_platform_refuses_a_guest_section(machines: list[VirtualMachine],
                                                 tmp_path: Path) -> None:
    src = machine()
    dst = VirtualMachine.from_args([*MACHINE, "-incoming", "defer"],
                                   host=open_host("migration-dest", persist=False))
    machines += [src, dst]
    dst.start()
    src.migrate_to_file(tmp_path / "vm.mig")
    with pytest.raises(MachineError, match="Unknown savevm section or instance 'guest'"):
        dst.migrate_incoming(f"file:{tmp_path / 'vm.mig'}")


def test_no_migration_while_a_thread_is_in_the_vdso(machines: list[VirtualMachine],
                                                    tmp_path: Path) -> None:
    src, _ = pair(machines)
    assert src.guest.cpus is not None
    with src.guest.cpus.acquire(), pytest.raises(
            MachineError, match=r"while 1 guest thread runs on a vCPU \(inside "
                                r"__vdso_sgx_enter_enclave\)"):
        src.migrate_to_file(tmp_path / "vm.mig")
    assert src.state is RunState.RUNNING and not (tmp_path / "vm.mig").exists()


def test_a_snapshot_restores_the_state_outside_the_epc_exactly(machines: list[VirtualMachine],
                                                               tmp_path: Path) -> None:
    """``-incoming file:`` restores a saved machine: saving the restored machine again gives
    the same bytes for everything but the EPC — configuration, vCPUs, guest kernel and
    processes, RAM — compared by SHA-256, section by section."""
    src = machine()
    machines.append(src)
    user = User(src.guest.spawn())
    user.put(b"kept across the snapshot" * 100)
    EnclaveBuilder(user).build()  # an enclave: its bookkeeping goes along, its EPC does not
    src.guest.spawn().mmap(0, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    first = tmp_path / "first.mig"
    src.migrate_to_file(first)
    restored = vsgx.Machine.from_args([*MACHINE, "-incoming", f"file:{first}"],
                                      host=open_host("snapshot-restore", persist=False))
    machines.append(restored)
    restored.start()
    second = tmp_path / "second.mig"
    restored.migrate_to_file(second)
    before, after = read_stream(first.read_bytes()), read_stream(second.read_bytes())
    assert sorted(before) == sorted(after) == ["config", "cpu", "guest", "ram"]
    for name in before:
        assert (hashlib.sha256(before[name]).hexdigest()
                == hashlib.sha256(after[name]).hexdigest()), name
