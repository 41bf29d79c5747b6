"""The enclave SDK: the configuration and layout of an enclave image, its measurement and
signature, the C toolchain and trusted runtime, the loader and the untrusted runtime.

Typical use, in a program run by ``vsgx run … -- PROGRAM.py`` or with a machine of your own::

    from vsgx.sdk import Enclave
    proc = vm.guest.spawn()
    with Enclave.load(proc, "hello.elf", key=key, ocalls={"print": show}) as enclave:
        enclave.ecall("hello", b"world")
"""

from __future__ import annotations

from vsgx.sdk.config import ConfigError, EnclaveConfig
from vsgx.sdk.elf import EnclaveElf, ImageError
from vsgx.sdk.image import EnclaveImage, read_sigstruct, sigstruct_path
from vsgx.sdk.layout import Layout, Region, Thread, compute_layout
from vsgx.sdk.loader import LoadedEnclave, LoadError, load
from vsgx.sdk.pages import PageIoctlError
from vsgx.sdk.toolchain import BuildError, build
from vsgx.sdk.urts import (
    EcallError,
    Enclave,
    EnclaveError,
    EnclaveFault,
    EnclaveLost,
    OcallContext,
    OcallError,
)

__all__ = [
    "BuildError", "ConfigError", "EcallError", "Enclave", "EnclaveConfig", "EnclaveElf",
    "EnclaveError", "EnclaveFault", "EnclaveImage", "EnclaveLost", "ImageError", "Layout",
    "LoadError", "LoadedEnclave", "OcallContext", "OcallError", "PageIoctlError", "Region",
    "Thread", "build",
    "compute_layout", "load", "read_sigstruct", "sigstruct_path",
]
