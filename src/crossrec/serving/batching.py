"""Micro-batching of concurrent ``POST /recommend`` requests: one ``Bundle.recommend`` for all.

Requests that reach the endpoint in the same turn of the event loop (they arrived together, or
while the previous batch was being scored) and ask the same bundle for the same
``(domain, k, exclude_seen, explain)`` are scored by one ``Bundle.recommend`` call of up to
``max_users`` users: the model's ``[B, d] @ [d, n_items]`` product reads the item matrix once
instead of B times, and the per-call work (id lookups, masking, top-k) is vectorised. A request
alone is scored alone and waits for nothing: the batch is run by ``loop.call_soon``, right
after the requests already parsed in this turn have been queued.

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

    def __init__(self, max_users: int = 32) -> None:
        if max_users < 1:
            raise ValueError(f"max_users must be at least 1, got {max_users}")
        self.max_users = max_users
        self._pending: dict[Key, tuple[Bundle, list[tuple[str, asyncio.Future]]]] = {}
        self._scheduled = False
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
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self._scheduled = False
        groups, self._pending = self._pending, {}
        for (_, domain, k, exclude_seen, explain), (bundle, calls) in groups.items():
            for start in range(0, len(calls), self.max_users):
                self._score(bundle, calls[start:start + self.max_users], domain, k,
                            exclude_seen, explain)

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
