"""One vCPU at a time inside an enclave: atomicity for enclave code on several vCPUs.

Each Vcpu is its own Unicorn instance, and Unicorn translates guest code without QEMU's
parallel-TCG mode, so a ``lock``-prefixed instruction or ``xchg`` is a plain load and store:
two vCPUs running the same enclave at once could interleave inside each other's atomic
operations and lose updates (a spin lock's release, a counter). Hardware guarantees those
operations (SDM Vol. 3A 9.1.2.2), and an enclave's threads rely on them.

So the vCPUs inside one enclave take turns, as QEMU's single-threaded TCG runs its vCPUs
round-robin: a vCPU entering enclave mode (EENTER, ERESUME) waits for the enclave's gate and
gives it back when it leaves (EEXIT, AEX). A waiter that has waited a whole :data:`QUANTUM`
interrupts the holder, which takes an asynchronous exit (a timer interrupt, as far as the
enclave can tell), re-enters with ERESUME and queues behind it; the gate passes to waiters in
arrival order. Enclaves do not share memory with each other, so different enclaves still
run in parallel.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

QUANTUM = 0.02
"""Seconds a vCPU may keep an enclave to itself while another waits for it. Preemption is an
interrupt, and an interrupt that lands on a memory read-modify-write instruction can make
Unicorn run that instruction again after ERESUME (an asynchronous ``uc_emu_stop`` is honoured
with RIP not yet past an instruction that has executed; unicorn-engine/unicorn#1355, still in
2.1.4 for x86: ``cpu_tb_exec`` in ``qemu/accel/tcg/cpu-exec.c`` skips
``synchronize_from_tb`` when ``stop_request`` is set, so a chain of translation blocks stopped
from outside keeps the last RIP it stored), so turns are long and preemption rare."""


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class EnclaveGate:
    """The turn to run inside one enclave."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: Interruptible | None = None
        self._waiting: deque[Interruptible] = deque()

    def enter(self, vcpu: Interruptible) -> None:
        """Wait for ``vcpu``'s turn; preempt a holder that keeps the turn past a quantum."""
        with self._cond:
            if self._holder is None and not self._waiting:
                self._holder = vcpu
                return
            self._waiting.append(vcpu)
            while self._holder is not vcpu:
                if not self._cond.wait(QUANTUM) and self._holder is not None:
                    self._holder.interrupt()

    def leave(self, vcpu: Interruptible) -> None:
        """Give the turn to the longest waiter."""
        with self._cond:
            if self._holder is not vcpu:
                return
            self._holder = self._waiting.popleft() if self._waiting else None
            self._cond.notify_all()


class EnclaveGates:
    """The gates of one processor's enclaves, by SECS page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[int, EnclaveGate] = {}

    def __getitem__(self, secs: int) -> EnclaveGate:
        with self._lock:
            gate = self._gates.get(secs)
            if gate is None:
                gate = self._gates[secs] = EnclaveGate()
            return gate
