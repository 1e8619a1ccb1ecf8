"""Sharded evaluation: split the evaluated users into ``n`` fixed parts, evaluate each part
anywhere (another process, another machine), merge the parts into the single-process result.

A user's shard is a hash of its index (``shard_of``), so it does not depend on which other
users are evaluated, on the batch size or on the order of the work. Sampled negatives are keyed
by ``(seed, user, case)`` (``mix64``), so a case gets the same candidates in every shard
layout; the merged per-user rows and summary equal those of ``evaluate`` without ``shard``
exactly.

Example:
    >>> parts = [evaluate(model, split, shard=(i, 4)) for i in range(4)]  # doctest: +SKIP
    >>> merge_results(parts).summary  # == evaluate(model, split).summary  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crossrec.eval.result import EvalResult, summarize

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def mix64(*keys: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash of integer keys (broadcast together), ``uint64[...]``: splitmix64 applied
    key by key. Equal keys give equal hashes on every machine; nearby keys look unrelated."""
    arrays = [np.asarray(k).astype(np.uint64) for k in keys]
    h = np.zeros(np.broadcast_shapes(*(a.shape for a in arrays)), np.uint64)
    for a in arrays:
        h = _splitmix(h ^ a)
    return h


def stream(keys: np.ndarray, j: np.ndarray | int) -> np.ndarray:
    """Value ``j`` of the splitmix64 stream seeded by each key (broadcast), ``uint64``: one
    mixing pass, so long runs of draws stay cheap."""
    with np.errstate(over="ignore"):
        return _splitmix(np.asarray(keys, np.uint64)
                         + np.asarray(j).astype(np.uint64) * _GOLDEN)


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``(i, n)`` as ints, or ValueError unless ``0 <= i < n``."""
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError) as e:
        raise ValueError(f"shard must be a pair (i, n), got {shard!r}") from e
    if not 0 <= i < n:
        raise ValueError(f"shard (i, n) needs 0 <= i < n, got {shard!r}")
    return i, n


def shard_of(users: np.ndarray, n: int) -> np.ndarray:
    """The shard ``0..n-1`` of each user index, ``int64[len(users)]``."""
    return (mix64(np.asarray(users, np.int64), 0x5AD) % np.uint64(n)).astype(np.int64)


def in_shard(users: np.ndarray, shard: tuple[int, int] | None) -> np.ndarray:
    """``bool[len(users)]``: which users belong to ``shard = (i, n)`` (all when None)."""
    if shard is None:
        return np.ones(len(users), bool)
    i, n = check_shard(shard)
    return shard_of(users, n) == i


def merge_results(results: Sequence[EvalResult]) -> EvalResult:
    """The single-process result from the results of ``evaluate(..., shard=(i, n))``,
    ``i = 0..n-1``: per-user rows in the same order, the summary recomputed from them.

    Raises:
        ValueError: results of different evaluations, or shards missing or given twice.
    """
    if not results:
        raise ValueError("merge_results needs at least one result")
    first = results[0]
    shards = [r.params.get("shard") for r in results]
    if any(s is None for s in shards):
        raise ValueError("merge_results takes results of evaluate(..., shard=(i, n)); "
                         f"got shards {shards}")
    n = shards[0][1]
    if sorted(tuple(s) for s in shards) != [(i, n) for i in range(n)]:
        raise ValueError(f"merge_results needs each of shards 0..{n - 1} of {n} once; "
                         f"got {sorted(tuple(s) for s in shards)}")
    params = {k: v for k, v in first.params.items() if k != "shard"}
    for r in results[1:]:
        same = (r.protocol, r.domain, r.part) == (first.protocol, first.domain, first.part)
        if not same or {k: v for k, v in r.params.items() if k != "shard"} != params:
            raise ValueError(f"cannot merge {r!r} (params {r.params}) with {first!r} "
                             f"(params {first.params}): not the same evaluation")
    frame = pd.concat([r.per_user for r in results if len(r.per_user)] or [first.per_user])
    if first.protocol == "full":  # one row per user, sorted by user
        frame = frame.sort_values("user", kind="stable")
    else:  # one row per case; the index holds the case's position in the truth
        frame = frame.sort_index(kind="stable")
    frame = frame.reset_index(drop=True)
    return EvalResult(first.protocol, first.domain, first.part, frame, summarize(frame),
                      params)
