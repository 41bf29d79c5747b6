"""The x86-64 execution engine with SGX enclave mode, on Unicorn (ARCHITECTURE decisions 2-5).

:class:`Vcpu` runs guest code for one logical processor of an
:class:`~vsgx.cpu.SgxProcessor` in one host thread: ``vcpu.run(aspace, regs, stop_at=...)``
executes until ``stop_at`` or until something needs the OS, and says which in an
:class:`Exit`. ``aspace`` is the process's page tables (:class:`AddressSpace`); ``regs`` the
:class:`Registers` it starts from and, on return, ends with. EENTER, EEXIT, ERESUME and AEX
happen inside a run; an exception in enclave mode comes back as an exit after its AEX.

This package is the only importer of ``unicorn``.
"""

from __future__ import annotations

from vsgx.engine.exits import Exit, ExitReason
from vsgx.engine.native import UnicornError
from vsgx.engine.registers import Registers
from vsgx.engine.translate import PERM_R, PERM_W, PERM_X, AddressSpace
from vsgx.engine.vcpu import Cpuid, EngineError, Vcpu

__all__ = ["PERM_R", "PERM_W", "PERM_X", "AddressSpace", "Cpuid", "EngineError", "Exit",
           "ExitReason", "Registers", "UnicornError", "Vcpu"]
