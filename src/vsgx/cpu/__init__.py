"""The SGX processor model: EPC, EPCM, MSRs and the ENCLS/ENCLU leaves (SDM Vol. 3D ch. 36-41).

Leaves return a :class:`LeafStatus` (RAX and RFLAGS) or raise :class:`SgxFault` (#GP, #PF with
PFEC.SGX, #UD). See :class:`SgxProcessor` for the entry points.
"""

from __future__ import annotations

from vsgx.cpu.encls_build import add_pages
from vsgx.cpu.encls_paging import BatchFault, EvictedPage, LoadRequest, eld_pages, ewb_pages
from vsgx.cpu.epc import Epc, EpcSection
from vsgx.cpu.epcm import Epcm, EpcmEntry
from vsgx.cpu.fault import SgxFault
from vsgx.cpu.features import SgxFeatures
from vsgx.cpu.memory import Memory, SparseMemory
from vsgx.cpu.msr import SgxMsrs
from vsgx.cpu.processor import (
    EnclaveContext,
    EnclaveState,
    LeafResult,
    LogicalProcessor,
    SgxProcessor,
)
from vsgx.cpu.status import LeafStatus

__all__ = [
    "BatchFault", "EnclaveContext", "EnclaveState", "Epc", "EpcSection", "Epcm", "EpcmEntry",
    "EvictedPage", "LeafResult", "LeafStatus", "LoadRequest", "LogicalProcessor", "Memory",
    "SgxFault", "SgxFeatures", "SgxMsrs", "SgxProcessor", "SparseMemory", "add_pages",
    "eld_pages", "ewb_pages",
]
