"""``vsgx.Machine``: a virtual SGX machine with vsgx's Linux guest in it.

The platform layer (:class:`vsgx.platform.machine.VirtualMachine`) is the hardware and
firmware; this class adds the guest operating system, booted when the machine starts (and again
after a reset):

    vm = vsgx.Machine.from_args(["-machine", "q35", "-cpu", "host", ...])
    vm.start()
    vm.guest.dmesg
    vm.stop()   # or use the machine as a context manager
"""

from __future__ import annotations

from vsgx.guest import GuestKernel, boot
from vsgx.platform.machine import MachineError, VirtualMachine


class Machine(VirtualMachine):
    """A :class:`VirtualMachine` that boots vsgx's Linux guest."""

    _guest: GuestKernel | None = None

    @property
    def guest(self) -> GuestKernel:
        """The running guest's kernel (after :meth:`start`)."""
        if self._guest is None:
            raise MachineError("the guest has not booted: start the machine first")
        return self._guest

    def boot_guest(self) -> None:
        self._guest = boot(self)
