"""Limits against hostile clients: the key is checked before the body is read, a per-key rate
limit (429 + Retry-After), a header size cap (431), client aborts counted apart from 5xx, and
the uvicorn options (h11 header limit, timeouts, connection cap, TLS)."""

from __future__ import annotations

import asyncio

import pytest
from serving_toy import AUTH

from crossrec.errors import ConfigError
from crossrec.serving.app import Observe, RateLimiter
from crossrec.serving.metrics import ServeMetrics
from crossrec.serving.settings import ServeSettings


def test_body_is_not_parsed_before_the_key_is_checked(make_client):
    c = make_client()
    r = c.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401 and "missing API key" in r.json()["message"]
    r = c.post("/events", content=b"{not json", headers={"X-API-Key": "wrong-key-0123456789"})
    assert r.status_code == 403 and "detail" in r.json() and "loc" not in r.text
    assert c.get("/healthz").status_code == 200  # open


def test_rate_limit_per_key_answers_429_with_retry_after(make_client):
    c = make_client(rate_limit_per_second=0.5, rate_limit_burst=2)
    codes = [c.get("/metrics", headers=AUTH).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.get("/metrics", headers=AUTH)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert c.get("/healthz").status_code == 200  # health is never limited


def test_rate_limiter_refills_at_its_rate():
    lim = RateLimiter(rate=2.0, burst=2)
    assert lim.take(b"k", now=0.0) == 0 and lim.take(b"k", now=0.0) == 0
    assert lim.take(b"k", now=0.0) == pytest.approx(0.5)
    assert lim.take(b"other", now=0.0) == 0  # buckets are per key
    assert lim.take(b"k", now=0.5) == 0
    assert RateLimiter(rate=0, burst=1).take(b"k") == 0  # off


def test_oversized_headers_get_431(make_client):
    c = make_client(max_header_bytes=2048)
    r = c.get("/healthz", headers={"X-Junk": "x" * 4096})
    assert r.status_code == 431
    assert c.get("/healthz").status_code == 200


def _run(app, messages):  # noqa: ANN001, ANN202
    metrics = ServeMetrics()
    mw = Observe(app, metrics, frozenset({"/x"}))
    queue = list(messages)

    async def receive() -> dict:
        return queue.pop(0)

    async def send(_: dict) -> None:
        return None

    async def go() -> None:
        try:
            await mw({"type": "http", "path": "/x", "method": "POST", "headers": []},
                     receive, send)
        except RuntimeError:
            pass

    asyncio.run(go())
    return metrics


def _value(metrics: ServeMetrics, name: str) -> float:
    return sum(s.value for m in metrics.registry.collect() if m.name == name
               for s in m.samples if s.name.endswith("_total"))


def test_client_aborts_are_not_server_errors():
    async def reads_then_gone(scope, receive, send):  # noqa: ANN001, ANN202
        await receive()  # the client has gone: no answer is sent

    async def crashes(scope, receive, send):  # noqa: ANN001, ANN202
        raise RuntimeError("bug")

    m = _run(reads_then_gone, [{"type": "http.disconnect"}])
    assert _value(m, "crossrec_http_aborted") == 1 and _value(m, "crossrec_http_errors") == 0
    m = _run(crashes, [])
    assert _value(m, "crossrec_http_aborted") == 0 and _value(m, "crossrec_http_errors") == 1


def test_uvicorn_options_bound_each_connection(tmp_path):
    from crossrec.serving.protocol import GuardedH11Protocol

    opts = ServeSettings(max_header_bytes=8192, header_timeout_s=5, body_timeout_s=7,
                         keep_alive_s=3, max_requests_per_connection=9).uvicorn_options()
    assert opts["http"].func is GuardedH11Protocol
    limits = opts["http"].keywords["limits"]
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.max_requests) == (5, 7, 9)
    assert opts["h11_max_incomplete_event_size"] == 8192
    assert opts["timeout_keep_alive"] == 3 and opts["limit_concurrency"] == 1000
    assert opts["timeout_graceful_shutdown"] == 30 and opts["forwarded_allow_ips"] == "127.0.0.1"
    assert "ssl_certfile" not in opts
    with pytest.raises(ConfigError, match="go together"):
        ServeSettings(tls_cert=tmp_path / "c.pem").uvicorn_options()
    with pytest.raises(ConfigError, match="no such file"):
        ServeSettings(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem").uvicorn_options()
    (tmp_path / "c.pem").write_text("c")
    (tmp_path / "k.pem").write_text("k")
    with pytest.raises(ConfigError, match="not a PEM certificate and its private key"):
        ServeSettings(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem").uvicorn_options()
