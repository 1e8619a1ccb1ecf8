"""One listening socket per worker (crossrec.serving.listen): the kernel spreads connections."""

from __future__ import annotations

import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import pytest

from crossrec.serving.listen import worker_socket

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")


def _worker_copy(sock: socket.socket) -> socket.socket:
    """What a spawned worker receives: the supervisor's socket through multiprocessing."""
    return pickle.loads(ForkingPickler.dumps(sock))


def test_each_worker_binds_its_own_socket_to_the_reserved_port() -> None:
    reserved = worker_socket("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    workers = [_worker_copy(reserved) for _ in range(2)]
    try:
        assert port > 0
        for w in workers:
            assert w.fileno() != reserved.fileno()
            assert w.getsockname() == ("127.0.0.1", port)
            assert w.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert w.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            w.listen(64)
            w.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        got = []
        for w in workers:
            n = 0
            while True:
                try:
                    conn, _ = w.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            got.append(n)
        # every connection reached a worker's socket, and both had some (all 40 on one:
        # probability 2^-39); none waits on the supervisor's socket, which never listens
        assert sum(got) == 40 and min(got) > 0
        for c in clients:
            c.close()
    finally:
        for s in [reserved, *workers]:
            s.close()


def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(OSError):
            worker_socket("127.0.0.1", busy.getsockname()[1])


def test_a_taken_address_is_reported_before_anything_loads() -> None:
    from crossrec.errors import ConfigError
    from crossrec.serving.listen import check_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            check_free("127.0.0.1", busy.getsockname()[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    check_free("127.0.0.1", free)  # a free port: nothing raised, nothing kept
    check_free("127.0.0.1", free)
