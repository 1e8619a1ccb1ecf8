"""Time-ordered interaction sequences per user, and padded history arrays for ``Query.history``.

Sequences are global item indices across every domain (the mixed-domain sequence of cross-domain
sequential recommendation), ordered by timestamp, ties by row order of the interactions.
Padded arrays are **left-padded** with -1: the most recent item is always in the last column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset

PAD = -1


@dataclass(frozen=True)
class Sequences:
    """Every user's sequence in CSR form: ``items[indptr[u]:indptr[u + 1]]``, oldest first.

    Attributes:
        indptr: ``int64 [n_users + 1]`` offsets.
        items: ``int64 [n_interactions]`` global item indices.
        timestamps: ``int64 [n_interactions]`` aligned with ``items``.
    """

    indptr: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        """``int64 [n_users]`` sequence lengths."""
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        """The sequence of one user (a view), oldest first."""
        return self.items[self.indptr[user]:self.indptr[user + 1]]

    def padded(self, users: np.ndarray | Sequence[int], max_len: int) -> np.ndarray:
        """``int64 [B, max_len]`` the last ``max_len`` items of each user, left-padded with -1."""
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        out = np.full((len(users), max_len), PAD, dtype=np.int64)
        if len(users) == 0 or max_len == 0:
            return out
        end = self.indptr[users + 1]
        length = np.minimum(end - self.indptr[users], max_len)
        # column j of row b holds items[end_b - (max_len - j)] when that is inside the window
        cols = np.arange(max_len)
        back = max_len - cols  # 1 .. max_len positions before the end
        valid = back[None, :] <= length[:, None]
        src = end[:, None] - back[None, :]
        out[valid] = self.items[src[valid]]
        return out


def user_sequences(dataset: MultiDomainDataset,
                   domains: Sequence[str] | None = None) -> Sequences:
    """Time-ordered sequences of every user over ``domains`` (default: all domains).

    The result is cached on the dataset (it is immutable), so models and evaluation share it.
    """
    key = ("sequences", tuple(domains) if domains is not None else None)
    cache = dataset._cache
    if key in cache:
        return cache[key]
    frame = dataset.interactions
    if domains is not None:
        codes = [dataset.info.domain_index(d) for d in domains]
        frame = frame[frame["domain"].isin(codes)]
    user = frame["user"].to_numpy(np.int64)
    ts = frame["timestamp"].to_numpy(np.int64)
    order = np.lexsort((np.arange(len(user)), ts, user))  # user, then time, then row
    counts = np.bincount(user, minlength=dataset.n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    seq = Sequences(indptr, frame["item"].to_numpy(np.int64)[order], ts[order])
    cache[key] = seq
    return seq


def left_pad(history: np.ndarray, max_len: int) -> np.ndarray:
    """Rows of item indices (any -1 padding, anywhere) -> ``int64 [B, max_len]`` left-padded.

    The order of the real items is kept; the last ``max_len`` of them are kept.
    """
    h = np.asarray(history, dtype=np.int64)
    if h.ndim != 2:
        raise ValueError(f"history must be [B, L], got shape {h.shape}")
    real = h >= 0
    counts = real.sum(1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    seq = Sequences(indptr, h[real], np.zeros(int(indptr[-1]), np.int64))
    return seq.padded(np.arange(len(h)), max_len)


def query_history(dataset: MultiDomainDataset, users: np.ndarray, history: np.ndarray | None,
                  max_len: int, domains: Sequence[str] | None = None) -> np.ndarray:
    """The ``int64 [B, max_len]`` left-padded histories a sequential model scores from.

    ``history`` (``[B, L]``, -1 = padding, oldest first), when given, replaces the users'
    training sequences in ``dataset`` (over ``domains``, default all).

    Raises:
        DataError: a user index out of range without a history, or an item index out of range.
    """
    from crossrec.errors import DataError

    if history is not None:
        h = np.asarray(history, dtype=np.int64)
        if h.ndim != 2:
            raise DataError(f"Query.history must be [B, L], got shape {tuple(h.shape)}")
        if h.size and h.max() >= dataset.n_items:
            raise DataError(f"Query.history has item index {int(h.max())} >= {dataset.n_items}")
        if domains is not None:
            allowed = np.zeros(dataset.n_items, bool)
            for d in domains:
                allowed[dataset.domain_items(d)] = True
            h = np.where((h >= 0) & allowed[np.clip(h, 0, None)], h, PAD)
        return left_pad(h, max_len)
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    if len(users) and (users.min() < 0 or users.max() >= dataset.n_users):
        raise DataError(f"user index out of range [0, {dataset.n_users}) and no history given; "
                        "an anonymous user needs Query.history")
    return user_sequences(dataset, domains).padded(users, max_len)
