"""The virtual machine platform: QEMU-compatible configuration of a virtual SGX guest.

Start with :func:`parse_qemu_args`, which turns a ``qemu-system-x86_64`` command line into a
frozen :class:`MachineConfig` or raises :class:`QemuOptionError` with QEMU's own message.
"""

from __future__ import annotations

from vsgx.platform.config import (
    BackendType,
    CpuConfig,
    CpuidBit,
    EpcSection,
    HostMemPolicy,
    MachineConfig,
    MachineType,
    MemoryBackend,
    MemoryConfig,
    NumaNode,
    QmpConfig,
    SgxFeature,
    SmpConfig,
)
from vsgx.platform.options import parse_qemu_args
from vsgx.platform.qemuopts import PROG, QemuOptionError

__all__ = [
    "PROG",
    "BackendType",
    "CpuConfig",
    "CpuidBit",
    "EpcSection",
    "HostMemPolicy",
    "MachineConfig",
    "MachineType",
    "MemoryBackend",
    "MemoryConfig",
    "NumaNode",
    "QemuOptionError",
    "QmpConfig",
    "SgxFeature",
    "SmpConfig",
    "parse_qemu_args",
]
