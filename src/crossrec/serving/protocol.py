"""Connection limits below the app: a deadline for each request's headers and body.

uvicorn's own ``timeout_keep_alive`` only runs between a finished response and the next byte;
a client that opens a connection and sends nothing, or trickles its headers or body a byte at a
time (slowloris), is never cut. ``GuardedH11Protocol`` is uvicorn's h11 protocol plus a timer:
from the moment a connection is made (or a response is finished) the whole request head must
arrive within ``header_timeout_s``, then the whole body within ``body_timeout_s``; otherwise
the connection is closed (with ``408 Request Timeout`` when part of a head had arrived).
It also ends a keep-alive connection after ``max_requests`` requests (``Connection: close``
on the last answer), so one client cannot hold a connection for ever.

On a graceful shutdown (SIGTERM, or a worker retiring in a rolling restart) uvicorn closes every
idle keep-alive connection at once, and a request the client sends on it at that moment is
lost (connection reset): a race every busy client loses now and then. Here an idle connection
is kept for ``drain_s`` instead: a request that arrives meanwhile is answered and the
connection closes after that answer (the client's next request opens a new connection, to a
live worker), and one that stays idle is closed at the end.

Given to uvicorn as ``http=functools.partial(GuardedH11Protocol, limits=...)``
(``ServeSettings.uvicorn_options``); a partial of a module-level class pickles, so the
multi-process supervisor can hand it to its workers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

CLOSE_HEADER = (b"connection", b"close")
TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                  b"content-length: 22\r\nconnection: close\r\n\r\nrequest took too long\n")


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection bounds (seconds, requests)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_requests: int = 1000
    drain_s: float = 1.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a body deadline and a request cap."""

    def __init__(self, *args: Any, limits: ConnectionLimits | None = None, **kwargs: Any
                 ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or ConnectionLimits()
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""  # "headers", "body" or "done" (the request is read)
        self._requests = 0
        self._counted: object = None  # the request cycle last counted
        self._draining: asyncio.TimerHandle | None = None  # shutdown asked while idle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._draining is not None:
            self._draining.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Graceful shutdown: an idle connection drains for ``drain_s`` (module docstring)."""
        idle = self.cycle is None or self.cycle.response_complete
        if not idle:  # a request in flight: its answer closes the connection, and says so
            self._last_answer()
            return
        if self.limits.drain_s <= 0 or self.transport.is_closing():
            super().shutdown()
            return
        if self._draining is None:
            self._draining = self.loop.call_later(self.limits.drain_s, self._drained)

    def _drained(self) -> None:
        """The drain time is over: close if still idle (else the answer closes it)."""
        if not self.transport.is_closing():
            super().shutdown()

    def handle_events(self) -> None:
        super().handle_events()
        self._track()

    # ------------------------------------------------------------------ internals
    def _track(self) -> None:
        """Arm the deadline of the phase the client is in; count a new request."""
        if self.transport is None or self.transport.is_closing():
            self._cancel()
            return
        if self.cycle is not None and self.cycle is not self._counted:
            self._counted = self.cycle
            self._requests += 1
            if self._requests >= self.limits.max_requests or self._draining is not None:
                self._last_answer()
        state = self.conn.their_state
        phase = ("headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY
                 else "done")
        if phase == self._phase:
            return
        self._phase = phase
        self._cancel()
        if phase != "done":
            seconds = (self.limits.header_timeout_s if phase == "headers"
                       else self.limits.body_timeout_s)
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _last_answer(self) -> None:
        """The answer to the current request closes the connection and says so
        (``Connection: close``: uvicorn adds the header when the request carries it), so the
        client does not send its next request on a connection about to close (which the
        close would reset)."""
        self.cycle.keep_alive = False
        headers = self.cycle.scope["headers"]
        if CLOSE_HEADER not in headers:
            headers.append(CLOSE_HEADER)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.logger.info("closing a connection: its request %s took longer than %gs", phase,
                         self.limits.header_timeout_s if phase == "headers"
                         else self.limits.body_timeout_s)
        if phase == "headers" and self.conn.trailing_data[0]:
            self.transport.write(TIMEOUT_ANSWER)  # part of a request head had arrived
        self.transport.close()  # a body cut short: the app sees a disconnect (499)
