"""A guest process and its system calls, named after them and with their Linux semantics:
``open``, ``close``, ``ioctl``, ``mmap``, ``mprotect``, ``munmap``, and ``/proc/PID/mem``
access (:meth:`Process.read_memory`, :meth:`Process.write_memory`). A failed call raises
``OSError(errno, strerror)`` with the Linux errno (:mod:`vsgx.guest.uapi`).

Arguments are what the registers would hold: integers are taken modulo 2^64 (ioctl requests
modulo 2^32), so ``-1`` is ``0xffff_ffff_ffff_ffff`` as in C.

The guest has no filesystem beyond its SGX device nodes: ``open`` of anything else is ENOENT.
File descriptors are numbered from 0, lowest free first (the model has no standard streams).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from vsgx.arch import PAGE_SIZE, Vector
from vsgx.guest.memory import PhysicalMemory
from vsgx.guest.mm import AddressSpace
from vsgx.guest.uapi import MAP_ANONYMOUS, Errno, syscall_error
from vsgx.guest.vdso import VDSO_BASE, GuestFault, UserHandler, VcpuPool, VdsoSgx
from vsgx.guest.vfs import File, FileOperations

_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


class Process:
    """A process of the guest: an address space and a file-descriptor table.

    ``node`` is the NUMA node it runs on, where the kernel allocates its EPC pages first.
    ``mm`` is its address space, which is also what an execution engine runs it on
    (:meth:`AddressSpace.translate`, :meth:`AddressSpace.handle_fault`).
    """

    def __init__(self, pid: int, memory: PhysicalMemory, devices: Mapping[str, FileOperations],
                 node: int = 0, *, cpus: VcpuPool | None = None) -> None:
        self.pid = pid
        self.node = node
        self._mm = AddressSpace(memory, node)
        self._devices = devices
        self._files: dict[int, File] = {}
        self._lock = threading.Lock()
        self._cpus = cpus
        self._vdso: VdsoSgx | None = None
        self.exited = False
        """Whether :meth:`exit` has run."""

    # -- the vDSO -----------------------------------------------------------------------------

    def vdso_sgx_enter_enclave(self, rdi: int, rsi: int, rdx: int, function: int, r8: int,
                               r9: int, run: int) -> int:
        """``__vdso_sgx_enter_enclave`` with ``run`` the user address of a ``struct
        sgx_enclave_run`` (see :mod:`vsgx.guest.vdso`). The calling host thread runs on one of
        the machine's vCPUs for the length of the call."""
        return self._sgx_vdso().enter(rdi & _U64, rsi & _U64, rdx & _U64, function & _U32,
                                      r8 & _U64, r9 & _U64, run & _U64)

    def register_user_handler(self, handler: UserHandler) -> int:
        """Register a Python callable as an ``sgx_enclave_run.user_handler``; returns the
        value to store in ``run->user_handler``."""
        return self._sgx_vdso().register_handler(handler)

    def _sgx_vdso(self) -> VdsoSgx:
        """The vDSO's SGX page, mapped the first time the process uses it (Linux maps the
        vDSO at exec; mapping it late keeps the address space exactly as the process built
        it until then)."""
        if self._cpus is None:  # no SGX processor: ENCLU is #UD, the process gets SIGILL
            raise GuestFault(int(Vector.UD), 0, 0, VDSO_BASE)
        with self._lock:
            if self._vdso is None:
                self._vdso = VdsoSgx(self, self._cpus)
            return self._vdso

    def migration_state(self) -> tuple[dict[int, File], tuple[int, list[int], int] | None]:
        """The descriptor table, and the vDSO as :meth:`VdsoSgx.migration_state` gives it
        (None if the process never used it)."""
        with self._lock:
            vdso = None if self._vdso is None else self._vdso.migration_state()
            return dict(self._files), vdso

    def restore(self, files: dict[int, File], vdso: tuple[int, Sequence[int], int] | None
                ) -> None:
        """Take over a migrated process's descriptors and vDSO (its address space is
        restored through :attr:`mm`). The vDSO comes back without its user handlers."""
        with self._lock:
            self._files = dict(files)
            if vdso is not None:
                if self._cpus is None:
                    raise ValueError("a process with a vDSO needs the machine's vCPUs")
                self._vdso = VdsoSgx.adopt(self, self._cpus, *vdso)

    @property
    def mm(self) -> AddressSpace:
        """The process's address space (``current->mm``)."""
        return self._mm

    def fget(self, fd: int) -> File | None:
        """The open file behind ``fd`` (``fget``), None if ``fd`` is not open."""
        return self._files.get(fd)

    # -- files --------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        """``open(2)``: ENOENT unless ``path`` is a device node the guest registered; the
        driver's ``open`` may fail too. Returns the new descriptor."""
        ops = self._devices.get(path)
        if ops is None:
            raise syscall_error(Errno.ENOENT)
        file = File(path, ops, flags & _U32)
        ops.open(file)
        with self._lock:
            fd = next(n for n in range(len(self._files) + 1) if n not in self._files)
            self._files[fd] = file
        return fd

    def close(self, fd: int) -> None:
        """``close(2)``: EBADF if ``fd`` is not open. The file lives on while mapped."""
        with self._lock:
            file = self._files.pop(fd, None)
        if file is None:
            raise syscall_error(Errno.EBADF)
        file.put()

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        """``ioctl(2)``: EBADF if ``fd`` is not open; ``arg`` is a user address the driver
        copies its struct from (and results back to). Returns the driver's result (0)."""
        file = self.fget(fd)
        if file is None:
            raise syscall_error(Errno.EBADF)
        return file.ops.ioctl(file, self, request & _U32, arg & _U64)

    # -- memory -------------------------------------------------------------------------------

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int:
        """``mmap(2)`` (x86-64 ``sys_mmap``): EINVAL for an unaligned ``offset``; EBADF when a
        file mapping names a descriptor that is not open (``fd`` is ignored with
        MAP_ANONYMOUS); then :meth:`AddressSpace.mmap`. Returns the mapping's address."""
        offset &= _U64
        if offset % PAGE_SIZE:
            raise syscall_error(Errno.EINVAL)
        flags &= _U64
        file = None
        if not flags & MAP_ANONYMOUS:
            file = self.fget(fd)
            if file is None:
                raise syscall_error(Errno.EBADF)
        return self._mm.mmap(addr & _U64, length & _U64, prot & _U64, flags, file,
                             offset // PAGE_SIZE)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """``mprotect(2)``: see :meth:`AddressSpace.mprotect`."""
        self._mm.mprotect(addr & _U64, length & _U64, prot & _U64)

    def munmap(self, addr: int, length: int) -> None:
        """``munmap(2)``: see :meth:`AddressSpace.munmap`."""
        self._mm.munmap(addr & _U64, length & _U64)

    def read_memory(self, addr: int, n: int) -> bytes:
        """``pread`` of ``/proc/PID/mem``: ordinary pages whatever their protection, enclave
        pages of a DEBUG enclave through EDBGRD. Returns fewer bytes when an inaccessible page
        stops the read after some bytes; EIO when not even the first byte can be read (an
        unmapped address, a production enclave)."""
        buf = bytearray(n)
        done = self._mm.access_remote(addr & _U64, memoryview(buf), write=False)
        if n and not done:
            raise syscall_error(Errno.EIO)
        return bytes(buf[:done])

    def write_memory(self, addr: int, data: bytes) -> int:
        """``pwrite`` of ``/proc/PID/mem``: like :meth:`read_memory` (EDBGWR for enclave
        pages; a read-only shared mapping cannot be written). Returns the bytes written."""
        done = self._mm.access_remote(addr & _U64, memoryview(bytearray(data)), write=True)
        if data and not done:
            raise syscall_error(Errno.EIO)
        return done

    # -- exit ---------------------------------------------------------------------------------

    def exit(self) -> None:
        """``exit(2)``: close every descriptor and tear the address space down; enclaves that
        are no longer open or mapped anywhere are destroyed."""
        with self._lock:
            self.exited = True
            files = list(self._files.values())
            self._files.clear()
        for file in files:
            file.put()
        self._mm.exit_mmap()
