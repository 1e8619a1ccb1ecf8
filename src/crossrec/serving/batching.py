"""Micro-batching of concurrent ``POST /recommend`` requests: one ``Bundle.recommend`` for all.

Requests that reach the endpoint in the same turn of the event loop (they arrived together, or
while the previous batch was being scored) and ask the same bundle for the same
``(domain, k, exclude_seen, explain)`` are scored by one ``Bundle.recommend`` call of up to
``max_users`` users: the model's ``[B, d] @ [d, n_items]`` product reads the item matrix once
instead of B times, and the per-call work (id lookups, masking, top-k) is vectorised. A request
on an idle server is scored alone and waits for nothing: the batch is run by
``loop.call_soon``, right after the requests already parsed in this turn have been queued.

Under load, waiting for nothing splits the stream badly: while a batch of 15 is scored, the
one client answered just before sends its next request, which is then scored alone (a
one-user call costs about what 3 users cost in a batch), and the 15 answered clients' next
requests, arriving a millisecond later, make the next batch of 15 — "1, 15, 1, 15" with 16
closed-loop clients. So when the last batch held several requests and ended less than
``busy_s`` ago, a new batch waits for the requests of the clients just answered: until
``max_users`` are queued, or for ``wait_share`` of the time the last batch took, at most
``wait_s`` (3 ms for a ranker batch of ~140 ms; 0.5 ms for a factor model's ~10 ms batch, so
a fast model loses at most that share of its throughput). A lone client (batches of one)
never waits.

With ``threads > 1`` a batch is scored on a pool of that many threads instead of on the event
loop: while one batch is scored, the loop keeps parsing requests and the next batch starts on
another thread, so one process uses several cores (the heavy parts, numpy / torch kernels and
the compiled trees, release the GIL). Unlike several worker processes, nothing depends on how
keep-alive connections happen to split between processes, and the bundle is held once. At
most ``threads`` batches are in flight, the queue shared evenly among the free threads (16
requests, 2 free threads: two batches of 8); requests arriving meanwhile queue for the next
free thread. The bundle must be safe to read from several threads (it is read-only while
served; a hot reload swaps it whole).

Scores equal those of a one-user call up to float rounding (a matrix product instead of a
matrix-vector one). A batch that raises is retried one request at a time, so an error reaches
only the request that caused it. Requests with a ``history`` are not batched (the caller scores
them directly).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossrec.bundle import Bundle, Recommendation

Key = tuple[int, str, int, bool, int]  # id(bundle), domain, k, exclude_seen, explain


class RecommendBatcher:
    """Collects the ``recommend`` calls of one event-loop turn and scores them together."""

    def __init__(self, max_users: int = 32, wait_s: float = 0.003, wait_share: float = 0.05,
                 busy_s: float = 0.05, threads: int = 1) -> None:
        if max_users < 1:
            raise ValueError(f"max_users must be at least 1, got {max_users}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads  # batches scored at once (1: on the event loop itself)
        self._pool: ThreadPoolExecutor | None = None  # started on the first threaded batch
        self._in_flight = 0  # batches being scored on the pool
        self._count_lock = threading.Lock()
        self.max_users = max_users
        self.wait_s = wait_s  # longest wait for more requests when busy (0: never wait)
        self.wait_share = wait_share  # ... as a share of the last batch's time
        self.busy_s = busy_s  # a batch of several this recent means busy
        self._last_seconds = 0.0  # time the last run took
        self._pending: dict[Key, tuple[Bundle, list[tuple[str, asyncio.Future]]]] = {}
        self._queued = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_size = 0  # requests scored by the last run
        self._last_end = float("-inf")  # loop time it ended
        self.batches = 0  # Bundle.recommend calls made (for tests and benchmarks)
        self.requests = 0  # requests answered through them

    async def recommend(self, bundle: Bundle, user_id: str, domain: str, k: int,
                        exclude_seen: bool, explain: int) -> Recommendation:
        """``bundle.recommend([user_id], domain, k, exclude_seen, explain=explain)[0]``,
        scored together with the other calls of this event-loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        key = (id(bundle), domain, k, exclude_seen, explain)
        self._pending.setdefault(key, (bundle, []))[1].append((user_id, future))
        self._queued += 1
        if not self._scheduled:
            self._scheduled = True
            busy = self._last_size > 1 and loop.time() - self._last_end < self.busy_s
            wait = min(self.wait_s, self.wait_share * self._last_seconds)
            if busy and wait > 0 and self._queued < self.max_users:
                self._timer = loop.call_later(wait, self._run)
            else:
                loop.call_soon(self._run)
        elif self._timer is not None and self._queued >= self.max_users:
            self._timer.cancel()  # a full batch waits no longer
            self._timer = None
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self._scheduled = False
        self._timer = None
        if self.threads > 1:
            self._dispatch()
            return
        groups, self._pending = self._pending, {}
        self._last_size, self._queued = self._queued, 0
        began = asyncio.get_running_loop().time()
        for (_, domain, k, exclude_seen, explain), (bundle, calls) in groups.items():
            for start in range(0, len(calls), self.max_users):
                part = calls[start:start + self.max_users]
                self._deliver(part, self._score(bundle, [u for u, _ in part], domain, k,
                                                exclude_seen, explain))
        self._last_end = asyncio.get_running_loop().time()
        self._last_seconds = self._last_end - began

    def _dispatch(self) -> None:
        """Threaded: hand queued batches to free threads (the rest wait for one)."""
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="crossrec-score")
        while self._pending and self._in_flight < self.threads:
            key = next(iter(self._pending))
            bundle, calls = self._pending[key]
            # the queue shared among the free threads (16 queued, 2 free: 8 each)
            free = self.threads - self._in_flight
            size = min(self.max_users, -(-len(calls) // free))
            part, rest = calls[:size], calls[size:]
            if rest:
                self._pending[key] = (bundle, rest)
            else:
                del self._pending[key]
            self._queued -= len(part)
            self._in_flight += 1
            _, domain, k, exclude_seen, explain = key
            job = loop.run_in_executor(self._pool, self._timed, bundle, [u for u, _ in part],
                                       domain, k, exclude_seen, explain)
            job.add_done_callback(lambda done, part=part: self._finished(part, done))

    def _timed(self, *args: object) -> tuple[list, float]:
        began = time.perf_counter()
        out = self._score(*args)  # type: ignore[arg-type]
        return out, time.perf_counter() - began

    def _finished(self, part: list[tuple[str, asyncio.Future]], done: asyncio.Future) -> None:
        """On the loop: answer a threaded batch's requests, start the next batch."""
        self._in_flight -= 1
        outcomes, seconds = done.result()  # _score never raises
        self._last_size, self._last_seconds = len(part), seconds
        self._last_end = asyncio.get_running_loop().time()
        self._deliver(part, outcomes)
        if self._pending and not self._scheduled:
            self._dispatch()

    def _score(self, bundle: Bundle, users: list[str], domain: str, k: int,
               exclude_seen: bool, explain: int) -> list[tuple[object, BaseException | None]]:
        """``(recommendation, None)`` or ``(None, error)`` per user; a batch that raises is
        retried one user at a time, so an error goes only where it belongs. Touches no
        future (it may run on a scoring thread)."""
        try:
            recs = bundle.recommend(users, domain, k, exclude_seen, explain=explain)
        except Exception as e:  # noqa: BLE001 - handed to the awaiting request(s)
            if len(users) == 1:
                return [(None, e)]
            return [self._score(bundle, [u], domain, k, exclude_seen, explain)[0]
                    for u in users]
        with self._count_lock:
            self.batches += 1
            self.requests += len(users)
        return [(rec, None) for rec in recs]

    @staticmethod
    def _deliver(part: list[tuple[str, asyncio.Future]],
                 outcomes: list[tuple[object, BaseException | None]]) -> None:
        for (_, future), (rec, error) in zip(part, outcomes, strict=True):
            _settle(future, result=rec, error=error)

    def close(self) -> None:
        """Stop the scoring threads (after the batches in flight)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _settle(future: asyncio.Future, result: object = None,
            error: BaseException | None = None) -> None:
    if future.done():  # the request was cancelled (client gone) meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
