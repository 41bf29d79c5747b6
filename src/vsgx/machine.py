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

Migration carries the guest too (the stream's ``guest`` section, :mod:`vsgx.guest.migration`):
the destination boots its own guest from its configuration, receives RAM and vCPU state, and
then takes over the source guest's kernel state and processes, which a program finds again by
pid::

    src.migrate(dest)
    process = dest.guest.process(pid)

The enclaves' EPC stays behind: their next EENTER faults with PFEC.SGX. vDSO user handlers
(host-side Python callables) do not migrate and must be registered again.
"""

from __future__ import annotations

from collections.abc import Callable

from vsgx.guest import GuestOS, boot
from vsgx.guest.migration import GuestStateError, load_guest, parse_guest, save_guest
from vsgx.platform.machine import MachineError, VirtualMachine
from vsgx.platform.migration import MigrationStreamError

_LOAD_FAILED = "load of migration failed: Invalid argument"


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
        """Refuse to migrate while a guest thread runs on a vCPU (inside
        ``__vdso_sgx_enter_enclave``): that call's state is the calling host thread's, which
        no stream can carry (QEMU would stop the vCPU; vsgx's vCPUs run on their callers'
        threads, so the caller must return first). Processes migrate, whatever they hold."""
        cpus = None if self._guest is None else self._guest.cpus
        if cpus is not None and (busy := cpus.busy):
            raise MachineError(f"cannot migrate while {busy} guest thread"
                               f"{'s run' if busy > 1 else ' runs'} on a vCPU (inside "
                               "__vdso_sgx_enter_enclave): let the call return first")

    def save_guest_state(self) -> bytes | None:
        """The guest kernel's state and its processes (None before the guest has booted:
        a machine still in ``prelaunch`` boots afresh wherever it goes)."""
        return None if self._guest is None else save_guest(self._guest)

    def check_guest_state(self, payload: memoryview | None) -> Callable[[], None]:
        """Parse and check the ``guest`` section against this machine's RAM and EPC before
        anything is loaded; the returned function rebuilds it in the guest the destination
        boots. A stream without one (from a bare platform or a machine not yet booted)
        leaves the booted guest as it is."""
        if payload is None:
            return lambda: None
        ram = [(base, len(region)) for base, region in self.ram.regions()]
        epc = [(s.addr, s.size, s.node) for s in self.layout.epc_sections]
        try:
            image = parse_guest(payload, ram, epc)
        except GuestStateError as exc:
            raise MigrationStreamError(f"{_LOAD_FAILED} ({exc})") from None

        def load() -> None:
            try:
                load_guest(self.guest, image)
            except GuestStateError as exc:
                raise MachineError(f"{_LOAD_FAILED} ({exc})") from None
        return load

    def quiesce_guest(self) -> None:
        """Take the vCPUs back from threads inside enclaves (an AEX each), so the reset finds
        none running; they resume after the reboot, where their enclaves' EPC is gone."""
        if self._guest is not None and self._guest.cpus is not None:
            self._guest.cpus.quiesce()

    def boot_guest(self) -> None:
        if self._guest is not None:  # a reset: the old kernel and its processes are gone
            self._guest.shutdown()
        self._guest = GuestOS(boot(self), self)

    def close(self) -> None:
        if self._guest is not None:
            self._guest.shutdown()
        super().close()
