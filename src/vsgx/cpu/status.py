"""Leaf completion status: the RAX code plus the RFLAGS effects (SDM 38.x "Flags Affected").

Leaves that report errors set ZF (EBLOCK and EWB use CF for some codes) and always clear
CF, PF, AF, OF and SF otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsgx.arch import SgxError

RFLAGS_CF = 1 << 0
RFLAGS_PF = 1 << 2
RFLAGS_AF = 1 << 4
RFLAGS_ZF = 1 << 6
RFLAGS_SF = 1 << 7
RFLAGS_OF = 1 << 11
_STATUS_FLAGS = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF


@dataclass(frozen=True, slots=True)
class LeafStatus:
    """What a leaf leaves in RAX and RFLAGS."""

    code: SgxError = SgxError.SGX_SUCCESS
    zf: bool = False
    cf: bool = False

    @property
    def ok(self) -> bool:
        return self.code == SgxError.SGX_SUCCESS

    def apply_rflags(self, rflags: int) -> int:
        """RFLAGS after the leaf: status flags cleared, then ZF/CF as the leaf reports."""
        out = rflags & ~_STATUS_FLAGS
        if self.zf:
            out |= RFLAGS_ZF
        if self.cf:
            out |= RFLAGS_CF
        return out


SUCCESS = LeafStatus()


def error(code: SgxError) -> LeafStatus:
    """The usual error form: RAX = code, ZF = 1."""
    return LeafStatus(code, zf=True)


def warning_cf(code: SgxError) -> LeafStatus:
    """Codes reported with CF = 1 instead of ZF (EBLOCK's PG_IS_SECS/NOTBLOCKABLE/BLKSTATE,
    EWB's VA_SLOT_OCCUPIED)."""
    return LeafStatus(code, cf=True)
