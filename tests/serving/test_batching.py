"""Micro-batching of concurrent POST /recommend requests (crossrec.serving.batching)."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from serving_toy import AUTH, KEY

from crossrec.errors import DataError
from crossrec.serving.batching import RecommendBatcher


def some_users(bundle, n: int) -> list[str]:
    """``n`` training users of the bundle plus an id it has never seen (popular fallback)."""
    return [str(u) for u in bundle.train.users.ids[:n]] + ["never-seen-user"]


def test_concurrent_calls_are_scored_together_with_the_same_answers(bundle):
    users = some_users(bundle, 19)  # 20 calls, at most 8 a batch: 3 batches
    batcher = RecommendBatcher(max_users=8)

    async def all_at_once():
        return await asyncio.gather(*(batcher.recommend(bundle, u, "target", 10, True, 0)
                                      for u in users))

    got = asyncio.run(all_at_once())
    assert (batcher.batches, batcher.requests) == (3, 20)
    for u, rec in zip(users, got, strict=True):
        alone = bundle.recommend([u], "target", 10)[0]
        assert rec.user_id == u and rec.item_ids == alone.item_ids
        assert (rec.strategy, rec.basis, rec.user_known) == \
            (alone.strategy, alone.basis, alone.user_known)
        np.testing.assert_allclose(rec.scores, alone.scores, rtol=1e-5, atol=1e-6)
    assert got[-1].strategy == "popular_fallback" and not got[-1].user_known


def test_different_arguments_are_not_mixed(bundle):
    users = some_users(bundle, 3)
    batcher = RecommendBatcher()

    async def mixed():
        return await asyncio.gather(*(batcher.recommend(bundle, u, "target", k, True, 0)
                                      for u in users for k in (3, 7)))

    got = asyncio.run(mixed())
    assert [len(r.item_ids) for r in got] == [3, 7] * len(users)
    assert batcher.batches == 2  # one per k


class Flaky:
    """A bundle stand-in whose recommend fails whenever user "bad" is in the call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def recommend(self, user_ids, domain, k, exclude_seen=True, *, explain=0):
        self.calls.append(list(user_ids))
        if "bad" in user_ids:
            raise DataError("no such thing for 'bad'")
        return [f"answer-{u}" for u in user_ids]


def test_an_error_reaches_only_the_request_that_caused_it():
    flaky, batcher = Flaky(), RecommendBatcher()

    async def run():
        return await asyncio.gather(*(batcher.recommend(flaky, u, "d", 5, True, 0)
                                      for u in ("a", "bad", "c")), return_exceptions=True)

    a, bad, c = asyncio.run(run())
    assert (a, c) == ("answer-a", "answer-c")
    assert isinstance(bad, DataError)
    assert flaky.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_a_lone_request_is_scored_at_once():
    flaky, batcher = Flaky(), RecommendBatcher()
    assert asyncio.run(batcher.recommend(flaky, "a", "d", 5, True, 0)) == "answer-a"
    assert flaky.calls == [["a"]]
    with pytest.raises(ValueError, match="max_users"):
        RecommendBatcher(0)


@pytest.mark.parametrize("batch_users", [1, 32])
def test_concurrent_http_requests_get_the_answers_of_sequential_ones(bundle, tmp_path,
                                                                     batch_users):
    from crossrec.serving.app import create_app
    from crossrec.serving.auth import KeyRing, digest
    from crossrec.serving.settings import ServeSettings

    app = create_app(bundle, ServeSettings(events=str(tmp_path / "events.sqlite"),
                                           batch_users=batch_users), keys=KeyRing([digest(KEY)]))
    users = some_users(bundle, 15)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            async def one(u):
                r = await http.post("/recommend", json={"user_id": u, "k": 10}, headers=AUTH)
                assert r.status_code == 200, r.text
                return r.json()

            together = await asyncio.gather(*(one(u) for u in users))
            return together, [await one(u) for u in users]

    together, sequential = asyncio.run(run())
    for a, b in zip(together, sequential, strict=True):
        assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
        assert a["strategy"] == b["strategy"] and a["basis"] == b["basis"]
    batcher = app.state.batcher
    assert batcher.requests == 2 * len(users)
    if batch_users == 1:
        assert batcher.batches == 2 * len(users)
    else:  # the sequential half is one call each; the concurrent half shares calls
        assert batcher.batches < 2 * len(users)


def test_when_busy_a_batch_waits_briefly_for_the_clients_just_answered():
    """After a batch of several, the next one waits up to ``wait_s`` so that the requests of
    the clients just answered join it (not "1, 15, 1, 15" with 16 closed-loop clients)."""
    flaky, batcher = Flaky(), RecommendBatcher(wait_s=0.2, wait_share=1e9, busy_s=5.0)

    async def run():
        await asyncio.gather(*(batcher.recommend(flaky, u, "d", 5, True, 0) for u in "abc"))
        first = asyncio.ensure_future(batcher.recommend(flaky, "x", "d", 5, True, 0))
        await asyncio.sleep(0.02)  # a client answered above sends its next request
        return await asyncio.gather(first, batcher.recommend(flaky, "y", "d", 5, True, 0))

    assert asyncio.run(run()) == ["answer-x", "answer-y"]
    assert flaky.calls == [["a", "b", "c"], ["x", "y"]]


def test_a_lone_client_and_a_full_batch_never_wait():
    flaky, batcher = Flaky(), RecommendBatcher(max_users=2, wait_s=30.0, wait_share=1e9,
                                               busy_s=60.0)

    async def run():
        for u in "abc":  # batches of one: not busy, scored at once
            assert await batcher.recommend(flaky, u, "d", 5, True, 0) == f"answer-{u}"
        await asyncio.gather(*(batcher.recommend(flaky, u, "d", 5, True, 0) for u in "de"))
        # busy now, but max_users requests are queued: no 30 s wait
        await asyncio.wait_for(asyncio.gather(
            *(batcher.recommend(flaky, u, "d", 5, True, 0) for u in "fg")), timeout=5)

    asyncio.run(run())
    assert flaky.calls == [["a"], ["b"], ["c"], ["d", "e"], ["f", "g"]]


def test_the_wait_is_a_share_of_the_last_batchs_time():
    batcher = RecommendBatcher(wait_s=0.003, wait_share=0.05)
    slow = Flaky()
    slow.recommend = lambda users, *a, **k: (time.sleep(0.02), [f"answer-{u}" for u in users])[1]

    async def run():
        await asyncio.gather(*(batcher.recommend(slow, u, "d", 5, True, 0) for u in "ab"))
        assert 0.02 <= batcher._last_seconds < 1.0
        task = asyncio.ensure_future(batcher.recommend(slow, "c", "d", 5, True, 0))
        await asyncio.sleep(0)
        assert batcher._timer is not None  # busy: waits min(3 ms, 5 % of >= 20 ms) = 1-3 ms
        return await task

    assert asyncio.run(run()) == "answer-c"
