"""``vsgx.Machine``: a virtual SGX machine with vsgx's Linux guest in it.

The platform layer (:class:`vsgx.platform.machine.VirtualMachine`) is the hardware and
firmware; this class adds the guest operating system, booted when the machine starts (and again
after a reset):

    with vsgx.Machine.from_args(["-machine", "q35", "-cpu", "host", ...]) as vm:
        vm.start()
        vm.guest.dmesg
        process = vm.guest.spawn()

``vm.stop()`` (or leaving the ``with`` block, or :meth:`close`) shuts the machine down;
QMP's ``stop``, which only pauses it, is ``vm.pause()``.
"""

from __future__ import annotations

from vsgx.guest import GuestOS, boot
from vsgx.platform.machine import MachineError, VirtualMachine


class Machine(VirtualMachine):
    """A :class:`VirtualMachine` that boots vsgx's Linux guest."""

    _guest: GuestOS | None = None

    @property
    def guest(self) -> GuestOS:
        """The running guest operating system (after :meth:`start`)."""
        if self._guest is None:
            raise MachineError("the guest has not booted: start the machine first")
        return self._guest

    def check_migratable(self) -> None:
        """Refuse to migrate while the guest runs processes: their address spaces, files and
        enclave bookkeeping are Python objects that the migration stream does not carry yet,
        and dropping them silently would lose them. A guest without processes migrates
        completely: its boot state follows from the configuration, so the destination boots
        its own guest and then receives the RAM (QEMU's equivalent is a migration blocker,
        ``migrate_add_blocker``)."""
        if self._guest is not None and (count := len(self._guest.processes)):
            raise MachineError(f"migration of guest processes is not supported yet (the "
                               f"guest runs {count} process{'es' if count > 1 else ''}; "
                               "exit them first)")

    def boot_guest(self) -> None:
        if self._guest is not None:  # a reset: the old kernel and its processes are gone
            self._guest.shutdown()
        self._guest = GuestOS(boot(self), self)

    def close(self) -> None:
        if self._guest is not None:
            self._guest.shutdown()
        super().close()
