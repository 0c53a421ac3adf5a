"""Serving the viewer with uvicorn on a socket bound here, so port 0 can print its real port."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from vexplain.core.errors import InvalidOption


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: any free port); a busy port or an
    address this machine does not have raises ``InvalidOption`` naming it."""
    if not 0 <= int(port) <= 65535:
        raise InvalidOption(f"--port must be in 0..65535 (0: any free port); got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise InvalidOption(f"--host {host!r} is not an address of this machine ({error.strerror}); the default is 127.0.0.1") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise InvalidOption(f"cannot listen on {host}:{port}: {error.strerror}; choose another --port (0: any free port)") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port/`` of a bound socket (IPv6 addresses in brackets)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def uvicorn_server(app: Any, log_level: str = "warning") -> Any:
    """A uvicorn ``Server`` for ``app`` (sockets are given to ``run``)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False))


@dataclass
class RunningServer:
    """A viewer serving in a background thread (tests, notebooks); ``stop()`` ends it."""

    url: str
    sock: socket.socket
    server: Any
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, close the socket."""
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise RuntimeError(f"the viewer at {self.url} did not stop within {timeout:g} s")


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0) -> RunningServer:
    """Serve ``app`` on ``host``:``port`` from a daemon thread; returns once uvicorn has started."""
    sock = bind(host, port)
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="vexplain-viewer", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the viewer's server did not start")
        time.sleep(0.02)
    return RunningServer(url_of(sock), sock, server, thread)
