"""Open files as the guest kernel's VFS keeps them: ``struct file`` (:class:`File`) with its
reference count, and ``struct file_operations`` (:class:`FileOperations`), whose default
methods behave like the operations a driver leaves NULL (``include/linux/fs.h``,
``fs/ioctl.c`` ``vfs_ioctl``, ``mm/mmap.c`` ``do_mmap``).

A file is referenced by every descriptor and every mapping of it; ``release`` runs when the
last reference goes (``fput``), which for ``/dev/sgx_enclave`` is when the enclave dies.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from vsgx.guest.uapi import O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY, Errno, syscall_error

if TYPE_CHECKING:
    from vsgx.guest.mm import AddressSpace, Vma


class Task(Protocol):
    """The calling process as a driver sees it (``current``): its memory and its files."""

    @property
    def mm(self) -> AddressSpace: ...

    def fget(self, fd: int) -> File | None: ...


class FileOperations:
    """A driver's file operations. Every method here is what Linux does when the driver leaves
    that operation NULL; drivers override the ones they implement."""

    def open(self, file: File) -> None:
        """Set up per-open state in ``file.private_data`` (NULL ``open``: nothing to do)."""

    def release(self, file: File) -> None:
        """The last reference to ``file`` is gone (NULL ``release``: nothing to do)."""

    def ioctl(self, file: File, current: Task, request: int, arg: int) -> int:
        """``unlocked_ioctl``; NULL makes ``vfs_ioctl`` fail with ENOTTY."""
        raise syscall_error(Errno.ENOTTY)

    def get_unmapped_area(self, file: File, mm: AddressSpace, addr: int, length: int,
                          flags: int) -> int:
        """Where to map ``file``; NULL means the process's default (``mm_get_unmapped_area``)."""
        return mm.arch_get_unmapped_area(addr, length, flags)

    def mmap(self, file: File, mm: AddressSpace, vma: Vma) -> None:
        """Set up ``vma`` (its ``ops`` and flags) for a mapping of ``file``; NULL makes
        ``do_mmap`` fail with ENODEV."""
        raise syscall_error(Errno.ENODEV)


class File:
    """An open file (``struct file``): its path, access mode, operations and driver state.

    It starts with the one reference the opening descriptor holds (or ``refs``, for a file a
    migration brings back with its descriptors and mappings); :meth:`get` and :meth:`put`
    add and drop references (descriptors, mappings).
    """

    def __init__(self, path: str, ops: FileOperations, flags: int, *, refs: int = 1) -> None:
        self.path = path
        self.ops = ops
        self.flags = flags
        mode = flags & O_ACCMODE
        self.readable = mode in (O_RDONLY, O_RDWR)
        """FMODE_READ."""
        self.writable = mode in (O_WRONLY, O_RDWR)
        """FMODE_WRITE."""
        self.private_data: object = None
        self._refs = refs
        self._lock = threading.Lock()

    def get(self) -> File:
        """Take another reference (``get_file``)."""
        with self._lock:
            self._refs += 1
        return self

    def put(self) -> None:
        """Drop a reference (``fput``); the last one runs the driver's ``release``."""
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            self.ops.release(self)
