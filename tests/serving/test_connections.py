"""Connection limits on a real uvicorn server (in a thread, loopback): idle and trickling
clients are cut at the header / body deadline, a keep-alive connection ends after its request
cap, well-behaved keep-alive clients are untouched; HTTPS with --tls-cert/--tls-key; the serve
flags are validated before anything loads."""

from __future__ import annotations

import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from serving_toy import AUTH, KEY
from typer.testing import CliRunner

from crossrec.serving.settings import ServeSettings

FAST = {"header_timeout_s": 0.6, "body_timeout_s": 0.6, "keep_alive_s": 5.0}


async def echo(scope, receive, send) -> None:  # noqa: ANN001 - a bare ASGI app
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_running: list = []  # the servers serving() started, latest last


@contextmanager
def serving(app, **settings) -> Iterator[int]:  # noqa: ANN001
    """``app`` served by uvicorn with ``ServeSettings(**settings).uvicorn_options()``."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = ServeSettings(**settings).uvicorn_options()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto",
                                           **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _running.append(server)
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def closed_after(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes ``s`` (reading whatever it sends), at most ``limit``."""
    start, got = time.monotonic(), b""
    s.settimeout(limit)
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return time.monotonic() - start, got
        got += chunk


def request(path: str = "/", body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode() + body


def test_idle_and_trickling_clients_are_cut_at_the_deadlines():
    with serving(echo, **FAST) as port:
        idle = socket.create_connection(("127.0.0.1", port))
        head = socket.create_connection(("127.0.0.1", port))
        head.sendall(b"POST / HTTP/1.1\r\nhost: x\r\n")  # the head never ends
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        for s, expect in ((idle, b""), (head, b"408"), (body, b"")):
            seconds, got = closed_after(s, 5.0)
            assert seconds < 2.0 and expect in got, (seconds, got)
            s.close()


def test_a_trickled_head_is_cut_though_each_byte_is_on_time():
    with serving(echo, **FAST) as port, socket.create_connection(("127.0.0.1", port)) as s:
        start = time.monotonic()
        for b in b"POST / HTTP/1.1\r\nx-slow: " + b"a" * 200:  # 10 s at one byte / 50 ms
            s.sendall(bytes([b]))
            if select.select([s], [], [], 0.05)[0]:  # the server answered (408) or closed
                break
        assert time.monotonic() - start < 2.0
        assert b"408 Request Timeout" in closed_after(s, 2.0)[1]


def test_keep_alive_clients_are_served_and_capped_per_connection():
    with serving(echo, max_requests_per_connection=3, **FAST) as port, \
            socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        for i in range(3):
            time.sleep(0.3)  # each pause below the header deadline: the connection stays
            s.sendall(request(body=b"x" * i))
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(i).encode())
        assert s.recv(4096) == b""  # the third answer closed it
        assert b"connection: close" in answer.lower()  # and said so


def test_shutdown_drains_idle_keep_alive_connections():
    """On a graceful shutdown an idle keep-alive connection is not closed under a client that
    is about to send on it: a request within the drain time is answered ("connection: close",
    then closed), and a connection that stays idle is closed when the drain time is over."""
    with serving(echo, **{**FAST, "header_timeout_s": 10.0}) as port:
        busy = socket.create_connection(("127.0.0.1", port))
        idle = socket.create_connection(("127.0.0.1", port))
        for s in (busy, idle):
            s.settimeout(5)
            s.sendall(request(body=b"ab"))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        server = _running[-1]
        server.should_exit = True  # what SIGTERM does: the shutdown starts
        began = time.monotonic()
        time.sleep(0.3)  # inside the 1 s drain
        busy.sendall(request(body=b"abc"))
        answer = busy.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"3")
        assert b"connection: close" in answer.lower()
        assert closed_after(busy, 2.0)[1] == b""
        got = closed_after(idle, 5.0)[1]
        seconds = time.monotonic() - began
        assert got == b"" and 0.8 < seconds < 3.0, seconds  # after the drain (1 s)
        busy.close()
        idle.close()


def test_https_with_a_self_signed_certificate(bundle, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    from fastapi.testclient import TestClient  # noqa: F401 - the app needs fastapi anyway

    from crossrec.serving.app import create_app
    from crossrec.serving.auth import KeyRing, digest

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    settings = {"tls_cert": cert, "tls_key": key, "events": str(tmp_path / "e.sqlite")}
    api = create_app(bundle, ServeSettings(**settings), keys=KeyRing([digest(KEY)]))
    with serving(api, **settings) as port:
        ctx = ssl.create_default_context(cafile=str(cert))
        r = httpx.get(f"https://127.0.0.1:{port}/metrics", headers=AUTH, verify=ctx, timeout=10)
        assert r.status_code == 200 and "crossrec_http_requests_total" in r.text
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "{tmp}/c.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "{tmp}/c.pem", "--tls-key", "{tmp}/absent.pem"], "no such file"),
    (["--tls-cert", "{tmp}/c.pem", "--tls-key", "{tmp}/c.pem"], "not a PEM certificate"),
    (["--header-timeout", "0"], "--header-timeout: Input should be greater than 0"),
    (["--limit-concurrency", "0"], "--limit-concurrency: Input should be greater than"),
    (["--max-header-bytes", "10"], "--max-header-bytes: Input should be greater than"),
    (["--rate-limit", "-1"], "--rate-limit: Input should be greater than or equal to 0"),
])
def test_serve_flags_are_validated_before_start(bundle_path, tmp_path, args, message):
    from crossrec.cli import app

    (tmp_path / "c.pem").write_text("not a certificate\n")
    argv = ["serve", str(bundle_path), "--no-auth", "--events", str(tmp_path / "e.sqlite"),
            *(a.format(tmp=tmp_path) for a in args)]
    r = CliRunner().invoke(app, argv, env={"COLUMNS": "300"})
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "e.sqlite").exists()
