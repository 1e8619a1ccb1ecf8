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

Scores equal those of a one-user call up to float rounding (a matrix product instead of a
matrix-vector one). A batch that raises is retried one request at a time, so an error reaches
only the request that caused it. Requests with a ``history`` are not batched (the caller scores
them directly).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossrec.bundle import Bundle, Recommendation

Key = tuple[int, str, int, bool, int]  # id(bundle), domain, k, exclude_seen, explain


class RecommendBatcher:
    """Collects the ``recommend`` calls of one event-loop turn and scores them together."""

    def __init__(self, max_users: int = 32, wait_s: float = 0.003, wait_share: float = 0.05,
                 busy_s: float = 0.05) -> None:
        if max_users < 1:
            raise ValueError(f"max_users must be at least 1, got {max_users}")
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
        groups, self._pending = self._pending, {}
        self._last_size, self._queued = self._queued, 0
        began = asyncio.get_running_loop().time()
        for (_, domain, k, exclude_seen, explain), (bundle, calls) in groups.items():
            for start in range(0, len(calls), self.max_users):
                self._score(bundle, calls[start:start + self.max_users], domain, k,
                            exclude_seen, explain)
        self._last_end = asyncio.get_running_loop().time()
        self._last_seconds = self._last_end - began

    def _score(self, bundle: Bundle, calls: list[tuple[str, asyncio.Future]], domain: str,
               k: int, exclude_seen: bool, explain: int) -> None:
        try:
            recs = bundle.recommend([u for u, _ in calls], domain, k, exclude_seen,
                                    explain=explain)
        except Exception as e:  # noqa: BLE001 - handed to the awaiting request(s)
            if len(calls) == 1:
                _settle(calls[0][1], error=e)
                return
            for call in calls:  # one at a time: the error goes only where it belongs
                self._score(bundle, [call], domain, k, exclude_seen, explain)
            return
        self.batches += 1
        self.requests += len(calls)
        for (_, future), rec in zip(calls, recs, strict=True):
            _settle(future, result=rec)


def _settle(future: asyncio.Future, result: object = None,
            error: BaseException | None = None) -> None:
    if future.done():  # the request was cancelled (client gone) meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
