"""Feature group ``time`` (opt-in): how popular a candidate was *when the user was active*.

Catalogues drift: a user whose history ends in one year buys what people bought around then,
not what is popular over the whole log (``popularity``'s counts) or at its end
(``pop:recent``). Time is cut into ``n_buckets`` quantile buckets of the training timestamps
(equal numbers of interactions, whatever the unit or density of the data's clock); a user's
time is their latest training timestamp in any domain. Per (user, candidate) pair:

- ``time:bucket``: log(1 + the candidate's interactions in the user's bucket);
- ``time:nearby``: the same over the user's bucket and its two neighbours;
- ``time:share``: the share of the candidate's interactions in the user's bucket;
- ``time:item_age``: (user's time - the candidate's first interaction) / the log's span
  (negative: the item appeared after the user's last action);
- ``time:user_age``: (the log's end - user's time) / the log's span.

NaN where the user has no training interaction (an anonymous request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset

NAMES = ("time:bucket", "time:nearby", "time:share", "time:item_age", "time:user_age")


@dataclass
class ItemTimes:
    """Per-item counts per time bucket (``counts``: ``int32 [n_items, n_buckets]``), the
    bucket edges (``float64 [n_buckets - 1]``), each item's first timestamp (``float64
    [n_items]``, NaN without interactions) and the log's first / last timestamp (``bounds``)."""

    counts: np.ndarray
    edges: np.ndarray
    first: np.ndarray
    bounds: np.ndarray  # float64 [2]

    def state(self) -> dict[str, np.ndarray]:
        return {"time.counts": self.counts, "time.edges": self.edges, "time.first": self.first,
                "time.bounds": self.bounds}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ItemTimes | None:
        if "time.counts" not in state:
            return None
        return cls(*(np.asarray(state[f"time.{k}"]) for k in ("counts", "edges", "first",
                                                               "bounds")))


def item_times(train: MultiDomainDataset, n_buckets: int = 20) -> ItemTimes:
    """Fit the buckets and counts on ``train``'s interactions."""
    inter = train.interactions
    ts = inter["timestamp"].to_numpy().astype(np.float64)
    items = inter["item"].to_numpy(np.int64)
    n = train.n_items
    if len(ts) == 0:
        return ItemTimes(np.zeros((n, 1), np.int32), np.zeros(0), np.full(n, np.nan),
                         np.zeros(2))
    edges = np.unique(np.quantile(ts, np.linspace(0.0, 1.0, n_buckets + 1)[1:-1]))
    bucket = np.searchsorted(edges, ts, side="right")
    nb = len(edges) + 1
    counts = np.bincount(items * nb + bucket, minlength=n * nb).reshape(n, nb).astype(np.int32)
    first = np.full(n, np.inf)
    np.minimum.at(first, items, ts)
    first[np.isinf(first)] = np.nan
    return ItemTimes(counts, edges, first, np.array([ts.min(), ts.max()]))


def user_last_times(train: MultiDomainDataset) -> np.ndarray:
    """``float64 [n_users]`` each user's latest training timestamp (NaN without one)."""
    key = ("ranker_user_last_ts",)
    if key not in train._cache:
        inter = train.interactions
        last = np.full(train.n_users, -np.inf)
        np.maximum.at(last, inter["user"].to_numpy(np.int64),
                      inter["timestamp"].to_numpy().astype(np.float64))
        last[np.isneginf(last)] = np.nan
        train._cache[key] = last
    return train._cache[key]


def time_features(times: ItemTimes, user_time: np.ndarray, rows: np.ndarray,
                  gitems: np.ndarray) -> list[np.ndarray]:
    """The ``float32 [P]`` columns of ``NAMES``.

    Args:
        times: the fitted buckets and counts.
        user_time: ``float64 [B]`` each batch user's time (NaN: none).
        rows: ``int64 [P]`` batch row of each pair.
        gitems: ``int64 [P]`` global candidate items.
    """
    t = user_time[rows]
    known = ~np.isnan(t)
    nb = times.counts.shape[1]
    b = np.searchsorted(times.edges, np.nan_to_num(t), side="right")
    c = times.counts[gitems]  # [P, nb]
    here = np.take_along_axis(c, b[:, None], 1)[:, 0].astype(np.float64)
    near = here + np.where(b > 0, np.take_along_axis(c, np.maximum(b - 1, 0)[:, None], 1)[:, 0],
                           0) + np.where(b < nb - 1, np.take_along_axis(
                               c, np.minimum(b + 1, nb - 1)[:, None], 1)[:, 0], 0)
    total = c.sum(1).astype(np.float64)
    span = max(float(times.bounds[1] - times.bounds[0]), 1e-12)
    cols = [np.log1p(here), np.log1p(near), here / np.maximum(total, 1.0),
            (t - times.first[gitems]) / span, (times.bounds[1] - t) / span]
    return [np.where(known, col, np.nan).astype(np.float32) for col in cols]
