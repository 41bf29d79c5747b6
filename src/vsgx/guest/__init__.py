"""vsgx's Linux guest, modelled on Linux 6.x: what its kernel sees of the virtual SGX platform
at boot (the SRAT, the SGX feature bits and IA32_FEATURE_CONTROL, the EPC sections) and what
it prints and creates from them.

Start with :func:`boot`, which takes any object with the :class:`GuestPlatform` members.
"""

from __future__ import annotations

from vsgx.guest.boot import GuestKernel, GuestPlatform, boot, identify_cpus
from vsgx.guest.numa import NumaMemblk, NumaView, SratNuma, acpi_numa_init, numa_view
from vsgx.guest.sgx import CpuCap, GuestEpcSection, init_ia32_feat_ctl, sgx_init

__all__ = [
    "CpuCap",
    "GuestEpcSection",
    "GuestKernel",
    "GuestPlatform",
    "NumaMemblk",
    "NumaView",
    "SratNuma",
    "acpi_numa_init",
    "boot",
    "identify_cpus",
    "init_ia32_feat_ctl",
    "numa_view",
    "sgx_init",
]
