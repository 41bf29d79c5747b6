"""The guest kernel's ENCLS wrappers (``arch/x86/kernel/cpu/sgx/encls.h``): one function per
leaf, executed on vCPU 0 of the virtual processor.

Linux never hands user memory to ENCLS: the driver copies SECS, SECINFO, page contents and
SIGSTRUCT into kernel memory first and passes kernel addresses. These wrappers do the same:
each stages its operands in a few kernel pages of guest RAM (PAGEINFO and SECINFO, a source
page, SIGSTRUCT with its token, a PCMD) and runs the leaf with their physical addresses;
ELDU thus reads the encrypted page and PCMD the reclaimer kept in the enclave's backing store
(:mod:`vsgx.guest.backing`, kernel memory outside guest RAM) from those pages. EWB runs as the
reclaimer's batch through :func:`vsgx.cpu.ewb_pages`, the leaf sequence with its memory
operands returned by value, which the reclaimer stores into the backing store.

Return values follow ``encls.h``: 0 on success, the SGX error code when the leaf reports one,
or :data:`ENCLS_FAULT_FLAG` ORed with the vector when the leaf faulted
(:func:`encls_faulted`, :func:`encls_trapnr`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from vsgx.arch import EINITTOKEN, PAGEINFO, SECINFO, EnclsLeaf, Msr, PageType
from vsgx.cpu.encls_paging import BatchFault, EvictedPage, ewb_pages
from vsgx.cpu.fault import SgxFault
from vsgx.cpu.msr import SgxMsrs
from vsgx.cpu.processor import LeafResult, SgxProcessor
from vsgx.guest.memory import PhysicalMemory

ENCLS_FAULT_FLAG = 0x4000_0000
_SECINFO_OFFSET = 64
_PCMD_OFFSET = 128
_TOKEN_OFFSET = 2048
"""Where SGX_IOC_ENCLAVE_INIT puts the zeroed launch token: half a page after SIGSTRUCT."""


def encls_faulted(ret: int) -> bool:
    """``encls_faulted``: the leaf raised an exception."""
    return bool(ret & ENCLS_FAULT_FLAG)


def encls_trapnr(ret: int) -> int:
    """``ENCLS_TRAPNR``: the vector of a faulted leaf."""
    return ret & ~ENCLS_FAULT_FLAG


class Encls:
    """ENCLS as the kernel issues it, with operands staged in its own pages of ``memory``."""

    def __init__(self, processor: SgxProcessor, memory: PhysicalMemory) -> None:
        self.processor = processor
        self._memory = memory
        self._lock = threading.Lock()
        self._pageinfo = memory.alloc_page()
        self._secinfo = self._pageinfo + _SECINFO_OFFSET
        self._pcmd = self._pageinfo + _PCMD_OFFSET
        self._contents = memory.alloc_page()
        self._sigstruct = memory.alloc_page()

    def _kernel_lp(self) -> int:
        """A logical processor not in enclave mode, for the kernel's ENCLS (the kernel runs
        on a CPU no enclave thread occupies: those are out of the enclave by then). Call with
        the processor's lock held, so that none can enter meanwhile."""
        for proc in self.processor.lps:
            if proc.enclave is None:
                return proc.index
        raise RuntimeError("every logical processor is in enclave mode; the guest kernel "
                           "has no CPU to run ENCLS on")

    def _leaf(self, leaf: EnclsLeaf, rbx: int = 0, rcx: int = 0, rdx: int = 0, *,
              before: Callable[[SgxMsrs], None] | None = None) -> LeafResult | int:
        """ENCLS[leaf] on a free logical processor; ``before`` runs on its MSRs first, on
        the same processor without a break (the kernel disables preemption)."""
        with self.processor.lock:
            lp = self._kernel_lp()
            if before is not None:
                before(self.processor.lps[lp].msrs)
            try:
                return self.processor.encls(leaf, rbx, rcx, rdx, lp=lp)
            except SgxFault as fault:
                return ENCLS_FAULT_FLAG | int(fault.vector)

    def _status(self, leaf: EnclsLeaf, rbx: int = 0, rcx: int = 0, rdx: int = 0, *,
                before: Callable[[SgxMsrs], None] | None = None) -> int:
        result = self._leaf(leaf, rbx, rcx, rdx, before=before)
        return result if isinstance(result, int) else int(result.status.code)

    def _stage(self, pageinfo: PAGEINFO, secinfo: bytes | None = None,
               contents: bytes | None = None) -> None:
        self._memory.write(self._pageinfo, pageinfo.to_bytes())
        if secinfo is not None:
            self._memory.write(self._secinfo, secinfo)
        if contents is not None:
            self._memory.write(self._contents, contents)

    def ecreate(self, secs: bytes, epc_pa: int) -> int:
        """``__ecreate``: the SECS page with a zeroed SECINFO (PT_SECS)."""
        with self._lock:
            self._stage(PAGEINFO(srcpge=self._contents, secinfo=self._secinfo),
                        bytes(SECINFO.SIZE), secs)
            return self._status(EnclsLeaf.ECREATE, self._pageinfo, epc_pa)

    def eadd(self, secs_pa: int, addr: int, contents: bytes, secinfo: bytes,
             epc_pa: int) -> int:
        """``__eadd``: ``contents`` at enclave address ``addr`` with the 64-byte ``secinfo``."""
        with self._lock:
            self._stage(PAGEINFO(linaddr=addr, srcpge=self._contents, secinfo=self._secinfo,
                                 secs=secs_pa), secinfo, contents)
            return self._status(EnclsLeaf.EADD, self._pageinfo, epc_pa)

    def eextend_page(self, secs_pa: int, page_pa: int) -> int:
        """The sixteen ``__eextend``s of ``sgx_encl_extend`` over the EPC page at
        ``page_pa``, on one free logical processor (:meth:`SgxProcessor.encls_eextend_page`):
        0, or the status/fault of the leaf that failed."""
        with self._lock, self.processor.lock:
            lp = self._kernel_lp()
            try:
                result = self.processor.encls_eextend_page(secs_pa, page_pa, lp=lp)
            except SgxFault as fault:
                return ENCLS_FAULT_FLAG | int(fault.vector)
            return int(result.status.code)

    def einit(self, sigstruct: bytes, secs_pa: int, lepubkeyhash: bytes) -> int:
        """``sgx_update_lepubkeyhash`` then ``__einit`` with a zeroed token, on one vCPU
        without a break between them (the kernel disables preemption)."""
        def update_lepubkeyhash(msrs: SgxMsrs) -> None:
            for i in range(4):
                msrs.wrmsr(Msr.IA32_SGXLEPUBKEYHASH0 + i,
                           int.from_bytes(lepubkeyhash[8 * i:8 * i + 8], "little"))

        with self._lock:
            self._memory.write(self._sigstruct, sigstruct)
            self._memory.write(self._sigstruct + _TOKEN_OFFSET, bytes(EINITTOKEN.SIZE))
            return self._status(EnclsLeaf.EINIT, self._sigstruct, secs_pa,
                                self._sigstruct + _TOKEN_OFFSET, before=update_lepubkeyhash)

    def eremove(self, epc_pa: int) -> int:
        """``__eremove``."""
        with self._lock:
            return self._status(EnclsLeaf.EREMOVE, 0, epc_pa)

    def epa(self, epc_pa: int) -> int:
        """``__epa``: make the page a version array (RBX = PT_VA)."""
        with self._lock:
            return self._status(EnclsLeaf.EPA, int(PageType.PT_VA), epc_pa)

    def eaug(self, secs_pa: int, addr: int, epc_pa: int) -> int:
        """``__eaug``: a pending page at enclave address ``addr`` (no contents, no SECINFO)."""
        with self._lock:
            self._stage(PAGEINFO(linaddr=addr, secs=secs_pa))
            return self._status(EnclsLeaf.EAUG, self._pageinfo, epc_pa)

    def emodpr(self, secinfo_flags: int, epc_pa: int) -> int:
        """``__emodpr``: restrict the page's EPCM permissions to those in ``secinfo_flags``."""
        with self._lock:
            self._memory.write(self._secinfo, SECINFO(secinfo_flags).to_bytes())
            return self._status(EnclsLeaf.EMODPR, self._secinfo, epc_pa)

    def emodt(self, secinfo_flags: int, epc_pa: int) -> int:
        """``__emodt``: change the page's type to the one in ``secinfo_flags``."""
        with self._lock:
            self._memory.write(self._secinfo, SECINFO(secinfo_flags).to_bytes())
            return self._status(EnclsLeaf.EMODT, self._secinfo, epc_pa)

    def etrack(self, secs_pa: int) -> int:
        """``__etrack``."""
        with self._lock:
            return self._status(EnclsLeaf.ETRACK, 0, secs_pa)

    def eblock(self, epc_pa: int) -> int:
        """``__eblock``."""
        with self._lock:
            return self._status(EnclsLeaf.EBLOCK, 0, epc_pa)

    def ewb(self, epc_pas: Sequence[int], slot_pas: Sequence[int]) -> list[EvictedPage | int]:
        """``__ewb`` of each EPC page ``epc_pas[k]`` into the VA slot ``slot_pas[k]``, in order:
        per page what EWB produced (a page it did not write out has an empty ``ciphertext``
        and its status says why), or ENCLS_FAULT_FLAG with the vector for a page whose leaf
        faulted; the pages after a faulting one still run."""
        results: list[EvictedPage | int] = []
        with self._lock:
            while len(results) < len(epc_pas):
                k = len(results)
                try:
                    results += ewb_pages(self.processor, epc_pas[k:], slot_pas[k:])
                except BatchFault as fault:
                    results += fault.done
                    results.append(ENCLS_FAULT_FLAG | int(fault.vector))
        return results

    def eldu(self, epc_pa: int, slot_pa: int, secs_pa: int, addr: int, pcmd: bytes,
             contents: bytes) -> int:
        """``__eldu`` of the encrypted page ``contents`` with its 128-byte ``pcmd`` into EPC page
        ``epc_pa``, checked against the version in VA slot ``slot_pa``; ``secs_pa`` and
        ``addr`` are PAGEINFO.SECS and PAGEINFO.LINADDR (0 for a SECS)."""
        with self._lock:
            self._memory.write(self._pcmd, pcmd)
            self._stage(PAGEINFO(linaddr=addr, srcpge=self._contents, secinfo=self._pcmd,
                                 secs=secs_pa), contents=contents)
            return self._status(EnclsLeaf.ELDU, self._pageinfo, epc_pa, slot_pa)

    def edbgrd(self, addr: int) -> tuple[int, int]:
        """``__edbgrd``: (status, the 8 bytes at EPC address ``addr`` as an integer)."""
        with self._lock:
            result = self._leaf(EnclsLeaf.EDBGRD, 0, addr)
        if isinstance(result, int):
            return result, 0
        return int(result.status.code), result.rbx or 0

    def edbgwr(self, addr: int, value: int) -> int:
        """``__edbgwr``: store the 8 bytes ``value`` at EPC address ``addr``."""
        with self._lock:
            return self._status(EnclsLeaf.EDBGWR, value, addr)
