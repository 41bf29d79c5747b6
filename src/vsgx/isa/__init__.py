"""``vsgx isa``: run a JSON script of SGX leaf invocations on a fresh emulated platform."""

from __future__ import annotations

from vsgx.isa.runner import EPC_BASE, IsaRunner, run_script
from vsgx.isa.script import PlatformSpec, ScriptError, load_script

__all__ = ["EPC_BASE", "IsaRunner", "PlatformSpec", "ScriptError", "load_script", "run_script"]
