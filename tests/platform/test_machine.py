"""The virtual machine: building it on a host, its EPC pool use, life cycle, QMP answers."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from seeds import SEED_NUMA
from vmhelpers import ecreate

from vsgx.arch import (
    FeatureControl,
)
from vsgx.platform import QemuOptionError
from vsgx.platform.host import open_host
from vsgx.platform.machine import MachineError, RunState, VirtualMachine, host_sgx_capabilities

MiB = 1 << 20
GiB = 1 << 30

NUMA_EXAMPLE = SEED_NUMA


def _vm(args: str, host: str = "default", profile: str | None = None) -> VirtualMachine:
    return VirtualMachine.from_args(shlex.split(args), host=host, host_profile=profile)


def _epc(size: str, *, prealloc: bool = False, extra: str = "") -> str:
    p = ",prealloc=on" if prealloc else ""
    return (f"-object memory-backend-epc,id=e0,size={size}{p}{extra} "
            "-M sgx-epc.0.memdev=e0,sgx-epc.0.node=0")


def test_the_seed_numa_example_builds_and_reports_as_qemu() -> None:
    with _vm(NUMA_EXAMPLE) as vm:
        assert vm.query_sgx() == {
            "sgx": True, "sgx1": True, "sgx2": True, "flc": True, "section-size": 96468992,
            "sections": [{"node": 0, "size": 67108864}, {"node": 1, "size": 29360128}]}
        assert vm.query_memory_devices() == [
            {"type": "sgx-epc", "data": {"memaddr": 0x1_8000_0000, "size": 64 * MiB, "node": 0,
                                         "memdev": "/objects/mem0"}},
            {"type": "sgx-epc", "data": {"memaddr": 0x1_8400_0000, "size": 28 * MiB, "node": 1,
                                         "memdev": "/objects/mem1"}}]
        # prealloc=on drew every page from the host node each backend is bound to
        pool = vm.host.pool
        assert pool.used == {0: 64 * MiB // 4096, 1: 28 * MiB // 4096}
        assert [u["committed"] for u in vm.epc_usage()] == [64 * MiB, 28 * MiB]
        assert [c["props"].get("node-id") for c in vm.query_cpus_fast()] == [0, 0, 1, 1]
        assert "SRAT" in vm.acpi_tables
    assert pool.used == {0: 0, 1: 0}  # closing the VM gave them back


def test_lazy_epc_commits_on_first_touch_only() -> None:
    with _vm(f"-machine q35 -m 4G -cpu host {_epc('64G')}") as vm:
        assert vm.host.pool.used == {0: 0, 1: 0}
        vm.start()
        ecreate(vm, vm.layout.epc_base)
        assert sum(vm.host.pool.used.values()) == 1
        assert vm.epc_usage()[0]["committed"] == 4096


def test_prealloc_beyond_the_host_pool_fails_cleanly() -> None:
    with pytest.raises(QemuOptionError) as err:
        _vm(f"-machine q35 -cpu host {_epc('94M', prealloc=True)}", "client", "coffeelake")
    assert err.value.message == "qemu_prealloc_mem: preallocating memory failed: Bad address"
    assert "host EPC exhausted" in err.value.hint
    assert open_host("client").pool.used == {0: 0}


def test_vms_on_one_host_share_its_pool_and_not_their_pages() -> None:
    args = f"-machine q35 -cpu host {_epc('64M', prealloc=True)}"
    a = _vm(args, "client", "coffeelake")
    with pytest.raises(QemuOptionError, match="preallocating memory failed"):
        _vm(args, "client")  # 64 + 64 MiB > 93.5 MiB
    a.start()
    ecreate(a, a.layout.epc_base)
    a.close()
    with _vm(args, "client") as b:  # a's pages are back in the pool
        b.start()
        assert b.processor is not None
        assert not b.processor.epcm.valid(0)
        assert bytes(b.processor.epc.page(0)) == bytes(4096)
    other = _vm(f"-machine q35 -cpu host {_epc('64M', prealloc=True)}", "other", "coffeelake")
    other.close()  # another host has its own pool


def test_one_vms_enclave_is_invisible_to_another_on_the_same_host() -> None:
    args = f"-machine q35 -cpu host {_epc('4M')}"
    with _vm(args) as a, _vm(args) as b:
        a.start()
        b.start()
        ecreate(a, a.layout.epc_base)
        assert a.processor is not None and b.processor is not None
        assert a.processor.epcm.valid(0) and not b.processor.epcm.valid(0)
        assert any(bytes(a.processor.epc.page(0))) and not any(bytes(b.processor.epc.page(0)))


def test_a_host_without_sgx_has_no_epc_backend_type() -> None:
    with pytest.raises(QemuOptionError) as err:
        _vm(f"-cpu host {_epc('4M')}", "plain", "no-sgx")
    assert err.value.message == "invalid object type: memory-backend-epc"


@pytest.mark.parametrize("obj", [
    "-object memory-backend-ram,id=r,size=1M,host-nodes=2,policy=bind",
    "-object memory-backend-epc,id=r,size=1M,host-nodes=0-2,policy=preferred",
])
def test_host_nodes_the_host_lacks_are_refused_like_mbind(obj: str) -> None:
    with pytest.raises(QemuOptionError) as err:
        _vm(obj)
    assert err.value.message == "cannot bind memory to host NUMA nodes: Invalid argument"


def test_the_firmware_locks_feature_control_at_start() -> None:
    with _vm(f"-cpu host -smp 2 {_epc('4M')}") as vm:
        assert all(m.feature_control == 0 for m in vm.vcpu_msrs)
        vm.start()
        on = int(FeatureControl.LOCKED | FeatureControl.SGX | FeatureControl.SGX_LC)
        assert [m.feature_control for m in vm.vcpu_msrs] == [on, on]


def test_life_cycle_states_and_events() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    vm = _vm(f"-cpu host {_epc('4M')}")
    vm.subscribe(lambda e, d: events.append((e, d)))
    assert vm.query_status() == {"status": "prelaunch", "singlestep": False, "running": False}
    vm.start()
    with pytest.raises(MachineError, match="already been started"):
        vm.start()
    vm.pause()
    vm.pause()
    assert vm.query_status()["status"] == "paused"
    vm.cont()
    vm.cont()
    assert vm.state is RunState.RUNNING
    vm.quit()
    assert [e for e, _ in events] == ["STOP", "RESUME", "SHUTDOWN"]
    assert events[-1][1] == {"guest": False, "reason": "host-qmp-quit"}
    with pytest.raises(MachineError, match="shut down"):
        vm.pause()


def test_system_reset_wipes_every_enclave_and_relocks_feature_control() -> None:
    events: list[str] = []
    with _vm(f"-cpu host {_epc('4M', prealloc=True)}") as vm:
        vm.subscribe(lambda e, _d: events.append(e))
        vm.start()
        ecreate(vm, vm.layout.epc_base)
        assert vm.processor is not None and vm.processor.epcm.valid(0)
        used = dict(vm.host.pool.used)
        vm.system_reset()
        assert not vm.processor.epcm.valid(0) and not vm.processor.enclaves
        assert not any(bytes(vm.processor.epc.page(0)))
        assert vm.vcpu_msrs[0].feature_control & FeatureControl.LOCKED
        assert vm.host.pool.used == used  # a preallocated vEPC stays allocated
        assert events == ["RESET"]
        ecreate(vm, vm.layout.epc_base)  # the guest can build enclaves again


def test_vcpu_sgx_msrs_save_and_restore() -> None:
    with _vm(f"-cpu host -smp 2 {_epc('4M')}") as a, _vm(f"-cpu host -smp 2 {_epc('4M')}") as b:
        a.start()
        a.vcpu_msrs[1].wrmsr(0x8C, 0x1234)
        state = a.save_vcpu_state()
        assert state[1]["cpu/intel_sgx"][0] == 0x1234
        b.load_vcpu_state(state)
        assert b.vcpu_msrs[1].rdmsr(0x8C) == 0x1234 and b.save_vcpu_state() == state
        with _vm(f"-cpu host,-sgxlc -smp 2 {_epc('4M')}") as no_lc:
            with pytest.raises(MachineError, match="cpu/intel_sgx is present"):
                no_lc.load_vcpu_state(state)
            assert "cpu/intel_sgx" not in no_lc.save_vcpu_state()[0]
        with pytest.raises(MachineError, match="vCPU 0: malformed SGX MSR state"):
            b.load_vcpu_state([{**state[0], "cpu/msr_ia32_feature_control": -1}, state[1]])
        with pytest.raises(MachineError, match="for 1 vCPUs"):
            b.load_vcpu_state(state[:1])


def test_query_sgx_without_epc_uses_qemus_error() -> None:
    with _vm("-cpu host") as vm, pytest.raises(MachineError,
                                                match=r"^No EPC regions defined, SGX not "
                                                      r"available$"):
        vm.query_sgx()


def test_sgx_capabilities_per_profile() -> None:
    assert host_sgx_capabilities(open_host("s", "icelake-sp")) == {
        "sgx": True, "sgx1": True, "sgx2": True, "flc": True, "section-size": 128 * GiB,
        "sections": [{"node": 0, "size": 64 * GiB}, {"node": 1, "size": 64 * GiB}]}
    caps = host_sgx_capabilities(open_host("c", "coffeelake"))
    assert (caps["sgx2"], caps["flc"], caps["sections"]) == (
        False, True, [{"node": 0, "size": 0x5D8_0000}])
    with pytest.raises(MachineError, match=r"^SGX is not enabled in KVM$"):
        host_sgx_capabilities(open_host("n", "no-sgx"))


def test_stop_shuts_the_machine_down_and_pause_is_qmp_stop() -> None:
    vm = _vm(f"-cpu host {_epc('4M', prealloc=True)}")
    vm.start()
    vm.pause()
    assert vm.state is RunState.PAUSED
    vm.stop()
    assert vm.state is RunState.SHUTDOWN and vm.host.pool.used == {0: 0, 1: 0}
