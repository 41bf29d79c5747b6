"""The untrusted runtime: an enclave loaded in a guest process, called like a library.

:meth:`Enclave.ecall` enters through the process's vDSO (``__vdso_sgx_enter_enclave``) on a
free TCS, with the arguments in the thread's shared area (``abi.h``): integers as they are,
``bytes``-like arguments copied into untrusted memory and passed by address (a ``bytearray``
is copied back afterwards, so the enclave can fill it). Until the enclave returns, the runtime
serves what comes out of it:

* an ocall (EEXIT with VSGX_EXIT_OCALL): the Python callable registered under its name runs
  with an :class:`OcallContext` and the integer arguments; its result goes back in with
  VSGX_CMD_ORET. A callable that raises makes the enclave's ``vsgx_ocall`` fail, and the
  ecall then raises :class:`OcallError` from that exception;
* an exception inside the enclave (the vDSO reports it after the AEX): the runtime enters the
  same TCS on its next SSA frame (VSGX_CMD_EXCEPTION, CSSA > 0) so the enclave's own handlers
  can fix it, then ERESUMEs. When no handler takes it the ecall is abandoned and
  :class:`EnclaveFault` carries the vector, error code and address;
* the loss of the enclave's EPC (after a reset or a migration: EENTER or ERESUME faults with
  #PF): :class:`EnclaveLost`; with ``recover=True`` (the default) the enclave has already been
  rebuilt from the same image and SIGSTRUCT (same MRENCLAVE, fresh state) when it is raised.

After a migration the guest process lives on in the destination machine as another
:class:`~vsgx.guest.process.Process` object with the same pid: :meth:`Enclave.migrated` points
the enclave at it, and the next ecall then finds the EPC gone as above.

Ecalls may come from several host threads at once, one TCS each; a thread waits while all
TCSs are busy.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from vsgx.arch import PAGE_SIZE, SIGSTRUCT, EncluLeaf, Pfec, Vector
from vsgx.crypto.sigstruct import mrsigner
from vsgx.guest.process import Process
from vsgx.guest.uapi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
    SGX_PAGE_TYPE_TCS,
    SGX_PAGE_TYPE_TRIM,
    SGX_SECINFO_PERMISSION_MASK,
    SGX_SECINFO_R,
    SGX_SECINFO_W,
)
from vsgx.guest.vdso import RUN_SIZE
from vsgx.sdk import abi, pages
from vsgx.sdk.config import EnclaveConfig
from vsgx.sdk.elf import ImageError
from vsgx.sdk.image import EnclaveImage, read_sigstruct, sigstruct_path
from vsgx.sdk.loader import LoadedEnclave, load

_U64 = (1 << 64) - 1
_RUN = struct.Struct("<QIHHQQQ")
_ARGS = struct.Struct(f"<{abi.MAX_ARGS}Q")
_RET = struct.Struct("<Q")
_ARENA_MIN = 1 << 20

Arg = int | bytes | bytearray | memoryview | None
Ocall = Callable[..., int | None]


class EnclaveError(Exception):
    """Something went wrong calling an enclave."""


class EcallError(EnclaveError):
    """The trusted runtime refused the call; ``status`` is its :class:`abi.Status`."""

    def __init__(self, name: str, status: int) -> None:
        label = abi.Status(status).name if status in abi.Status._value2member_map_ else status
        super().__init__(f"ecall {name}: the trusted runtime returned {label}")
        self.status = status


class EnclaveFault(EnclaveError):
    """An exception inside the enclave that no in-enclave handler took."""

    def __init__(self, name: str, vector: int, error_code: int, address: int) -> None:
        label = Vector(vector).name if vector in Vector._value2member_map_ else str(vector)
        super().__init__(f"ecall {name}: #{label} in the enclave (vector {vector}, error code "
                         f"{error_code:#x}, address {address:#x})")
        self.vector, self.error_code, self.address = vector, error_code, address


class EnclaveLost(EnclaveError):
    """The enclave's EPC is gone (the platform was reset or the VM migrated). ``recreated``
    tells whether a fresh instance has replaced it; its secrets must be provisioned again."""

    def __init__(self, name: str, recreated: bool) -> None:
        tail = ("; it was rebuilt with the same MRENCLAVE, provision its secrets again"
                if recreated else "")
        super().__init__(f"ecall {name}: the enclave was lost (EPC gone){tail}")
        self.recreated = recreated


class OcallError(EnclaveError):
    """An ocall could not be served (unknown name, or the Python callable raised: see
    ``__cause__``)."""


@dataclass
class OcallContext:
    """What an ocall's Python callable gets first: access to the process's memory."""

    enclave: Enclave
    name: str

    def read(self, addr: int, size: int) -> bytes:
        return self.enclave.process.read_memory(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.enclave.process.write_memory(addr, data)


@dataclass
class _Slot:
    """One TCS and the untrusted memory that goes with it: the shared area and the run
    struct, whose first pages the runtime keeps pinned and accesses directly, as a native
    runtime's own loads and stores would."""

    index: int
    shared: int
    run: int
    shared_page: memoryview
    run_page: memoryview
    arena: int = 0
    arena_size: int = 0
    broken: bool = False


class _Exit(threading.local):
    rdi: int = 0
    rsi: int = 0


class Enclave:
    """An enclave in a guest process. Create with :meth:`load`."""

    def __init__(self, process: Process, image: EnclaveImage, sigstruct: SIGSTRUCT, *,
                 ocalls: Mapping[str, Ocall] | None = None, recover: bool = True) -> None:
        self.process = process
        self.image = image
        self.sigstruct = sigstruct
        self.recover = recover
        self.generation = 0
        """How many times the enclave was rebuilt after a loss."""
        self._ocalls: dict[str, Ocall] = dict(ocalls or {})
        self._exit = _Exit()
        self._handler = process.register_user_handler(self._on_exit)
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._held = threading.local()
        self._loaded: LoadedEnclave | None = load(process, image, sigstruct)
        self._slots = [self._new_slot(i) for i in range(image.config.tcs_count)]
        self._idle = list(self._slots)

    @classmethod
    def load(cls, process: Process, path: str | Path, *, sigstruct: SIGSTRUCT | None = None,
             key: rsa.RSAPrivateKey | None = None, config: EnclaveConfig | None = None,
             ocalls: Mapping[str, Ocall] | None = None, recover: bool = True) -> Enclave:
        """Load the enclave ELF at ``path`` into ``process``. The SIGSTRUCT is ``sigstruct``,
        else one signed now with ``key``, else the one ``vsgx sign`` wrote beside the ELF.
        ``config`` replaces the embedded configuration (a SIGSTRUCT signed for another layout
        then fails EINIT with SGX_INVALID_MEASUREMENT)."""
        image = EnclaveImage.load(path, config)
        if sigstruct is None:
            if key is not None:
                sigstruct = image.sign(key)
            else:
                sig_file = sigstruct_path(path)
                if not sig_file.exists():
                    raise ImageError(f"{path}: no SIGSTRUCT ({sig_file} does not exist); sign "
                                     "it with 'vsgx sign --key KEY.pem' or pass a key")
                sigstruct = read_sigstruct(sig_file)
        return cls(process, image, sigstruct, ocalls=ocalls, recover=recover)

    # -- identity -----------------------------------------------------------------------------

    @property
    def mrenclave(self) -> bytes:
        return self.sigstruct.enclavehash

    @property
    def mrsigner(self) -> bytes:
        return mrsigner(self.sigstruct.modulus)

    @property
    def base(self) -> int:
        return self._current().base

    @property
    def ecalls(self) -> tuple[str, ...]:
        return self.image.elf.ecalls

    def register_ocall(self, name: str, fn: Ocall) -> None:
        """Serve the enclave's ``vsgx_ocall(name, …)`` with ``fn(context, *args)``."""
        if not name or len(name.encode()) > abi.OCALL_NAME_MAX:
            raise ValueError(f"ocall names are 1 to {abi.OCALL_NAME_MAX} bytes")
        self._ocalls[name] = fn

    # -- calls --------------------------------------------------------------------------------

    def ecall(self, function: str | int, *args: Arg) -> int:
        """Call ecall ``function`` (its name or index) with up to six arguments; returns its
        uint64_t result."""
        index, name = self._resolve(function)
        if len(args) > abi.MAX_ARGS:
            raise TypeError(f"ecall {name}: at most {abi.MAX_ARGS} arguments, got {len(args)}")
        slot = self._acquire(name)
        try:
            values, copy_back = self._marshal(slot, name, args)
            _ARGS.pack_into(slot.shared_page, abi.SHARED_ARGS, *values)
            result = self._run(slot, name, index)
            for addr, buffer in copy_back:
                buffer[:] = self.process.read_memory(addr, len(buffer))
            return result
        finally:
            self._release(slot)

    def _resolve(self, function: str | int) -> tuple[int, str]:
        names = self.ecalls
        if isinstance(function, int):
            if not 0 <= function < len(names):
                raise EnclaveError(f"no ecall {function}: the enclave has {len(names)}")
            return function, names[function]
        if function not in names:
            known = ", ".join(names) or "none"
            raise EnclaveError(f"no ecall named '{function}' (the enclave has: {known})")
        return names.index(function), function

    def _marshal(self, slot: _Slot, name: str,
                 args: tuple[Arg, ...]) -> tuple[list[int], list[tuple[int, bytearray]]]:
        buffers = [a for a in args if isinstance(a, bytes | bytearray | memoryview)]
        need = sum(-(-memoryview(b).nbytes // 16) * 16 for b in buffers)
        if need > slot.arena_size:
            self._grow_arena(slot, need)
        values, copy_back, cursor = [0] * abi.MAX_ARGS, [], slot.arena
        for i, arg in enumerate(args):
            if arg is None:
                continue
            if isinstance(arg, bool) or not isinstance(arg, int | bytes | bytearray | memoryview):
                raise TypeError(f"ecall {name}: argument {i} must be an int or a bytes-like "
                                f"buffer, not {type(arg).__name__}")
            if isinstance(arg, int):
                values[i] = arg & _U64
                continue
            data = bytes(memoryview(arg).cast("B"))
            self.process.write_memory(cursor, data)
            values[i] = cursor
            if isinstance(arg, bytearray):
                copy_back.append((cursor, arg))
            cursor += -(-len(data) // 16) * 16
        return values, copy_back

    def _grow_arena(self, slot: _Slot, need: int) -> None:
        size = max(_ARENA_MIN, -(-need // _ARENA_MIN) * _ARENA_MIN)
        if slot.arena:
            self.process.munmap(slot.arena, slot.arena_size)
        slot.arena = self.process.mmap(0, size, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS)
        slot.arena_size = size

    def _on_exit(self, rdi: int, rsi: int, rdx: int, rsp: int, r8: int, r9: int,
                 run: int) -> int:
        """The vDSO's user handler: keep the exit registers, return to the caller."""
        self._exit.rdi, self._exit.rsi = rdi, rsi
        return 0

    def _enter(self, slot: _Slot, leaf: int, rdi: int, rsi: int) -> tuple[int, int, int, int]:
        tcs = self._current().tcs_address(slot.index)
        _RUN.pack_into(slot.run_page, 0, tcs, 0, 0, 0, 0, self._handler, 0)
        ret = self.process.vdso_sgx_enter_enclave(rdi, rsi, slot.shared, leaf, 0, 0, slot.run)
        if ret:
            raise EnclaveError(f"__vdso_sgx_enter_enclave returned {ret}")
        _, function, vector, error, addr, _, _ = _RUN.unpack_from(slot.run_page)
        return function, vector, error, addr

    def _run(self, slot: _Slot, name: str, index: int) -> int:
        leaf, rdi, rsi = int(EncluLeaf.EENTER), index, 0
        fault: tuple[int, int, int] | None = None
        ocall_error: BaseException | None = None
        while True:
            function, vector, error, addr = self._enter(slot, leaf, rdi, rsi)
            if function != EncluLeaf.EEXIT:
                if self._is_loss(slot, function, vector, error, addr):
                    self._lost(name)
                fault = (vector, error, addr)
                if leaf == EncluLeaf.EENTER and rdi == abi.CMD_EXCEPTION:
                    raise EnclaveFault(name, *fault)  # the handler itself faulted
                if self.image.config.ssa_frames < 2:
                    slot.broken = True  # CSSA stays at NSSA: this TCS cannot be entered again
                    raise EnclaveFault(name, *fault)
                leaf, rdi, rsi = int(EncluLeaf.EENTER), abi.CMD_EXCEPTION, 0
                continue
            reason, status = self._exit.rdi, self._exit.rsi
            if reason == abi.Exit.ECALL_RETURN:
                if status:
                    raise EcallError(name, status)
                if ocall_error is not None:
                    raise OcallError(f"ecall {name}: an ocall failed: {ocall_error}") \
                        from ocall_error
                ret: int = _RET.unpack_from(slot.shared_page, abi.SHARED_RET)[0]
                return ret
            if reason == abi.Exit.OCALL:
                value, ocall_error = self._serve_ocall(slot, ocall_error)
                leaf, rdi, rsi = int(EncluLeaf.EENTER), abi.CMD_ORET, value
            elif reason in (abi.Exit.EXCEPTION_HANDLED, abi.Exit.EXCEPTION_UNHANDLED):
                leaf, rdi, rsi = int(EncluLeaf.ERESUME), 0, 0
            elif reason == abi.Exit.ECALL_ABORTED and fault is not None:
                raise EnclaveFault(name, *fault)
            else:
                raise EnclaveError(f"ecall {name}: the enclave exited with unknown reason "
                                   f"{reason:#x} (status {status:#x})")

    def _serve_ocall(self, slot: _Slot,
                     earlier: BaseException | None) -> tuple[int, BaseException | None]:
        raw = bytes(slot.shared_page[:abi.SHARED_SCRATCH])
        args = _ARGS.unpack_from(raw, abi.SHARED_ARGS)
        name = raw[abi.SHARED_NAME:abi.SHARED_NAME + abi.OCALL_NAME_MAX + 1].split(b"\0")[0]
        label = name.decode(errors="replace")
        fn = self._ocalls.get(label)
        status, value, error = abi.Status.SUCCESS, 0, earlier
        if fn is None:
            status = abi.Status.OCALL_UNKNOWN
            error = error or OcallError(f"the enclave called ocall '{label}', which is not "
                                        "registered")
        else:
            try:
                value = int(fn(OcallContext(self, label), *args) or 0) & _U64
            except Exception as exc:
                status, error = abi.Status.OCALL_FAILED, error or exc
        _RET.pack_into(slot.shared_page, abi.SHARED_STATUS, int(status))
        return value, error

    # -- SGX2 pages ---------------------------------------------------------------------------

    def restrict_permissions(self, offset: int, length: int, permissions: int) -> int:
        """``SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS``: EMODPR the regular pages of ``[offset,
        offset + length)`` (enclave-relative, page-aligned) to ``permissions``
        (SGX_SECINFO_R/W/X, W only with R), then ETRACK. The enclave must then EACCEPT each
        page with REG | ``permissions`` | PR. Returns the bytes done (``length``);
        :class:`~vsgx.sdk.pages.PageIoctlError` (an OSError with the Linux errno, ``count``
        and ``result``) when the kernel refuses a page: EFAULT where the enclave has no page,
        EINVAL for a page that is not regular, ENODEV without SGX2."""
        self._check_range("restrict_permissions", offset, length)
        if isinstance(permissions, bool) or not isinstance(permissions, int):
            raise TypeError("restrict_permissions: permissions must be an int")
        if permissions & ~SGX_SECINFO_PERMISSION_MASK or permissions < 0:
            raise ValueError(f"restrict_permissions: permissions {permissions:#x} are not a "
                             "combination of SGX_SECINFO_R, _W and _X")
        if permissions & SGX_SECINFO_W and not permissions & SGX_SECINFO_R:
            raise ValueError("restrict_permissions: write permission needs read permission")
        loaded = self._current()
        return pages.restrict_permissions(self.process, loaded.fd, offset, length, permissions)

    def modify_types(self, offset: int, length: int, page_type: int) -> int:
        """``SGX_IOC_ENCLAVE_MODIFY_TYPES``: EMODT the pages of ``[offset, offset + length)``
        (enclave-relative, page-aligned) to ``page_type``, SGX_PAGE_TYPE_TRIM or
        SGX_PAGE_TYPE_TCS, then ETRACK. The enclave must then EACCEPT each page with
        SECINFO = the type | MODIFIED (a trimmed page before :meth:`remove_pages`). Returns
        the bytes done (``length``); :class:`~vsgx.sdk.pages.PageIoctlError` when the kernel
        refuses a page: EFAULT where the enclave has no page, EINVAL for a change other than
        REG→TCS, REG→TRIM or TCS→TRIM, EPERM for REG→TCS of a page that may not be mapped
        read/write, ENODEV without SGX2."""
        self._check_range("modify_types", offset, length)
        if isinstance(page_type, bool) or not isinstance(page_type, int):
            raise TypeError("modify_types: page_type must be an int")
        if page_type not in (SGX_PAGE_TYPE_TCS, SGX_PAGE_TYPE_TRIM):
            raise ValueError(f"modify_types: page_type {page_type:#x} is neither "
                             f"SGX_PAGE_TYPE_TCS ({SGX_PAGE_TYPE_TCS}) nor SGX_PAGE_TYPE_TRIM "
                             f"({SGX_PAGE_TYPE_TRIM})")
        loaded = self._current()
        return pages.modify_types(self.process, loaded.fd, offset, length, page_type)

    def remove_pages(self, offset: int, length: int) -> int:
        """``SGX_IOC_ENCLAVE_REMOVE_PAGES``: EREMOVE the pages of ``[offset, offset +
        length)`` (enclave-relative, page-aligned), which :meth:`modify_types` made TRIM and
        the enclave then EACCEPTed (TRIM | MODIFIED). Returns the bytes removed (``length``);
        :class:`~vsgx.sdk.pages.PageIoctlError` when the kernel refuses a page: EFAULT where
        the enclave has no page, EPERM for a page not trimmed or not yet accepted, ENODEV
        without SGX2. A removed page of a read/write mapping is EAUGed again (a fresh pending
        page) when the enclave next touches it."""
        self._check_range("remove_pages", offset, length)
        loaded = self._current()
        return pages.remove_pages(self.process, loaded.fd, offset, length)

    def _check_range(self, operation: str, offset: int, length: int) -> None:
        """ValueError for what ``sgx_validate_offset_length`` would refuse as EINVAL."""
        for label, value in (("offset", offset), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{operation}: {label} must be an int, not "
                                f"{type(value).__name__}")
        size = self.image.layout.size
        if offset < 0 or offset % PAGE_SIZE:
            raise ValueError(f"{operation}: offset {offset:#x} is not a page-aligned offset "
                             "into the enclave (offsets are relative to enclave.base)")
        if length <= 0 or length % PAGE_SIZE:
            raise ValueError(f"{operation}: length {length:#x} is not a positive multiple of "
                             f"the page size ({PAGE_SIZE:#x})")
        if offset + length > size:
            raise ValueError(f"{operation}: [{offset:#x}, {offset + length:#x}) goes beyond "
                             f"the enclave's {size:#x} bytes")

    # -- loss ---------------------------------------------------------------------------------

    def migrated(self, process: Process) -> None:
        """Follow the guest process to the machine it migrated to: ``process`` is the
        destination's object for the same pid (``dest.guest.process(pid)``), whose untrusted
        memory, mappings and descriptors are those this enclave used, at the same addresses.

        The runtime pins each TCS slot's shared area and run struct again in ``process`` (the
        old views are the source machine's RAM), registers its vDSO user handler again
        (host-side handlers do not migrate, their old tokens are dead) and keeps the enclave's
        descriptor and base, which name the same things in ``process``. The enclave's EPC did
        not migrate, so the next ecall faults on EENTER (#PF, PFEC.SGX) and raises
        :class:`EnclaveLost`: with ``recover=True`` the enclave has then been rebuilt in
        ``process`` (same MRENCLAVE; the old one unmapped and its descriptor closed, so the
        destination's kernel frees its stale EPC pages) and its secrets must be provisioned
        again; sealed data only unseals if the destination's host has the same fused keys.

        Call it with no ecall in progress (the source refuses to migrate while a thread is in
        the vDSO). Raises ValueError for a process with another pid, :class:`EnclaveError`
        when the enclave is closed or a TCS is busy."""
        if process.pid != self.process.pid:
            raise ValueError(f"migrated: process {process.pid} is not this enclave's process "
                             f"({self.process.pid}); pass dest.guest.process("
                             f"{self.process.pid})")
        with self._free:
            loaded = self._current()
            if len(self._idle) != sum(not s.broken for s in self._slots):
                raise EnclaveError("migrated: an ecall is in progress")
            if process is self.process:
                return
            handler = process.register_user_handler(self._on_exit)
            for slot in self._slots:
                slot.shared_page = process.mm.pin_user_page(slot.shared)
                slot.run_page = process.mm.pin_user_page(slot.run)[:RUN_SIZE]
            self._handler = handler
            self._loaded = dataclasses.replace(loaded, process=process)
            self.process = process

    def _is_loss(self, slot: _Slot, function: int, vector: int, error: int, addr: int) -> bool:
        """EENTER or ERESUME itself faulted with #PF on the TCS or SSA: the EPC holding them is
        gone (SDM 38.5: the leaves fault on a TCS that is not a valid EPC page)."""
        if vector != Vector.PF:
            return False
        if function == EncluLeaf.EENTER:
            return True
        thread = self.image.layout.threads[slot.index]
        offset = addr - self._current().base
        ssa_size = self.image.config.ssa_frames * self.image.layout.ssa_frame_size * PAGE_SIZE
        return bool(error & Pfec.SGX) and (thread.tcs <= offset < thread.tcs + PAGE_SIZE
                                           or thread.ssa <= offset < thread.ssa + ssa_size)

    def _lost(self, name: str) -> None:
        if not self.recover:
            raise EnclaveLost(name, recreated=False)
        with self._lock:
            old = self._loaded
            self._loaded = None
            if old is not None:
                try:
                    old.unload()
                except OSError:
                    pass  # nothing left to release: the guest already tore it down
            self._loaded = load(self.process, self.image, self.sigstruct)
            self.generation += 1
        raise EnclaveLost(name, recreated=True)

    # -- TCS slots ----------------------------------------------------------------------------

    def _current(self) -> LoadedEnclave:
        loaded = self._loaded
        if loaded is None:
            raise EnclaveError("the enclave is closed")
        return loaded

    def _new_slot(self, index: int) -> _Slot:
        area = self.process.mmap(0, abi.SHARED_SIZE + PAGE_SIZE, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS)
        run = area + abi.SHARED_SIZE
        return _Slot(index, area, run, self.process.mm.pin_user_page(area),
                     self.process.mm.pin_user_page(run)[:RUN_SIZE])

    def _acquire(self, name: str) -> _Slot:
        held = getattr(self._held, "count", 0)
        with self._free:
            if held and not self._idle:
                raise EnclaveError(f"ecall {name} from inside an ocall needs a free TCS and "
                                   f"all {len(self._slots)} are busy (raise tcs_count)")
            self._free.wait_for(lambda: bool(self._idle) or self._loaded is None)
            self._current()
            slot = self._idle.pop()
        self._held.count = held + 1
        return slot

    def _release(self, slot: _Slot) -> None:
        self._held.count -= 1
        with self._free:
            if not slot.broken:
                self._idle.append(slot)
            self._free.notify()

    def close(self) -> None:
        """Destroy the enclave and free its untrusted memory."""
        with self._free:
            loaded, self._loaded = self._loaded, None
            self._free.notify_all()
        if loaded is None:
            return
        loaded.unload()
        for slot in self._slots:
            self.process.munmap(slot.shared, abi.SHARED_SIZE + PAGE_SIZE)
            if slot.arena:
                self.process.munmap(slot.arena, slot.arena_size)

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

