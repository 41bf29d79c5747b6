"""A bare-metal harness for the execution engine: a started VM, a page table, guest RAM and EPC
allocators, and an enclave builder that drives the processor's own ENCLS leaves (ECREATE, EADD,
EEXTEND, EINIT on the launch-control path) with their operands in guest RAM.

Imported by the engine tests and by ``benchmarks/bench_engine.py``.
"""

from __future__ import annotations

import functools
import mmap
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.arch import (
    ATTRIBUTES,
    EXINFO,
    GPRSGX,
    PAGE_SIZE,
    PAGEINFO,
    SECINFO,
    SECS,
    SIGSTRUCT,
    TCS,
    AttributesFlags,
    EnclsLeaf,
    MiscSelect,
    Msr,
    PageType,
    secinfo_flags,
)
from vsgx.cpu import SgxProcessor
from vsgx.crypto import generate_signing_key, mrsigner, sign_sigstruct
from vsgx.engine import PERM_R, PERM_W, PERM_X, Exit, Registers, Vcpu
from vsgx.platform.host import open_host
from vsgx.platform.machine import VirtualMachine

MACHINE_ARGS = ["-machine", "q35", "-m", "512M", "-smp", "2", "-cpu", "host",
                "-object", "memory-backend-epc,id=e0,size=8M",
                "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
RW = PERM_R | PERM_W
RX = PERM_R | PERM_X
RWX = PERM_R | PERM_W | PERM_X
REG_RX = secinfo_flags(PageType.PT_REG, RX)
REG_RW = secinfo_flags(PageType.PT_REG, RW)
REG_R = secinfo_flags(PageType.PT_REG, PERM_R)
TCS_FLAGS = secinfo_flags(PageType.PT_TCS)

ENCLU = bytes.fromhex("0f01d7")  # enclu
EEXIT_TO_RCX = bytes.fromhex(
    "4889cb"      # mov rbx, rcx        ; return to the address after EENTER
    "b804000000"  # mov eax, 4          ; EEXIT
) + ENCLU         # enclu
EENTER_STUB = bytes.fromhex("b802000000") + ENCLU  # mov eax, 2 ; enclu (EENTER)
ERESUME_STUB = bytes.fromhex("b803000000") + ENCLU  # mov eax, 3 ; enclu (ERESUME)


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    return generate_signing_key()


class PageTable:
    """An :class:`~vsgx.engine.AddressSpace`: linear page -> (physical page, permissions)."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[int, int]] = {}

    def translate(self, va: int) -> tuple[int, int] | None:
        return self.entries.get(va)

    def map(self, va: int, pa: int, perms: int, pages: int = 1) -> None:
        for i in range(pages):
            self.entries[va + i * PAGE_SIZE] = (pa + i * PAGE_SIZE, perms)

    def unmap(self, va: int) -> None:
        del self.entries[va]


@dataclass
class Enclave:
    """An initialised enclave: ELRANGE, its SECS and the EPC page behind each linear page."""

    base: int
    size: int
    secs_pa: int
    pages: dict[int, int] = field(default_factory=dict)

    def epc(self, la: int) -> int:
        """Physical address of the EPC page at enclave linear address ``la``."""
        return self.pages[la & ~(PAGE_SIZE - 1)] + (la & (PAGE_SIZE - 1))


@dataclass(frozen=True)
class Page:
    """One page of an enclave image, at ``offset`` from the base."""

    offset: int
    flags: int = REG_RW
    data: bytes = b""
    tcs: TCS | None = None


class Platform:
    """A started VM (2 vCPUs, 512 MiB RAM, 8 MiB EPC) on a throwaway host."""

    RAM_START = 0x400_0000
    SCRATCH = 0x100_0000  # ENCLS operands (PAGEINFO, SECINFO, source pages, SIGSTRUCT)

    def __init__(self, name: str = "engine-tests") -> None:
        self.vm = VirtualMachine.from_args(MACHINE_ARGS, host=open_host(name, persist=False))
        self.vm.start()
        processor = self.vm.processor
        assert processor is not None
        self.processor: SgxProcessor = processor
        self._next_ram = self.RAM_START
        self._next_epc = 0

    @property
    def regions(self) -> list[tuple[int, mmap.mmap]]:
        return self.vm.ram.regions()

    def vcpu(self, lp: int = 0) -> Vcpu:
        return Vcpu(self.processor, lp, self.regions, self.vm.cpuid)

    def alloc_ram(self, pages: int = 1) -> int:
        pa = self._next_ram
        self._next_ram += pages * PAGE_SIZE
        return pa

    def alloc_epc(self) -> int:
        pa = self.processor.epc.address_of(self._next_epc)
        self._next_epc += 1
        return pa

    def write(self, pa: int, data: bytes) -> None:
        self.vm.ram.write(pa, data)

    def read(self, pa: int, size: int) -> bytes:
        return bytes(self.vm.ram.read(pa, size))

    def read_linear(self, table: PageTable, va: int, size: int) -> bytes:
        """Untrusted memory at ``va`` (within one page), as the page table maps it."""
        pa, _ = table.entries[va & ~(PAGE_SIZE - 1)]
        return self.read(pa + (va & (PAGE_SIZE - 1)), size)

    def write_linear(self, table: PageTable, va: int, data: bytes) -> None:
        pa, _ = table.entries[va & ~(PAGE_SIZE - 1)]
        self.write(pa + (va & (PAGE_SIZE - 1)), data)

    def epc_read(self, pa: int, size: int) -> bytes:
        """What the processor holds in EPC (not what software could read)."""
        idx = self.processor.epc.index_of(pa)
        assert idx is not None
        off = pa & (PAGE_SIZE - 1)
        return bytes(self.processor.epc.page(idx)[off : off + size])

    def code(self, table: PageTable, va: int, code: bytes, perms: int = RX) -> int:
        """Untrusted code (or data) at ``va`` in fresh RAM; returns its physical address."""
        pages = max(1, -(-((va & (PAGE_SIZE - 1)) + len(code)) // PAGE_SIZE))
        pa = self.alloc_ram(pages)
        table.map(va & ~(PAGE_SIZE - 1), pa, perms, pages)
        self.write(pa + (va & (PAGE_SIZE - 1)), code)
        return pa

    def encls(self, leaf: EnclsLeaf, rbx: int = 0, rcx: int = 0, rdx: int = 0) -> None:
        result = self.processor.encls(leaf, rbx, rcx, rdx)
        assert result.status.ok, (leaf, result)

    def build(self, table: PageTable, base: int, size: int, pages: Iterable[Page], *,
              ssaframesize: int = 1, miscselect: int = int(MiscSelect.EXINFO),
              flags: int = int(AttributesFlags.MODE64BIT | AttributesFlags.DEBUG)) -> Enclave:
        """ECREATE, EADD + EEXTEND of every page, EINIT, and the page-table entries
        (TCS pages mapped read/write, others with their EPCM permissions)."""
        secs_pa = self.alloc_epc()
        src = self.SCRATCH
        pageinfo, secinfo, sigstruct = src + 0x1000, src + 0x1100, src + 0x2000
        secs = SECS(size=size, baseaddr=base, ssaframesize=ssaframesize, miscselect=miscselect,
                    attributes=ATTRIBUTES(flags, 3))
        self.write(src, secs.to_bytes())
        self.write(secinfo, SECINFO(secinfo_flags(PageType.PT_SECS)).to_bytes())
        self.write(pageinfo, PAGEINFO(0, src, secinfo, 0).to_bytes())
        self.encls(EnclsLeaf.ECREATE, pageinfo, secs_pa)
        enclave = Enclave(base, size, secs_pa)
        for page in pages:
            la = base + page.offset
            data = page.tcs.to_bytes() if page.tcs is not None else page.data
            epc_pa = self.alloc_epc()
            self.write(src, data.ljust(PAGE_SIZE, b"\0"))
            self.write(secinfo, SECINFO(page.flags).to_bytes())
            self.write(pageinfo, PAGEINFO(la, src, secinfo, secs_pa).to_bytes())
            self.encls(EnclsLeaf.EADD, pageinfo, epc_pa)
            for off in range(0, PAGE_SIZE, 256):
                self.encls(EnclsLeaf.EEXTEND, secs_pa, epc_pa + off)
            enclave.pages[la] = epc_pa
            if page.tcs is not None:
                table.map(la, epc_pa, RW)
            else:
                table.map(la, epc_pa, page.flags & RWX)
        state = self.processor.enclaves[self.processor.epc.index_of(secs_pa) or 0]
        sig = sign_sigstruct(SIGSTRUCT(vendor=0, date=0x20240101,
                                       enclavehash=state.builder.digest(),
                                       attributes=state.secs.attributes,
                                       attributemask=ATTRIBUTES(0, 0),
                                       miscselect=miscselect, miscmask=0),
                             signing_key())
        raw = sig.to_bytes()
        self.write(sigstruct, raw)
        self.write(sigstruct + 0x800, bytes(512))  # EINITTOKEN: none (launch control)
        signer = mrsigner(raw[128:512])
        for msrs in self.vm.vcpu_msrs:
            for i in range(4):
                msrs.wrmsr(Msr.IA32_SGXLEPUBKEYHASH0 + i,
                           int.from_bytes(signer[8 * i : 8 * i + 8], "little"))
        self.encls(EnclsLeaf.EINIT, sigstruct, secs_pa, sigstruct + 0x800)
        return enclave


def tcs_page(offset: int, *, ossa: int, oentry: int, nssa: int = 2, ofsbasgx: int = 0,
             ogsbasgx: int = 0, flags: int = 0) -> Page:
    return Page(offset, TCS_FLAGS, tcs=TCS(flags=flags, ossa=ossa, nssa=nssa, oentry=oentry,
                                          ofsbasgx=ofsbasgx, ogsbasgx=ogsbasgx,
                                          fslimit=0xFFF, gslimit=0xFFF))


# -- the standard test enclave and its untrusted caller -----------------------------------------

BASE = 0x7000_0000
SIZE = 0x4_0000
TCS0 = BASE
TCS1 = BASE + 0x1000
CODE = BASE + 0x2000      # two RX pages; OENTRY of both TCSs
SSA0 = BASE + 0x4000      # TCS0's two SSA frames
SSA1 = BASE + 0x6000      # TCS1's two SSA frames
FS_PAGE = BASE + 0x8000   # OFSBASGX; starts with FS_MAGIC
GS_PAGE = BASE + 0x9000   # OGSBASGX; starts with GS_MAGIC
DATA = BASE + 0xA000      # RW
RO = BASE + 0xB000        # EPCM R only, but mapped read/write in the page tables
SECINFO_PAGE = BASE + 0xC000
BUFFER = BASE + 0x1_0000  # 64 KiB RW
BUFFER_SIZE = 0x1_0000
FS_MAGIC = 0x1111_2222_3333_4444
GS_MAGIC = 0x5555_6666_7777_8888
RO_MAGIC = 0x0BAD_C0DE_0BAD_C0DE

STUB = 0x40_0000          # mov eax, 2 ; enclu (EENTER) ; the AEP is the ENCLU
AEP = STUB + 5
STUB_END = STUB + 8
UNTRUSTED = 0x50_0000     # 4 pages of untrusted RW memory


def standard_enclave(plat: Platform, table: PageTable, code: bytes, *,
                     nssa: int = 2, tcs_flags: int = 0,
                     flags: int = int(AttributesFlags.MODE64BIT | AttributesFlags.DEBUG),
                     ) -> Enclave:
    """The layout above with ``code`` at CODE (up to two pages), plus the untrusted stub at
    STUB and RW memory at UNTRUSTED."""
    pages = [
        tcs_page(TCS0 - BASE, ossa=SSA0 - BASE, oentry=CODE - BASE, nssa=nssa,
                 ofsbasgx=FS_PAGE - BASE, ogsbasgx=GS_PAGE - BASE, flags=tcs_flags),
        tcs_page(TCS1 - BASE, ossa=SSA1 - BASE, oentry=CODE - BASE, nssa=nssa,
                 ofsbasgx=FS_PAGE - BASE, ogsbasgx=GS_PAGE - BASE, flags=tcs_flags),
        Page(CODE - BASE, REG_RX, code[:PAGE_SIZE]),
        Page(CODE - BASE + PAGE_SIZE, REG_RX, code[PAGE_SIZE:]),
        *(Page(SSA0 - BASE + i * PAGE_SIZE) for i in range(4)),
        Page(FS_PAGE - BASE, data=FS_MAGIC.to_bytes(8, "little")),
        Page(GS_PAGE - BASE, data=GS_MAGIC.to_bytes(8, "little")),
        Page(DATA - BASE),
        Page(RO - BASE, REG_R, RO_MAGIC.to_bytes(8, "little")),
        Page(SECINFO_PAGE - BASE, data=SECINFO(REG_RW).to_bytes()),
        *(Page(BUFFER - BASE + i * PAGE_SIZE) for i in range(BUFFER_SIZE // PAGE_SIZE)),
    ]
    enclave = plat.build(table, BASE, SIZE, pages, flags=flags)
    table.map(RO, enclave.pages[RO], RW)
    plat.code(table, STUB, EENTER_STUB)
    table.map(UNTRUSTED, plat.alloc_ram(4), RW, 4)
    return enclave



def ecall(vcpu: Vcpu, table: PageTable, tcs: int = TCS0, **values: int) -> tuple[Exit, Registers]:
    """EENTER ``tcs`` from the stub (AEP = the stub's ENCLU) and run until back at STUB_END."""
    regs = Registers(rip=STUB, rbx=tcs, rcx=AEP, rsp=UNTRUSTED + 0x3F00, **values)
    return vcpu.run(table, regs, stop_at=STUB_END), regs


def eresume(vcpu: Vcpu, table: PageTable, regs: Registers, tcs: int = TCS0) -> Exit:
    """What an AEP does: ENCLU[ERESUME] with the AEX's synthetic RAX/RBX/RCX."""
    regs.rip, regs.rax, regs.rbx, regs.rcx = AEP, 3, tcs, AEP
    return vcpu.run(table, regs, stop_at=STUB_END)


def gprsgx(plat: Platform, enclave: Enclave, frame: int = 0, ssa: int = SSA0) -> GPRSGX:
    la = ssa + (frame + 1) * PAGE_SIZE - GPRSGX.SIZE
    return GPRSGX.from_bytes(plat.epc_read(enclave.epc(la), GPRSGX.SIZE), strict=False)


def exinfo(plat: Platform, enclave: Enclave, frame: int = 0, ssa: int = SSA0) -> EXINFO:
    la = ssa + (frame + 1) * PAGE_SIZE - GPRSGX.SIZE - EXINFO.SIZE
    return EXINFO.from_bytes(plat.epc_read(enclave.epc(la), EXINFO.SIZE), strict=False)


def tcs_state(plat: Platform, enclave: Enclave, tcs: int = TCS0) -> TCS:
    return TCS.from_bytes(plat.epc_read(enclave.epc(tcs), TCS.SIZE), strict=False)
