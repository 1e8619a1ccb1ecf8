"""ASGI middleware of the service, outermost first: ``Observe`` (metrics and one log line per
request, client aborts apart from 5xx), ``Gate`` (header cap, API key and its role, per-key rate
limit: all decided on the headers, before the body is read) and ``BodyLimit`` (413)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from fastapi.responses import JSONResponse

from crossrec.serving.auth import KeyRing, presented_key
from crossrec.serving.metrics import ServeMetrics
from crossrec.serving.settings import ServeSettings

log = logging.getLogger("crossrec.serving")
USER_KEY = "crossrec.user"  # scope entry: the keyed hash of the request's user id
KEY_ID = "crossrec.key_id"  # scope entry: the id of the request's API key ("-" without auth)
ROUTE_ROLES = {"/events": "write"}  # the role a route needs; /admin/*: admin; others: read


def role_of(path: str) -> str:
    """The role a request path needs (``read``, ``write`` or ``admin``)."""
    if path == "/admin" or path.startswith("/admin/"):
        return "admin"
    return ROUTE_ROLES.get(path, "read")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app reads it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Any, status: int, msg: str) -> None:
        body = JSONResponse({"detail": msg, "message": f"body: {msg}"}, status_code=status)
        await body({"type": "http"}, None, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        too_big = f"request body larger than {self.max_bytes} bytes"
        if length is not None:
            if not length.isdigit():
                await self._reject(send, 400, "malformed Content-Length header")
                return
            if int(length) > self.max_bytes:
                await self._reject(send, 413, too_big)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


ABORTED = 499  # status recorded for a request whose client went away before any answer
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # the routes that need no API key


async def _answer(send: Any, status: int, msg: str, headers: dict[str, str] | None = None
                  ) -> None:
    """A JSON error answer sent straight from ASGI middleware (before the app runs)."""
    body = JSONResponse({"detail": msg, "message": msg}, status_code=status, headers=headers)
    await body({"type": "http"}, None, send)


class Gate:
    """ASGI middleware, in front of the body limit and the app: the header size cap (431), the
    API key (401 / 403) and its role for the route (403), and the per-key rate limit (429 with
    ``Retry-After``), all decided on the headers alone, so that the body of a request without
    a valid key is never read or parsed. The key's id goes into the scope (``KEY_ID``)."""

    def __init__(self, app: Any, settings: ServeSettings, keys: KeyRing) -> None:
        self.app, self.settings, self.keys = app, settings, keys
        self.has_admin = "admin" in keys.roles()
        self.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.settings.max_header_bytes:
            await _answer(send, 431, f"request headers larger than "
                          f"{self.settings.max_header_bytes} bytes")
            return
        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        who = None
        if self.settings.auth:
            h = {k.lower(): v for k, v in headers if k.lower() in (b"authorization",
                                                                     b"x-api-key")}
            key = presented_key(h.get(b"authorization", b"").decode("latin-1") or None,
                                h.get(b"x-api-key", b"").decode("latin-1") or None)
            if key is None:
                await _answer(send, 401, "missing API key: send 'Authorization: Bearer <key>' "
                              "or 'X-API-Key: <key>'", {"WWW-Authenticate": "Bearer"})
                return
            found = self.keys.lookup(key)
            if found is None:
                await _answer(send, 403, "invalid API key")
                return
            need = role_of(scope["path"])
            if not found.allows(need):
                await _answer(send, 403, self._role_message(need, found.role))
                return
            who, scope[KEY_ID] = found.digest, found.id
        else:
            client = scope.get("client") or ("-", 0)
            who, scope[KEY_ID] = str(client[0]).encode(), "-"
        wait = self.limiter.take(who)
        if wait > 0:
            await _answer(send, 429, f"rate limit: at most {self.settings.rate_limit_per_second:g} "
                          f"requests per second per key (burst {self.settings.rate_limit_burst})",
                          {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        await self.app(scope, receive, send)

    def _role_message(self, need: str, has: str) -> str:
        if need == "admin" and not self.has_admin:
            return ("the admin routes are closed: no admin key is configured (admin keys "
                    f"file, or ${self.settings.admin_keys_env})")
        if need == "admin":
            return f"this route needs an admin key (this key's role: {has})"
        return f"this route needs a key with role {need} or above (this key's role: {has})"


class RateLimiter:
    """Token buckets, one per key (per client address without auth): ``rate`` tokens a second,
    at most ``burst``; ``rate`` 0 turns the limit off. Only keys that passed the check get a
    bucket; without auth the oldest buckets are forgotten beyond ``max_buckets``."""

    def __init__(self, rate: float, burst: int, max_buckets: int = 10_000) -> None:
        self.rate, self.burst, self.max_buckets = float(rate), int(burst), max_buckets
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key -> (tokens, time)

    def take(self, who: bytes, now: float | None = None) -> float:
        """0 when a request may go (a token is taken), else the seconds until one may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_buckets:
            self._buckets.pop(next(iter(self._buckets)))
        if tokens >= 1.0:
            self._buckets[who] = (tokens - 1.0, now)
            return 0.0
        self._buckets[who] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Observe:
    """ASGI middleware: request count, latency and errors per route; one log line each.

    A request that ends without an answer because its client went away (a disconnect seen, or
    the app cancelled) is recorded as status 499 and in ``crossrec_http_aborted_total``, not
    as a server error; only an exception of the app with the client still there is a 500.
    """

    def __init__(self, app: Any, metrics: ServeMetrics, paths: frozenset[str]) -> None:
        self.app, self.metrics, self.paths = app, metrics, paths

    def _route(self, scope: dict) -> str:
        """The route template; for an answer given before routing (413, 401, 429), the path
        if it is a route's, else "unmatched"."""
        route = getattr(scope.get("route"), "path", None)
        if route is None:
            route = scope["path"] if scope["path"] in self.paths else "unmatched"
        return route

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status, gone = time.perf_counter(), None, False

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def watch(message_source: Any = receive) -> dict:
            nonlocal gone
            message = await message_source()
            if message["type"] == "http.disconnect":
                gone = True
            return message

        try:
            await self.app(scope, watch, send_status)
        except BaseException as e:
            if status is None and (gone or isinstance(e, asyncio.CancelledError | OSError)):
                gone = True
            raise
        finally:
            if status is None:
                status = ABORTED if gone else 500
            seconds = time.perf_counter() - start
            route = self._route(scope)
            if status == ABORTED:
                self.metrics.aborted.labels(route=route).inc()
            self.metrics.observe(route, scope["method"], status, seconds)
            log.info("%s %s %d %.1fms user=%s", scope["method"], route, status, seconds * 1e3,
                     scope.get(USER_KEY, "-"))
