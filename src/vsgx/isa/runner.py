"""The ``vsgx isa`` runner: a fresh emulated SGX platform executes a script of leaf invocations
and reports one result object per op.

Operands (see the README's "vsgx isa" section for the full contract):

* ``"epc": N`` names EPC page N (the leaf's RCX); ``"secs_epc": N`` the enclave's SECS page;
  ``"va_epc"``/``"va_slot"`` a version-array slot; ``"offset"`` a byte offset within the page.
* Structures are objects keyed by the SDM's field names in lower case; byte strings are hex.
* Page contents are ``{"fill": BYTE}`` or ``{"hex": "..."}``.
* ENCLU leaves run inside the enclave named by ``"secs_epc"``; enclave addresses are integers.

Result objects: ``{"op", "status", "code", "zf", "cf", "fault", ...outputs}``. When the leaf
faults, ``status``, ``code``, ``zf`` and ``cf`` are null and ``fault`` holds the vector, error
code and address; the script goes on with the next op.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.arch import (
    ATTRIBUTES,
    EINITTOKEN,
    KEYREQUEST,
    PAGE_SIZE,
    PAGEINFO,
    PCMD,
    SECINFO,
    SECS,
    SIGSTRUCT,
    TARGETINFO,
    EnclsLeaf,
    FeatureControl,
    Msr,
    PageType,
    Struct,
    StructError,
    parse_hex,
)
from vsgx.cpu import (
    EnclaveContext,
    Epc,
    EpcSection,
    LeafResult,
    SgxFault,
    SgxFeatures,
    SgxProcessor,
    SparseMemory,
)
from vsgx.cpu.enclu import accept, accept_copy, getkey, modpe, report
from vsgx.cpu.status import LeafStatus
from vsgx.crypto import (
    BootSecrets,
    PlatformSecrets,
    SigningKeyError,
    derive_key,
    einittoken_dependencies,
    einittoken_mac,
    generate_signing_key,
    load_signing_key,
    mrsigner,
    sign_sigstruct,
)
from vsgx.isa.script import Op, PlatformSpec, ScriptError

EPC_BASE = 0x1_0000_0000
"""Guest-physical base of the runner's EPC (where QEMU puts it for a guest with <= 2 GiB)."""

# Scratch memory for ENCLS operands, one aligned slot each.
_PAGEINFO = 0x1000
_SECINFO = 0x2000
_SRCPAGE = 0x3000
_SIGSTRUCT = 0x4000
_TOKEN = 0x5000
_PCMD = 0x6000
_SCRATCH_SIZE = 0x8000

Outputs = dict[str, Any]
_S = TypeVar("_S", bound=Struct)


def today_bcd() -> int:
    """SIGSTRUCT.DATE for today: BCD 0xYYYYMMDD, as Intel's signing tool writes it."""
    return int(datetime.date.today().strftime("%Y%m%d"), 16)


class IsaRunner:
    """Executes ops on one emulated platform built from a :class:`PlatformSpec`."""

    def __init__(self, spec: PlatformSpec) -> None:
        seed = spec.seed.encode()
        features = SgxFeatures(sgx2=spec.sgx2, flc=spec.flc, kss=spec.kss)
        self.memory = SparseMemory()
        self.memory.map(0, _SCRATCH_SIZE)
        try:
            epc = Epc([EpcSection(EPC_BASE, spec.epc)])
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "too large"
            raise ScriptError(f"platform.epc: cannot allocate {spec.epc} bytes of EPC: "
                              f"{reason}") from None
        self.cpu = SgxProcessor(epc, self.memory,
                                features=features, platform=PlatformSecrets.from_seed(seed),
                                boot=BootSecrets.from_seed(seed, 0))
        firmware = spec.feature_control
        if firmware is None:
            firmware = int(FeatureControl.LOCKED | FeatureControl.SGX)
            if spec.flc:
                firmware |= int(FeatureControl.SGX_LC)
        try:
            self.cpu.lps[0].msrs.wrmsr(Msr.IA32_FEATURE_CONTROL, firmware)
        except SgxFault as exc:
            raise ScriptError(f"platform.feature_control: {exc.reason}") from None
        self._default_key: rsa.RSAPrivateKey | None = None
        self._loaded_keys: dict[str, rsa.RSAPrivateKey] = {}
        self._results: list[Outputs] = []
        self._handlers: dict[str, Callable[[Op], tuple[LeafResult | LeafStatus | None,
                                                        Outputs]]] = {
            "ECREATE": self._ecreate, "EADD": self._eadd, "EEXTEND": self._eextend,
            "EINIT": self._einit, "EREMOVE": self._eremove, "EDBGRD": self._edbgrd,
            "EDBGWR": self._edbgwr, "EPA": self._epa, "EBLOCK": self._eblock,
            "ETRACK": self._etrack, "EWB": self._ewb, "ELDU": self._eldu, "ELDB": self._eldb,
            "EAUG": self._eaug, "EMODPR": self._emodpr, "EMODT": self._emodt,
            "EREPORT": self._ereport, "EGETKEY": self._egetkey, "EACCEPT": self._eaccept,
            "EACCEPTCOPY": self._eacceptcopy, "EMODPE": self._emodpe,
            "WRMSR": self._wrmsr, "RDMSR": self._rdmsr,
        }

    # -- running -----------------------------------------------------------------------------

    def run(self, ops: list[Op]) -> list[Outputs]:
        for op in ops:
            if op.name not in OPERANDS:
                raise op.error("op", f"unknown op {op.name!r} (expected one of "
                                     f"{', '.join(OPERANDS)})")
            op.check_keys(OPERANDS[op.name])
        for op in ops:
            self._results.append(self.run_op(op))
        return self._results

    def run_op(self, op: Op) -> Outputs:
        """Run one op. Each handler reads and checks all of its operands before it executes
        the leaf, so a malformed operand is reported even where the leaf would fault."""
        out: Outputs = {"op": op.name}
        try:
            result, extra = self._handlers[op.name](op)
        except SgxFault as fault:
            out.update(status=None, code=None, zf=None, cf=None, fault={
                "vector": fault.vector.name, "error_code": fault.error_code,
                "address": fault.address, "reason": fault.reason})
            return out
        status = result.status if isinstance(result, LeafResult) else result
        if status is None:
            out.update(status="SGX_SUCCESS", code=0, zf=False, cf=False, fault=None)
        else:
            out.update(status=status.code.name, code=int(status.code), zf=status.zf,
                       cf=status.cf, fault=None)
        out.update(extra)
        return out

    # -- operand helpers ---------------------------------------------------------------------

    def epc_pa(self, op: Op, key: str, default: int | None = None) -> int:
        """Physical address of the EPC page an op names (may lie beyond the EPC: the leaf
        then faults, which is what a script testing that wants)."""
        return EPC_BASE + op.integer(key, default, hi=(1 << 40)) * PAGE_SIZE

    def _pageinfo(self, linaddr: int = 0, srcpge: int = 0, secinfo: int = 0,
                  secs: int = 0) -> int:
        self.memory.write(_PAGEINFO, PAGEINFO(linaddr, srcpge, secinfo, secs).to_bytes())
        return _PAGEINFO

    def _secinfo(self, op: Op, default: dict[str, Any] | None = None) -> int:
        self.memory.write(_SECINFO, op.struct("secinfo", SECINFO, default).to_bytes())
        return _SECINFO

    def _encls(self, leaf: EnclsLeaf, rbx: int = 0, rcx: int = 0, rdx: int = 0) -> LeafResult:
        return self.cpu.encls(leaf, rbx, rcx, rdx)

    def _context(self, op: Op) -> EnclaveContext:
        secs = op.integer("secs_epc")
        tcs = op.integer("tcs", hi=self.cpu.epc.pages - 1) if op.has("tcs") else None
        ctx = EnclaveContext(secs=secs, tcs=tcs)
        self.cpu.check_enclave_mode(ctx)
        if tcs is not None and not (
                self.cpu.epcm.valid(tcs) and self.cpu.epcm.page_type(tcs) == PageType.PT_TCS
                and int(self.cpu.epcm.owner[tcs]) == secs):
            raise op.error("tcs", f"EPC page {tcs} is not a TCS of enclave {secs}")
        return ctx

    # -- ENCLS -------------------------------------------------------------------------------

    def _ecreate(self, op: Op) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc")
        self.memory.write(_SRCPAGE, op.struct("secs", SECS).to_bytes())
        secinfo = self._secinfo(op, {"flags": int(PageType.PT_SECS) << 8})
        return self._encls(EnclsLeaf.ECREATE, self._pageinfo(0, _SRCPAGE, secinfo), rcx), {}

    def _eadd(self, op: Op) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc")
        secs = self.epc_pa(op, "secs_epc")
        linaddr = op.integer("linaddr")
        self.memory.write(_SRCPAGE, op.page("page"))
        secinfo = self._secinfo(op)
        return self._encls(EnclsLeaf.EADD, self._pageinfo(linaddr, _SRCPAGE, secinfo, secs),
                           rcx), {}

    def _eextend(self, op: Op) -> tuple[LeafResult, Outputs]:
        secs = self.epc_pa(op, "secs_epc")
        rcx = self.epc_pa(op, "epc") + op.integer("offset", 0, hi=PAGE_SIZE - 1)
        return self._encls(EnclsLeaf.EEXTEND, secs, rcx), {}

    def _signing_key(self, op: Op, spec: Any) -> rsa.RSAPrivateKey:
        if spec == "generate":
            if self._default_key is None:
                self._default_key = generate_signing_key()
            return self._default_key
        if not isinstance(spec, str):
            raise op.error("sigstruct.key", "expected \"generate\" or the path of a PEM file")
        if spec in self._loaded_keys:
            return self._loaded_keys[spec]
        try:
            pem = Path(spec).read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise op.error("sigstruct.key", f"cannot read {spec}: {reason}") from None
        try:
            key = self._loaded_keys[spec] = load_signing_key(pem)
        except SigningKeyError as exc:
            raise op.error("sigstruct.key", str(exc)) from None
        return key

    def _sigstruct(self, op: Op, secs_idx: int | None) -> SIGSTRUCT:
        spec = dict(op.obj("sigstruct") or {})
        key = self._signing_key(op, spec.pop("key", "generate"))
        enclavehash = spec.pop("enclavehash", "auto")
        after = spec.pop("after_signing", None)
        state = self.cpu.enclaves.get(secs_idx) if secs_idx is not None else None
        defaults = SIGSTRUCT(
            date=today_bcd(),
            attributes=state.secs.attributes if state else ATTRIBUTES(),
            attributemask=ATTRIBUTES(0xFFFF_FFFF_FFFF_FFFF, 0),
            miscselect=state.secs.miscselect if state else 0, miscmask=0xFFFF_FFFF,
        ).to_dict()
        if enclavehash == "auto":
            enclavehash = state.builder.digest().hex() if state else "00" * 32
        fields = {**defaults, **spec, "enclavehash": enclavehash}
        sig = _from_dict(SIGSTRUCT, fields, op.path("sigstruct"))
        signed = sign_sigstruct(sig, key)
        if after is not None:
            merged = {**signed.to_dict(), **_expect_dict(op, "sigstruct.after_signing", after)}
            signed = _from_dict(SIGSTRUCT, merged, op.path("sigstruct.after_signing"))
        return signed

    def _einittoken(self, op: Op, sig: SIGSTRUCT, secs_idx: int | None
                    ) -> tuple[EINITTOKEN, str]:
        """The token's fields (``"auto"`` resolved) and its MAC spec (hex or ``"auto"``).

        Unspecified ATTRIBUTES and MASKEDATTRIBUTESLE default to the enclave's SECS.ATTRIBUTES,
        as a launch enclave issuing a token for that enclave would set them."""
        spec = dict(op.obj("einittoken") or {})
        state = self.cpu.enclaves.get(secs_idx) if secs_idx is not None else None
        mac = spec.pop("mac", "auto")
        if not isinstance(mac, str):
            raise op.error("einittoken.mac", "expected \"auto\" or a hex string")
        autos = {
            "mrenclave": (state.builder.digest() if state else bytes(32)).hex(),
            "mrsigner": mrsigner(sig.modulus).hex(),
            "attributes": (state.secs.attributes if state else ATTRIBUTES()).to_dict(),
        }
        for name, value in autos.items():
            if spec.get(name, "auto" if name == "attributes" else None) == "auto":
                spec[name] = value
        spec.setdefault("maskedattributesle", spec["attributes"])
        token = _from_dict(EINITTOKEN, spec, op.path("einittoken"))
        if mac != "auto":
            token = token.replace(mac=op_hex(op, "einittoken.mac", mac, 16))
        return token, mac

    def _einit(self, op: Op) -> tuple[LeafResult, Outputs]:
        secs_pa = self.epc_pa(op, "secs_epc")
        secs_idx = self.cpu.epc.index_of(secs_pa)
        msrs = self.cpu.lps[0].msrs
        lehash = op.choice("lehash", ("signer", "keep"),
                           "signer" if msrs.lepubkeyhash_writable else "keep")
        sig = self._sigstruct(op, secs_idx)
        token, mac = (self._einittoken(op, sig, secs_idx) if op.has("einittoken")
                      else (EINITTOKEN(), ""))
        if lehash == "signer":
            signer = mrsigner(sig.modulus)
            for i in range(4):
                msrs.wrmsr(Msr.IA32_SGXLEPUBKEYHASH0 + i,
                           int.from_bytes(signer[8 * i : 8 * i + 8], "little"))
        if mac == "auto":
            deps = einittoken_dependencies(token, msrs.lepubkeyhash_bytes(), self.cpu.platform)
            token = token.replace(
                mac=einittoken_mac(derive_key(self.cpu.platform, deps), token.to_bytes()))
        self.memory.write(_SIGSTRUCT, sig.to_bytes())
        self.memory.write(_TOKEN, token.to_bytes())
        result = self._encls(EnclsLeaf.EINIT, _SIGSTRUCT, secs_pa, _TOKEN)
        outputs: Outputs = {}
        if result.status.ok and secs_idx is not None:
            secs = self.cpu.enclaves[secs_idx].secs
            outputs = {"mrenclave": secs.mrenclave.hex(), "mrsigner": secs.mrsigner.hex()}
        return result, outputs

    def _eremove(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._encls(EnclsLeaf.EREMOVE, 0, self.epc_pa(op, "epc")), {}

    def _edbgrd(self, op: Op) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc") + op.integer("offset", 0, hi=PAGE_SIZE - 1)
        result = self._encls(EnclsLeaf.EDBGRD, 0, rcx)
        out: Outputs = {}
        if result.rbx is not None:
            out["data"] = result.rbx.to_bytes(8, "little").hex()
        return result, out

    def _edbgwr(self, op: Op) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc") + op.integer("offset", 0, hi=PAGE_SIZE - 1)
        data = int.from_bytes(op.hexbytes("data", 8), "little")
        return self._encls(EnclsLeaf.EDBGWR, data, rcx), {}

    def _epa(self, op: Op) -> tuple[LeafResult, Outputs]:
        rbx = op.integer("rbx", int(PageType.PT_VA))
        return self._encls(EnclsLeaf.EPA, rbx, self.epc_pa(op, "epc")), {}

    def _eblock(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._encls(EnclsLeaf.EBLOCK, 0, self.epc_pa(op, "epc")), {}

    def _etrack(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._encls(EnclsLeaf.ETRACK, 0, self.epc_pa(op, "secs_epc")), {}

    def _va_slot(self, op: Op) -> int:
        return self.epc_pa(op, "va_epc") + 8 * op.integer("va_slot", 0, hi=511)

    def _ewb(self, op: Op) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc")
        rdx = self._va_slot(op)
        self.memory.write(_SRCPAGE, bytes(PAGE_SIZE))
        self.memory.write(_PCMD, bytes(PCMD.SIZE))
        result = self._encls(EnclsLeaf.EWB, self._pageinfo(0, _SRCPAGE, _PCMD), rcx, rdx)
        out: Outputs = {}
        if result.status.ok or result.status.cf:
            out = {"pcmd": self.memory.read(_PCMD, PCMD.SIZE).hex(),
                   "page": self.memory.read(_SRCPAGE, PAGE_SIZE).hex(),
                   "linaddr": int.from_bytes(self.memory.read(_PAGEINFO, 8), "little")}
        return result, out

    def _load(self, op: Op, leaf: EnclsLeaf) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc")
        rdx = self._va_slot(op)
        secs = self.epc_pa(op, "secs_epc") if op.has("secs_epc") else 0
        if op.has("evicted"):
            source = op.integer("evicted", hi=len(self._results) - 1 if self._results else 0)
            earlier = self._results[source] if source < len(self._results) else {}
            if earlier.get("op") != "EWB" or "pcmd" not in earlier:
                raise op.error("evicted", f"ops[{source}] is not an EWB that wrote a page")
            pcmd, page = bytes.fromhex(earlier["pcmd"]), bytes.fromhex(earlier["page"])
            linaddr = op.integer("linaddr", earlier["linaddr"])
        else:
            pcmd = op.hexbytes("pcmd", PCMD.SIZE)
            page = op.page("page", default_fill=None)
            linaddr = op.integer("linaddr", 0)
        self.memory.write(_SRCPAGE, page)
        self.memory.write(_PCMD, pcmd)
        return self._encls(leaf, self._pageinfo(linaddr, _SRCPAGE, _PCMD, secs), rcx, rdx), {}

    def _eldu(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._load(op, EnclsLeaf.ELDU)

    def _eldb(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._load(op, EnclsLeaf.ELDB)

    def _eaug(self, op: Op) -> tuple[LeafResult, Outputs]:
        rcx = self.epc_pa(op, "epc")
        secs = self.epc_pa(op, "secs_epc")
        pageinfo = self._pageinfo(op.integer("linaddr"), 0, 0, secs)
        return self._encls(EnclsLeaf.EAUG, pageinfo, rcx), {}

    def _emodpr(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._encls(EnclsLeaf.EMODPR, self._secinfo(op), self.epc_pa(op, "epc")), {}

    def _emodt(self, op: Op) -> tuple[LeafResult, Outputs]:
        return self._encls(EnclsLeaf.EMODT, self._secinfo(op), self.epc_pa(op, "epc")), {}

    # -- ENCLU -------------------------------------------------------------------------------

    def _ereport(self, op: Op) -> tuple[None, Outputs]:
        target = op.struct("targetinfo", TARGETINFO, {})
        data = op.hexbytes("reportdata", 64, bytes(64))
        ctx = self._context(op)
        return None, {"report": report(self.cpu, ctx, target, data).to_bytes().hex()}

    def _egetkey(self, op: Op) -> tuple[LeafStatus, Outputs]:
        request = op.struct("keyrequest", KEYREQUEST, {})
        status, key = getkey(self.cpu, self._context(op), request)
        return status, ({"key": key.hex()} if key is not None else {})

    def _eaccept(self, op: Op) -> tuple[LeafStatus, Outputs]:
        secinfo, linaddr = op.struct("secinfo", SECINFO), op.integer("linaddr")
        return accept(self.cpu, self._context(op), secinfo, linaddr), {}

    def _eacceptcopy(self, op: Op) -> tuple[LeafStatus, Outputs]:
        secinfo, dest, src = op.struct("secinfo", SECINFO), op.integer("linaddr"), op.integer("src")
        return accept_copy(self.cpu, self._context(op), secinfo, dest, src), {}

    def _emodpe(self, op: Op) -> tuple[None, Outputs]:
        secinfo, linaddr = op.struct("secinfo", SECINFO), op.integer("linaddr")
        modpe(self.cpu, self._context(op), secinfo, linaddr)
        return None, {}

    # -- MSRs --------------------------------------------------------------------------------

    def _wrmsr(self, op: Op) -> tuple[None, Outputs]:
        self.cpu.lps[0].msrs.wrmsr(op.integer("msr", hi=0xFFFF_FFFF), op.integer("value"))
        return None, {}

    def _rdmsr(self, op: Op) -> tuple[None, Outputs]:
        return None, {"value": self.cpu.lps[0].msrs.rdmsr(op.integer("msr", hi=0xFFFF_FFFF))}


_ENCLU = ("secs_epc", "tcs")
OPERANDS: dict[str, tuple[str, ...]] = {
    "ECREATE": ("epc", "secs", "secinfo"),
    "EADD": ("epc", "secs_epc", "linaddr", "secinfo", "page"),
    "EEXTEND": ("secs_epc", "epc", "offset"),
    "EINIT": ("secs_epc", "sigstruct", "einittoken", "lehash"),
    "EREMOVE": ("epc",),
    "EDBGRD": ("epc", "offset"),
    "EDBGWR": ("epc", "offset", "data"),
    "EPA": ("epc", "rbx"),
    "EBLOCK": ("epc",),
    "ETRACK": ("secs_epc",),
    "EWB": ("epc", "va_epc", "va_slot"),
    "ELDU": ("epc", "va_epc", "va_slot", "secs_epc", "evicted", "pcmd", "page", "linaddr"),
    "ELDB": ("epc", "va_epc", "va_slot", "secs_epc", "evicted", "pcmd", "page", "linaddr"),
    "EAUG": ("epc", "secs_epc", "linaddr"),
    "EMODPR": ("epc", "secinfo"),
    "EMODT": ("epc", "secinfo"),
    "EREPORT": (*_ENCLU, "targetinfo", "reportdata"),
    "EGETKEY": (*_ENCLU, "keyrequest"),
    "EACCEPT": (*_ENCLU, "secinfo", "linaddr"),
    "EACCEPTCOPY": (*_ENCLU, "secinfo", "linaddr", "src"),
    "EMODPE": (*_ENCLU, "secinfo", "linaddr"),
    "WRMSR": ("msr", "value"),
    "RDMSR": ("msr",),
}
"""The operands each op takes; any other key is refused before the script runs."""


def op_hex(op: Op, key: str, value: object, size: int) -> bytes:
    try:
        return parse_hex(value, size, op.path(key))
    except StructError as exc:
        raise ScriptError(str(exc)) from None


def _expect_dict(op: Op, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise op.error(key, "expected an object")
    return value


def _from_dict(cls: type[_S], fields: dict[str, Any], where: str) -> _S:
    try:
        return cls.from_dict(fields, where=where)
    except StructError as exc:
        raise ScriptError(str(exc)) from None


def run_script(text: str) -> list[Outputs]:
    """Parse and run a script's JSON text; ScriptError if it is malformed."""
    from vsgx.isa.script import load_script

    spec, ops = load_script(text)
    return IsaRunner(spec).run(ops)


__all__ = ["EPC_BASE", "IsaRunner", "run_script", "today_bcd"]
