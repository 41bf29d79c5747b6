"""``vsgx.Machine.guest``: the running guest OS, which keeps the boot facts and starts
processes."""

from __future__ import annotations

import pytest
from sgx_user import MACHINE, machine

import vsgx
from vsgx.guest import GuestOS, Process, boot
from vsgx.platform.host import open_host
from vsgx.platform.machine import MachineError, RunState


def test_guest_os_keeps_the_boot_facts(vm: vsgx.Machine) -> None:
    guest = vm.guest
    assert isinstance(guest, GuestOS)
    kernel = guest.kernel
    assert kernel == boot(vm)  # booting the same machine again finds the same
    assert (guest.dmesg, guest.cpuinfo_flags, guest.sgx, guest.sgx_lc, guest.devices,
            guest.epc_sections, guest.numa_memory) == (
        kernel.dmesg, kernel.cpuinfo_flags, kernel.sgx, kernel.sgx_lc, kernel.devices,
        kernel.epc_sections, kernel.numa_memory)
    assert guest.devices == ("/dev/sgx_provision", "/dev/sgx_enclave")
    assert guest.epc is not None and guest.epc.nr_free_pages == guest.epc.total_pages == 2048


def test_spawn(vm: vsgx.Machine) -> None:
    first, second = vm.guest.spawn(), vm.guest.spawn(node=0)
    assert isinstance(first, Process) and first.pid != second.pid
    assert first.mm is not second.mm and first.mm.vmas() == []
    with pytest.raises(ValueError, match="node -1"):
        vm.guest.spawn(node=-1)


def test_guest_exists_once_started_and_is_rebooted_by_a_reset() -> None:
    host = open_host("guest-tests", persist=False)
    with vsgx.Machine.from_args(MACHINE, host=host) as vm:
        with pytest.raises(MachineError, match="start the machine first"):
            _ = vm.guest
        vm.start()
        before = vm.guest
        vm.pause()  # QMP stop: paused, the guest is still there
        assert vm.state is RunState.PAUSED and vm.guest is before
        vm.cont()
        vm.system_reset()
        assert vm.guest is not before and vm.guest.dmesg == before.dmesg
    assert vm.state is RunState.SHUTDOWN


def test_a_machine_without_sgx_runs_processes() -> None:
    with machine(["-machine", "q35", "-m", "128M", "-cpu", "host"]) as vm:
        assert vm.guest.devices == () and vm.guest.epc is None
        proc = vm.guest.spawn()
        addr = proc.mmap(0, 4096, 3, 0x22)
        assert proc.write_memory(addr, b"hi") == 2 and proc.read_memory(addr, 2) == b"hi"
