"""The ENCLS leaf table: leaf number to handler (SDM Vol. 3D Table 38-1)."""

from __future__ import annotations

from collections.abc import Callable

from vsgx.arch import EnclsLeaf
from vsgx.cpu.encls_build import eadd, ecreate, eextend, einit, eremove
from vsgx.cpu.encls_debug import edbgrd, edbgwr
from vsgx.cpu.encls_paging import eblock, eldb, eldu, epa, etrack, ewb
from vsgx.cpu.encls_sgx2 import eaug, emodpr, emodt
from vsgx.cpu.processor import LeafResult, LogicalProcessor, SgxProcessor

EnclsHandler = Callable[[SgxProcessor, LogicalProcessor, int, int, int], LeafResult]

ENCLS_LEAVES: dict[int, EnclsHandler] = {
    EnclsLeaf.ECREATE: ecreate,
    EnclsLeaf.EADD: eadd,
    EnclsLeaf.EINIT: einit,
    EnclsLeaf.EREMOVE: eremove,
    EnclsLeaf.EDBGRD: edbgrd,
    EnclsLeaf.EDBGWR: edbgwr,
    EnclsLeaf.EEXTEND: eextend,
    EnclsLeaf.ELDB: eldb,
    EnclsLeaf.ELDU: eldu,
    EnclsLeaf.EBLOCK: eblock,
    EnclsLeaf.EPA: epa,
    EnclsLeaf.EWB: ewb,
    EnclsLeaf.ETRACK: etrack,
    EnclsLeaf.EAUG: eaug,
    EnclsLeaf.EMODPR: emodpr,
    EnclsLeaf.EMODT: emodt,
}
"""Leaves 0x10-0x13 (ERDINFO, ETRACKC, ELDBC, ELDUC: EPC oversubscription) are not modelled and
raise #GP(0) as an unsupported leaf does."""
