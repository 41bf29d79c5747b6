"""CPUID leaf 12H sub-leaves 2 and up: one EPC section each (SDM Vol. 2A CPUID, leaf 12H
sub-leaf >= 2; SDM Vol. 3D 36.7.2).

EAX[3:0] is the sub-leaf type (0: no more sections, 1: an EPC section), EAX[31:12] and
EBX[19:0] bits 31:12 and 51:32 of the section's physical base, ECX[3:0] the section property,
ECX[31:12] and EDX[19:0] bits 31:12 and 51:32 of its size.
"""

from __future__ import annotations

EPC_SECTION_INVALID = 0x0
EPC_SECTION_VALID = 0x1
EPC_TYPE_MASK = 0xF
_LOW = 0xFFFF_F000
_HIGH = 0xF_FFFF
_MASK32 = 0xFFFF_FFFF


def encode_epc_section(base: int, size: int, prop: int) -> tuple[int, int, int, int]:
    """(EAX, EBX, ECX, EDX) for a section at ``base`` of ``size`` bytes with property
    ``prop``. The high halves carry ``value >> 32`` whole, as QEMU writes them
    (``cpu_x86_cpuid``); for addresses below 2^52 that is exactly the architectural field."""
    return ((base & _LOW) | EPC_SECTION_VALID, base >> 32 & _MASK32,
            (size & _LOW) | (prop & EPC_TYPE_MASK), size >> 32 & _MASK32)


def decode_epc_section(regs: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """(type, base, size) of a sub-leaf, reading only the architectural bits (Linux
    ``sgx_calc_section_metric``, QEMU ``sgx_calc_host_epc_sections``)."""
    eax, ebx, ecx, edx = regs
    return (eax & EPC_TYPE_MASK, (eax & _LOW) + ((ebx & _HIGH) << 32),
            (ecx & _LOW) + ((edx & _HIGH) << 32))
