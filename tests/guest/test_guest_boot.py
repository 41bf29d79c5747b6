"""What the Linux guest prints and creates when it boots on vsgx machines built from real
command lines: the acceptance examples, IA32_FEATURE_CONTROL cases, the 8-section limit."""

from __future__ import annotations

import dataclasses

from guest_cases import (
    FC_LC_ONLY,
    FC_SGX,
    FC_SGX_LC,
    NUMA_EXAMPLE,
    ONE_EPC,
    epc_args,
    platform,
    with_vmx,
)

from vsgx.arch import FeatureControl, Msr
from vsgx.guest import CpuCap, GuestEpcSection, NumaMemblk, boot, identify_cpus

MiB, GiB = 1 << 20, 1 << 30
FW_BUG = ("sgx: [Firmware Bug]: Unable to map EPC section to online node. "
          "Fallback to the NUMA node 0.")
NO_LC = ("sgx: SGX disabled: SGX launch control CPU feature is not available, "
         "/dev/sgx_enclave disabled.")
SGX_DEVICES = ("/dev/sgx_provision", "/dev/sgx_enclave")


def test_single_section_without_numa() -> None:
    kernel = boot(platform(ONE_EPC))
    assert kernel.dmesg == ("sgx: EPC section 0x140000000-0x143ffffff", FW_BUG)
    assert kernel.epc_sections == (GuestEpcSection(0x1_4000_0000, 64 * MiB, 0),)
    assert kernel.cpuinfo_flags == ("sgx", "sgx_lc")
    assert kernel.sgx and kernel.sgx_lc
    assert kernel.devices == SGX_DEVICES
    assert kernel.numa_memory == ()


def test_numa_example() -> None:
    kernel = boot(platform(NUMA_EXAMPLE))
    assert kernel.dmesg == (
        "ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0009ffff]",
        "ACPI: SRAT: Node 0 PXM 0 [mem 0x00100000-0x7fffffff]",
        "ACPI: SRAT: Node 1 PXM 1 [mem 0x100000000-0x17fffffff]",
        "ACPI: SRAT: Node 0 PXM 0 [mem 0x180000000-0x183ffffff]",
        "ACPI: SRAT: Node 1 PXM 1 [mem 0x184000000-0x185bfffff]",
        "sgx: EPC section 0x180000000-0x183ffffff",
        "sgx: EPC section 0x184000000-0x185bfffff",
    )
    assert FW_BUG not in kernel.dmesg
    assert kernel.epc_sections == (GuestEpcSection(0x1_8000_0000, 64 * MiB, 0),
                                   GuestEpcSection(0x1_8400_0000, 28 * MiB, 1))
    assert kernel.numa_memory == (
        NumaMemblk(0, 0xA_0000, 0), NumaMemblk(0x10_0000, 0x8000_0000, 0),
        NumaMemblk(0x1_0000_0000, 0x1_8000_0000, 1), NumaMemblk(0x1_8000_0000, 0x1_8400_0000, 0),
        NumaMemblk(0x1_8400_0000, 0x1_85C0_0000, 1))
    assert kernel.devices == SGX_DEVICES


def test_only_eight_sections() -> None:
    kernel = boot(platform(f"-m 4G -cpu host {epc_args(64)}"))
    sections = [line for line in kernel.dmesg if line.startswith("sgx: EPC section")]
    assert sections == [f"sgx: EPC section {0x1_4000_0000 + i * MiB:#x}-"
                        f"{0x1_4000_0000 + (i + 1) * MiB - 1:#x}" for i in range(8)]
    assert kernel.dmesg.count(FW_BUG) == 8
    assert len(kernel.epc_sections) == 8


def test_launch_control_locked_disables_sgx() -> None:
    kernel = boot(platform(ONE_EPC, FC_SGX))
    assert kernel.dmesg == ("x86/cpu: SGX Launch Control is locked. Disable SGX.",)
    assert not kernel.sgx and not kernel.sgx_lc
    assert kernel.cpuinfo_flags == kernel.devices == () and kernel.epc_sections == ()


def test_sgx_bit_missing_is_blamed_on_the_bios() -> None:
    kernel = boot(platform(ONE_EPC, FC_LC_ONLY))
    assert kernel.dmesg == ("x86/cpu: SGX disabled or unsupported by BIOS.",)
    assert kernel.cpuinfo_flags == kernel.devices == ()


def test_no_launch_control_at_all_leaves_sgx_without_devices() -> None:
    # Without sgx_lc in CPUID neither the driver nor KVM wants SGX, so feat_ctl keeps the bit
    # silently; sgx_init sets up the EPC, sgx_drv_init refuses, there is no VMX for
    # /dev/sgx_vepc, and /dev/sgx_provision is taken down again.
    kernel = boot(platform(ONE_EPC.replace("-cpu host", "-cpu host,-sgxlc"), FC_SGX))
    assert kernel.dmesg == ("sgx: EPC section 0x140000000-0x143ffffff", FW_BUG, NO_LC)
    assert kernel.cpuinfo_flags == ("sgx",) and kernel.sgx and not kernel.sgx_lc
    assert kernel.devices == ()
    assert len(kernel.epc_sections) == 1


def test_lc_locked_host_gives_a_guest_without_launch_control() -> None:
    # The coffeelake profile's BIOS locked launch control, so QEMU offers the guest no sgxlc
    # and fw_cfg sets only SGX; the guest is the same as with -sgxlc.
    kernel = boot(platform(ONE_EPC, FC_SGX, host="coffeelake"))
    assert kernel.dmesg[-1] == NO_LC and kernel.devices == ()


def test_sgx_bit_missing_without_launch_control_is_silent() -> None:
    kernel = boot(platform(ONE_EPC.replace("-cpu host", "-cpu host,-sgxlc"), 0x1))
    assert kernel.dmesg == () and kernel.cpuinfo_flags == ()


def test_unlocked_feature_control_is_locked_by_the_kernel() -> None:
    machine = platform(ONE_EPC, None)
    kernel = boot(machine)
    assert kernel.devices == SGX_DEVICES
    assert [m.rdmsr(Msr.IA32_FEATURE_CONTROL) for m in machine.vcpu_msrs] == [FC_SGX_LC]


def test_without_sgx_the_kernel_locks_feature_control_empty() -> None:
    machine = platform("-m 1G", None)
    kernel = boot(machine)
    assert kernel.dmesg == kernel.cpuinfo_flags == kernel.devices == ()
    assert machine.vcpu_msrs[0].rdmsr(Msr.IA32_FEATURE_CONTROL) == FeatureControl.LOCKED


def test_zero_sections() -> None:
    kernel = boot(platform("-m 1G -cpu host"))
    assert kernel.dmesg == ("sgx: There are zero EPC sections.",)
    assert kernel.sgx and kernel.devices == ()


def test_unknown_section_type() -> None:
    machine = platform(ONE_EPC)
    real = machine.cpuid

    def cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        eax, ebx, ecx, edx = real(leaf, subleaf)
        return ((eax & ~0xF) | 2, ebx, ecx, edx) if (leaf, subleaf) == (0x12, 2) else (
            eax, ebx, ecx, edx)

    kernel = boot(dataclasses.replace(machine, cpuid=cpuid))
    assert kernel.dmesg == ("sgx: Unknown EPC section type: 2", "sgx: There are zero EPC sections.")
    assert kernel.devices == ()


def test_node_without_epc_is_reported() -> None:
    args = NUMA_EXAMPLE.replace("sgx-epc.1.node=1", "sgx-epc.1.node=0")
    kernel = boot(platform(args))
    assert kernel.dmesg[-1] == ("sgx: node1 has both CPUs and memory but doesn't have an EPC "
                                "section")
    assert {section.node for section in kernel.epc_sections} == {0}


def test_epc_on_a_node_that_does_not_exist() -> None:
    # QEMU does not check sgx-epc.N.node; Linux numbers the unknown proximity domain as a new
    # node, which has neither RAM nor CPUs, so the section goes to the nearest online node.
    args = ("-m 2G -cpu host -object memory-backend-ram,id=r,size=2G -numa node,memdev=r "
            f"{epc_args(1, '4M', node=5)}")
    kernel = boot(platform(args))
    assert "ACPI: SRAT: Node 1 PXM 5 [mem 0x100000000-0x1003fffff]" in kernel.dmesg
    assert kernel.epc_sections == (GuestEpcSection(0x1_0000_0000, 4 * MiB, 0),)
    assert FW_BUG not in kernel.dmesg


def test_linux_numbers_nodes_by_first_appearance() -> None:
    # CPU 0 is on QEMU node 1, so PXM 1 becomes Linux node 0.
    args = ("-m 2G -smp 2 -cpu host -object memory-backend-ram,id=a,size=1G "
            "-numa node,nodeid=0,cpus=1,memdev=a -object memory-backend-ram,id=b,size=1G "
            f"-numa node,nodeid=1,cpus=0,memdev=b {epc_args(1, '4M', node=1)}")
    kernel = boot(platform(args))
    assert kernel.dmesg[:2] == ("ACPI: SRAT: Node 1 PXM 0 [mem 0x00000000-0x0009ffff]",
                                "ACPI: SRAT: Node 1 PXM 0 [mem 0x00100000-0x3fffffff]")
    assert "ACPI: SRAT: Node 0 PXM 1 [mem 0x100000000-0x1003fffff]" in kernel.dmesg
    assert kernel.epc_sections[0].node == 0


def test_hotplug_region_line() -> None:
    kernel = boot(platform("-m 1G,slots=2,maxmem=4G -cpu host"))
    assert kernel.dmesg[:3] == ("ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0009ffff]",
                                "ACPI: SRAT: Node 0 PXM 0 [mem 0x00100000-0x3fffffff]",
                                "ACPI: SRAT: Node 0 PXM 0 [mem 0x100000000-0x23fffffff] hotplug")


# -- kernel paths that need VMX, which vsgx's vCPUs lack --------------------------------------

def test_vmx_guest_keeps_sgx_for_virtualization_when_lc_is_locked() -> None:
    machine = platform(ONE_EPC, FC_SGX | FeatureControl.VMXON_OUTSIDE_SMX)
    kernel = boot(dataclasses.replace(machine, cpuid=with_vmx(machine.cpuid)))
    assert kernel.dmesg == (
        "x86/cpu: SGX Launch Control is locked. Support SGX virtualization only.",
        "sgx: EPC section 0x140000000-0x143ffffff", FW_BUG, NO_LC)
    assert kernel.cpuinfo_flags == ("sgx",)
    assert kernel.devices == ("/dev/sgx_provision", "/dev/sgx_vepc")


def test_vmx_disabled_by_bios() -> None:
    machine = platform(ONE_EPC, FC_SGX)
    kernel = boot(dataclasses.replace(machine, cpuid=with_vmx(machine.cpuid)))
    assert kernel.dmesg == ("x86/cpu: VMX (outside TXT) disabled by BIOS",
                            "x86/cpu: SGX virtualization disabled due to lack of VMX.",
                            "x86/cpu: SGX Launch Control is locked. Disable SGX.")


def test_vmx_guest_with_launch_control_has_all_three_devices() -> None:
    machine = platform(ONE_EPC, FC_SGX_LC | FeatureControl.VMXON_OUTSIDE_SMX)
    kernel = boot(dataclasses.replace(machine, cpuid=with_vmx(machine.cpuid)))
    assert kernel.devices == ("/dev/sgx_provision", "/dev/sgx_enclave", "/dev/sgx_vepc")


def test_features_are_those_all_boot_cpus_share_and_messages_print_once() -> None:
    machine = platform(f"-m 1G -smp 3 -cpu host {epc_args(1)}")
    machine.vcpu_msrs[1].feature_control = FC_SGX
    machine.vcpu_msrs[2].feature_control = FC_SGX
    caps, messages = identify_cpus(machine.cpuid, machine.vcpu_msrs)
    assert CpuCap.SGX not in caps
    assert messages == ("x86/cpu: SGX Launch Control is locked. Disable SGX.",)
