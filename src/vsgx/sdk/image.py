"""An enclave image: the ELF, its configuration and the resulting layout, and the two things
computed from them without any SGX machine: MRENCLAVE and the SIGSTRUCT.

The measurement goes through :class:`vsgx.crypto.MeasurementBuilder`, the same streaming
builder the emulated ECREATE/EADD/EEXTEND feed, in the order the loader adds the pages (SDM
38.7.2: ECREATE, then EADD and EEXTEND page by page).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.arch import ATTRIBUTES, PAGE_SIZE, SECS, SIGSTRUCT, StructError
from vsgx.crypto import MeasurementBuilder, sign_sigstruct, verify_sigstruct
from vsgx.sdk.config import EnclaveConfig
from vsgx.sdk.elf import EnclaveElf, ImageError
from vsgx.sdk.layout import Layout, compute_layout

SIGSTRUCT_SUFFIX = ".sig"


def sigstruct_path(enclave: str | Path) -> Path:
    """Where ``vsgx sign`` puts an enclave's SIGSTRUCT: beside it, ``.sig`` appended."""
    path = Path(enclave)
    return path.with_name(path.name + SIGSTRUCT_SUFFIX)


def bcd_date(day: datetime.date) -> int:
    """SIGSTRUCT.DATE: yyyymmdd in BCD (SDM Table 38-19)."""
    return int(f"{day.year:04d}{day.month:02d}{day.day:02d}", 16)


@dataclass(frozen=True)
class EnclaveImage:
    """An enclave as the signer and the loader see it."""

    elf: EnclaveElf
    config: EnclaveConfig
    layout: Layout
    name: str

    @classmethod
    def from_elf(cls, elf: EnclaveElf, config: EnclaveConfig | None = None, *,
                 name: str = "enclave") -> EnclaveImage:
        """``config`` overrides the embedded configuration; without either, defaults."""
        chosen = config or elf.config or EnclaveConfig()
        return cls(elf, chosen, compute_layout(elf, chosen, where=name), name)

    @classmethod
    def load(cls, path: str | Path, config: EnclaveConfig | None = None) -> EnclaveImage:
        return cls.from_elf(EnclaveElf.read(path), config, name=str(path))

    def secs(self, baseaddr: int = 0) -> SECS:
        """The SECS ECREATE gets (identity fields are EINIT's to fill)."""
        return SECS(size=self.layout.size, baseaddr=baseaddr,
                    ssaframesize=self.layout.ssa_frame_size, miscselect=self.config.miscselect,
                    attributes=ATTRIBUTES(self.config.attribute_flags, self.config.xfrm))

    def measure(self) -> bytes:
        """MRENCLAVE: ECREATE, then every added page in layout order (EADD + 16 EEXTENDs)."""
        builder = MeasurementBuilder()
        builder.ecreate(self.layout.ssa_frame_size, self.layout.size)
        for region in self.layout.added:
            count = region.size // PAGE_SIZE
            builder.add_pages([region.offset + k * PAGE_SIZE for k in range(count)],
                              region.secinfo, region.data, True)
        return builder.digest()

    def sigstruct_body(self, date: int) -> SIGSTRUCT:
        """The unsigned SIGSTRUCT for this image (SDM 38.13)."""
        cfg = self.config
        return SIGSTRUCT(vendor=cfg.vendor, date=date, miscselect=cfg.miscselect,
                         miscmask=cfg.miscmask,
                         attributes=ATTRIBUTES(cfg.attribute_flags, cfg.xfrm),
                         attributemask=ATTRIBUTES(cfg.attributemask, cfg.xfrmmask),
                         enclavehash=self.measure(), isvprodid=cfg.isvprodid,
                         isvsvn=cfg.isvsvn)

    def sign(self, key: rsa.RSAPrivateKey, *, date: datetime.date | None = None) -> SIGSTRUCT:
        """A SIGSTRUCT signed with ``key`` (RSA-3072, e = 3), dated ``date`` (today)."""
        day = date or datetime.datetime.now(datetime.UTC).date()
        return sign_sigstruct(self.sigstruct_body(bcd_date(day)), key)


def read_sigstruct(path: str | Path) -> SIGSTRUCT:
    """The SIGSTRUCT in ``path``, checked for size, reserved bytes and signature."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        sig = SIGSTRUCT.from_bytes(raw)
    except StructError as exc:
        raise ImageError(f"{path}: {exc}") from None
    if not verify_sigstruct(sig):
        raise ImageError(f"{path}: the SIGSTRUCT's signature does not verify")
    return sig
