"""One listening socket per worker process (``SO_REUSEPORT``), so the kernel spreads connections.

uvicorn's supervisor binds one socket and hands the same socket to every worker. Each worker's
event loop wakes on a new connection and accepts every connection queued at that moment, so
clients that open their keep-alive connections together land on one worker while the other
idles: 16 connections opened at once to ``crossrec serve --processes 2`` split 16 / 0 in 4 of 6
trials (a ranker bundle then served at one process's speed).

``worker_socket`` binds the address once in the supervisor, with ``SO_REUSEPORT``, and never
listens on it: it only reserves the port. When the supervisor hands it to a worker (pickled
for the spawned process, also for the workers a rolling restart brings in), the worker gets a
*new* socket bound to the same address with ``SO_REUSEPORT``: every worker listens on its own
socket, and Linux assigns each new connection to one of them by a hash of its addresses and
ports (``reuseport`` groups hold listening sockets only, so the supervisor's gets none). Where
the platform lacks ``SO_REUSEPORT`` the shared socket is used as before.
"""

from __future__ import annotations

import socket
from typing import Any

from crossrec.errors import ConfigError


def check_free(host: str, port: int) -> None:
    """Bind ``host:port`` once and let it go: a taken port is reported before the bundle loads.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        _bind(family, host, port, reuse_port=False).close()
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _bind(family: int, host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, not yet listening TCP socket; accepted connections inherit ``TCP_NODELAY``
    (Linux): without it a keep-alive answer written as headers + body waits for the client's
    delayed ACK (~40 ms a request)."""
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _Reserved(socket.socket):
    """The supervisor's socket: pickles as "bind your own socket to my address"."""

    address: tuple[int, str, int]  # family, host, port

    def __reduce_ex__(self, protocol: Any) -> tuple:  # noqa: ANN401 - pickle's signature
        return _bind, (*self.address, True)


def worker_socket(host: str, port: int) -> socket.socket:
    """The socket to give uvicorn's multi-process supervisor (see the module docstring).

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - not Linux / BSD / macOS
        sock = _bind(family, host, port, reuse_port=False)
        sock.set_inheritable(True)
        return sock
    plain = _bind(family, host, port, reuse_port=True)
    reserved = _Reserved(family=family, fileno=plain.detach())
    reserved.address = (family, host, reserved.getsockname()[1])  # the real port of port 0
    return reserved
