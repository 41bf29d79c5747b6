"""The enclave gate: one vCPU at a time per enclave, handed over in arrival order, and a
holder that keeps its turn past a quantum while others wait is interrupted."""

from __future__ import annotations

import threading
import time

from vsgx.engine.gate import QUANTUM, EnclaveGate, EnclaveGates


class FakeVcpu:
    def __init__(self, gate: EnclaveGate) -> None:
        self.gate = gate
        self.interrupts = 0

    def interrupt(self) -> None:
        self.interrupts += 1
        self.gate.leave(self)  # the holder takes an AEX and gives its turn back


def test_one_holder_and_arrival_order() -> None:
    gate = EnclaveGate()
    a, b, c = (FakeVcpu(gate) for _ in range(3))
    gate.enter(a)
    order: list[str] = []
    threads = [threading.Thread(target=lambda v=v, n=n: (gate.enter(v), order.append(n)))
               for v, n in ((b, "b"), (c, "c"))]
    threads[0].start()
    time.sleep(QUANTUM / 4)
    threads[1].start()
    for t in threads:
        t.join(timeout=5)
    # a kept the turn past the quantum: interrupted; b then c in the order they came
    assert a.interrupts >= 1
    assert order[0] == "b"


def test_leave_by_a_non_holder_changes_nothing() -> None:
    gate = EnclaveGate()
    a, b = FakeVcpu(gate), FakeVcpu(gate)
    gate.enter(a)
    gate.leave(b)
    done = threading.Event()
    t = threading.Thread(target=lambda: (gate.enter(b), done.set()))
    t.start()
    assert not done.wait(QUANTUM / 4)  # still a's turn
    gate.leave(a)
    assert done.wait(5)
    t.join()


def test_gates_are_per_enclave() -> None:
    gates = EnclaveGates()
    assert gates[1] is gates[1] and gates[1] is not gates[2]
