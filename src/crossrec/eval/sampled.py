"""The negatives of sampled next-item evaluation: drawn once per (split, part, N, seed).

Each distinct truth row ``(user, item)`` of a part gets N *distinct* items of the truth item's
own domain, none of them in the user's history (training items; at test time the valid items
too) nor the truth item itself. Item ``j`` of the domain gets the random key ``stream(mix64(seed,
user, item), j)`` (splitmix64, ``crossrec.eval.shard``) and the N eligible items with the
smallest keys are drawn: a uniform draw without replacement that depends on ``(seed, user,
item)`` alone — the same on every machine, for every model and whatever else is evaluated.

The draws are kept in memory per split (so the models of a benchmark share one draw) and can be
written beside a benchmark's results (``crossrec benchmark`` writes
``OUT/negatives/<part>-seed<S>-n<N>.parquet``).
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossrec.data.split import Split
from crossrec.errors import DataError
from crossrec.eval.shard import mix64, stream

BLOCK_KEYS = 4_000_000
"""Random keys drawn per block (``cases x n_items(domain)``): bounds memory (32 MB)."""

_CACHE: weakref.WeakKeyDictionary[Split, dict[tuple[str, int, int], pd.DataFrame]] = (
    weakref.WeakKeyDictionary())


def sampled_negatives(split: Split, part: str, n: int, seed: int) -> pd.DataFrame:
    """The negatives of every distinct truth row of ``split``'s ``part`` (any domain).

    Returns:
        Columns ``user``, ``item`` (global item index of the truth), ``domain`` (its name)
        and ``negatives`` (``int64[n]`` global item indices, ascending), sorted by user, item.

    Raises:
        ValueError: ``n`` < 1 or ``part`` not valid / test; DataError: a user has fewer than
            ``n`` eligible items in a domain (the message names the user and the domain).
    """
    if n < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n}")
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', not {part!r}")
    cached = _CACHE.setdefault(split, {})
    if (part, n, seed) not in cached:
        cached[(part, n, seed)] = _draw(split, part, n, seed)
    return cached[(part, n, seed)]


def _draw(split: Split, part: str, n: int, seed: int) -> pd.DataFrame:
    train = split.train
    frame = (split.valid if part == "valid" else split.test)[["user", "item", "domain"]]
    frame = frame.drop_duplicates(["user", "item"]).sort_values(["user", "item"])
    out = []
    for code, domain in enumerate(train.domains):
        cases = frame[frame["domain"].to_numpy() == code]
        if len(cases) == 0:
            continue
        span = train.domain_items(domain)
        users = cases["user"].to_numpy(np.int64)
        items = cases["item"].to_numpy(np.int64)
        seen = known_items(split, part, span)
        negatives = np.empty((len(cases), n), np.int64)
        step = max(1, BLOCK_KEYS // max(1, span.stop - span.start))
        for a in range(0, len(cases), step):
            b = min(len(cases), a + step)
            negatives[a:b] = _draw_block(split, users[a:b], items[a:b] - span.start, seen, n,
                                         seed, domain) + span.start
        out.append(pd.DataFrame({"user": users, "item": items, "domain": domain,
                                 "negatives": list(negatives)}))
    if not out:
        raise DataError(f"no {part} truth to evaluate")
    return pd.concat(out, ignore_index=True).sort_values(["user", "item"], ignore_index=True)


def _draw_block(split: Split, users: np.ndarray, local: np.ndarray, seen: sp.csr_matrix,
                n: int, seed: int, domain: str) -> np.ndarray:
    """``int64[C, n]`` local items: the ``n`` eligible items with the smallest keys."""
    n_dom = seen.shape[1]
    keys = stream(mix64(seed, users, local)[:, None], np.arange(n_dom, dtype=np.int64)[None, :])
    mask = seen[users].toarray() > 0
    mask[np.arange(len(users)), local] = True  # the truth item is never its own negative
    short = np.flatnonzero((~mask).sum(1) < n)
    if len(short):
        c = short[0]
        who = split.train.users.raw(users[c:c + 1])[0]
        raise DataError(f"sampled next-item evaluation: user {who!r} has "
                        f"{int((~mask[c]).sum())} items of domain {domain!r} outside their "
                        f"history; eval.n_negatives = {n} needs at least {n}")
    keys[mask] = np.iinfo(np.uint64).max
    chosen = np.argpartition(keys, n - 1, axis=1)[:, :n] if n < n_dom else np.argsort(keys, 1)
    return np.sort(chosen[:, :n], axis=1)


def known_items(split: Split, part: str, items: slice) -> sp.csr_matrix:
    """Binary ``[n_users, items]``: training items, plus the valid truth when testing."""
    train = split.train
    inter = [train.interactions[["user", "item"]]]
    if part == "test":
        inter.append(split.valid[["user", "item"]])
    frame = pd.concat(inter, ignore_index=True)
    item = frame["item"].to_numpy(np.int64)
    keep = (item >= items.start) & (item < items.stop)
    m = sp.csr_matrix((np.ones(int(keep.sum()), np.float32),
                       (frame["user"].to_numpy(np.int64)[keep], item[keep] - items.start)),
                      shape=(train.n_users, items.stop - items.start))
    m.sum_duplicates()
    m.sort_indices()
    return m
