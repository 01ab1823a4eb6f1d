"""A TCP proxy on loopback to a PostgreSQL Unix socket that can fall silent, as a database behind
a network partition does: connections it held are cut, new ones are accepted and never answered.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class SilentProxy:
    def __init__(self, target: str) -> None:
        self.target = target  # the server's Unix socket path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._silent = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                client, _ = self._listener.accept()
                with self._lock:
                    self._open.append(client)
                if self._silent.is_set():
                    continue  # held open, never read, never answered
                server = socket.socket(socket.AF_UNIX)
                server.connect(self.target)
                with self._lock:
                    self._open.append(server)
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._silent.is_set() and (data := source.recv(65536)):
                sink.sendall(data)

    def silence(self) -> None:
        """Cut every connection; from now on answer none."""
        self._silent.set()
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        self.silence()


@contextlib.contextmanager
def silent_proxy(target: str) -> Iterator[SilentProxy]:
    proxy = SilentProxy(target)
    try:
        yield proxy
    finally:
        proxy.close()
