"""QMP over a listening socket, as QEMU 7.2's ``-qmp unix:PATH,server=on`` and
``-qmp tcp:HOST:PORT,server=on`` serve it (``chardev/char-socket.c``, ``monitor/qmp.c``).

Like a QEMU socket chardev, a :class:`QmpServer` talks to one client at a time: a second
client's connection is accepted by the kernel but gets its greeting only once the first client
has gone. Every connection starts a fresh :class:`~vsgx.monitor.protocol.Session`; input a
client leaves half-sent when it disconnects is dropped. ``quit`` ends the server as it ends
QEMU.

Threads: one server thread accepts clients and reads and executes their requests in order
(commands run on it); each connection has a writer thread draining an unbounded queue of
outgoing messages, so that a client that stops reading never blocks the machine thread that
emits an event (QEMU's monitor buffers output the same way).

Deviations from QEMU, on purpose:

- the unix socket file is made mode 0600 before the socket listens (QEMU leaves it to the
  umask); an existing file at the path is replaced only if it is a socket (QEMU unlinks
  whatever is there);
- ``tcp::PORT`` (empty host) listens on 127.0.0.1 only, not on every address;
- a TCP host that resolves to several addresses is bound on the first one only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from vsgx.monitor.commands import CommandTable
from vsgx.monitor.protocol import Session
from vsgx.monitor.qjson import MAX_TOKEN_SIZE
from vsgx.monitor.target import MonitorTarget
from vsgx.platform.config import QmpConfig

_log = logging.getLogger(__name__)

_BACKLOG = 1
"""QEMU's socket chardev listens with a backlog of 1."""
_RECV_SIZE = 1 << 16
_FLUSH_TIMEOUT = 5.0
"""Seconds a closing connection waits for its pending output to reach a slow client."""
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_LOOPBACK = "127.0.0.1"


class _Connection:
    """A connected client: its session and the thread that writes to it."""

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.session = session
        self._outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="vsgx-qmp-writer",
                                        daemon=True)
        self._writer.start()

    def send(self, message: bytes) -> None:
        """Queue ``message`` for the client (dropped once the connection is closing)."""
        self._outgoing.put(message)

    def _write(self) -> None:
        while (message := self._outgoing.get()) is not None:
            try:
                self.sock.sendall(message, _SEND_FLAGS)
            except OSError:
                return

    def close(self) -> None:
        """Deliver what is queued (waiting at most ``_FLUSH_TIMEOUT``), then disconnect."""
        self._outgoing.put(None)
        self._writer.join(_FLUSH_TIMEOUT)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._writer.join()
        self.sock.close()


class QmpServer:
    """A QMP monitor for ``target`` on the socket ``config`` describes.

    :meth:`start` binds and listens, then serves on a background thread; with ``wait`` set
    in the config it returns only once the first client has connected (QEMU's ``wait=on``),
    raising TimeoutError after ``timeout`` seconds. :meth:`close` (or leaving the ``with``
    block) disconnects the client, stops listening and removes the unix socket file.
    ``max_message_size`` bounds one request as QEMU's 64 MiB does.
    """

    def __init__(self, target: MonitorTarget, config: QmpConfig, *,
                 max_message_size: int = MAX_TOKEN_SIZE) -> None:
        if not config.server:
            raise ValueError("a QMP client socket (server=off) is not supported")
        if config.transport not in ("unix", "tcp"):
            raise ValueError(f"unsupported QMP transport {config.transport!r}")
        self._target = target
        self._config = config
        self._max_message_size = max_message_size
        self._commands = CommandTable(target)
        self._listener: socket.socket | None = None
        self._address: str | tuple[str, int] | None = None
        self._socket_inode: int | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._connection: _Connection | None = None
        self._connected = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def address(self) -> str | tuple[str, int]:
        """Where the server listens (or listened): the unix socket path, or the bound
        (host, port), with the real port when the config asked for port 0."""
        if self._address is None:
            raise RuntimeError("the QMP server was not started")
        return self._address

    def start(self, timeout: float | None = None) -> None:
        """Listen and serve; with ``wait``, block until a client connects."""
        if self._thread is not None:
            raise RuntimeError("the QMP server was already started")
        if self._config.transport == "unix":
            self._listener = self._listen_unix()
        else:
            self._listener = self._listen_tcp()
        try:
            self._unsubscribe = self._target.subscribe(self._on_event)
        except BaseException:
            self._stop_listening()
            raise
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="vsgx-qmp", daemon=True)
        self._thread.start()
        if self._config.wait and not self._connected.wait(timeout):
            self.close()
            raise TimeoutError(f"no QMP client connected to {self.address} within {timeout} s")

    def close(self) -> None:
        """Stop serving (after the command in progress, if any); safe to call repeatedly,
        and from a command (e.g. the machine's ``quit``)."""
        if self._thread is None:
            return
        assert self._wake_reader is not None and self._wake_writer is not None
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        if self._thread is threading.current_thread():
            return  # the server thread finishes the command, then stops
        self._thread.join()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> QmpServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- listening -----------------------------------------------------------------------

    def _listen_unix(self) -> socket.socket:
        path = self._config.path
        assert path is not None
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(f"{path} exists and is not a socket")
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            self._socket_inode = os.lstat(path).st_ino
            # Nobody can connect before listen(), so the file is never open to others.
            os.chmod(path, 0o600)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            self._remove_socket_file()
            raise
        self._address = path
        return sock

    def _listen_tcp(self) -> socket.socket:
        host = self._config.host or _LOOPBACK
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, self._config.port or 0, type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        bound_host, bound_port = sock.getsockname()[:2]
        self._address = (str(bound_host), int(bound_port))
        return sock

    def _stop_listening(self) -> None:
        """Close the listening socket and remove the unix socket file (once)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        """Unlink the unix socket file if it is still the one this server bound."""
        if self._socket_inode is None:
            return
        assert self._config.path is not None
        with contextlib.suppress(OSError):
            if os.lstat(self._config.path).st_ino == self._socket_inode:
                os.unlink(self._config.path)
        self._socket_inode = None

    # -- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        """The server thread: one client after the other until closed or ``quit``."""
        connection = None
        try:
            while (sock := self._accept()) is not None:
                self._connected.set()
                connection = _Connection(sock, Session(
                    self._commands, max_message_size=self._max_message_size))
                connection.send(connection.session.greeting())
                self._connection = connection
                try:
                    if self._converse(connection):
                        break
                except Exception:
                    _log.exception("QMP connection failed")
                self._hang_up(connection)
                connection = None
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self._stop_listening()
            if connection is not None:
                self._hang_up(connection)

    def _hang_up(self, connection: _Connection) -> None:
        self._connection = None
        connection.close()

    def _wait_readable(self, sock: socket.socket) -> bool:
        """Wait until ``sock`` is readable; False when the server is closing instead."""
        assert self._wake_reader is not None
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            ready = {key.fileobj for key, _ in selector.select()}
        return self._wake_reader not in ready

    def _accept(self) -> socket.socket | None:
        """The next client, or None when the server is closing."""
        assert self._listener is not None
        while self._wait_readable(self._listener):
            try:
                sock, _ = self._listener.accept()
            except OSError:  # e.g. the client gave up while queued
                continue
            sock.setblocking(True)
            return sock
        return None

    def _converse(self, connection: _Connection) -> bool:
        """Serve one client until it disconnects; True when the server must stop: the client
        sent ``quit`` (the listening socket is closed before its reply goes out, as QEMU is
        gone once the reply arrives) or :meth:`close` was called."""
        session = connection.session
        while not session.hung_up:
            if not self._wait_readable(connection.sock):
                return True
            try:
                data = connection.sock.recv(_RECV_SIZE)
            except OSError:
                return False
            if not data:
                return False
            for reply in session.feed(data):
                if session.hung_up:
                    self._stop_listening()
                connection.send(reply)
        return True

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        """The target's event listener: forward to the client in command mode. Runs on the
        emitting thread, so it only queues (and never raises into the machine)."""
        microseconds = time.time_ns() // 1000
        connection = self._connection
        if connection is None:
            return
        try:
            message = connection.session.event(name, data, microseconds)
        except Exception:
            _log.exception("cannot send QMP event %s", name)
            return
        if message is not None:
            connection.send(message)
