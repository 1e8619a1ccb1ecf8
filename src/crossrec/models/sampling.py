"""Uniform negative sampling from the positive's domain, avoiding training positives.

Every model that trains on sampled negatives (BPR-MF, CMF, EMCDR, PTUPCDR, DANN, CoNet,
shared-bottom) holds one ``NegativeSampler``; it keeps the sorted training keys of the last
dataset it sampled for, so an epoch does not sort the interactions again.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset

NEGATIVE_RETRIES = 10  # resampling rounds for negatives that hit a training positive


class NegativeSampler:
    """``n_negatives`` uniform negatives per positive, drawn from the positive's domain.

    The sorted ``positive_keys`` of one training dataset are cached (held by a weak reference
    to that dataset, so a new dataset never reuses stale keys); the cache is not pickled.
    """

    def __init__(self) -> None:
        self._train: weakref.ref[MultiDomainDataset] | None = None
        self._keys: np.ndarray | None = None

    def keys(self, train: MultiDomainDataset) -> np.ndarray:
        """Sorted unique int64 ``user * n_items + item`` of ``train``'s interactions."""
        if self._keys is None or self._train is None or self._train() is not train:
            self._train, self._keys = weakref.ref(train), positive_keys(train)
        return self._keys

    def sample(
        self, train: MultiDomainDataset, users: np.ndarray, items: np.ndarray,
        n_negatives: int, rng: np.random.Generator,
    ) -> np.ndarray:
        """int64 ``[b, n_negatives]`` global negatives for ``users [b]`` / ``items [b]``
        (see :func:`sample_negatives`)."""
        return sample_negatives(train, users, items, n_negatives, self.keys(train), rng)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a cache: rebuilt on first use (weak references do not pickle)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()


def positive_keys(train: MultiDomainDataset) -> np.ndarray:
    """Sorted unique ``user * n_items + item`` of every training interaction (int64)."""
    inter = train.interactions
    keys = inter["user"].to_numpy(np.int64) * train.n_items + inter["item"].to_numpy(np.int64)
    return np.unique(keys)


def sample_negatives(
    train: MultiDomainDataset, users: np.ndarray, items: np.ndarray, n_negatives: int,
    keys: np.ndarray, rng: np.random.Generator,
) -> np.ndarray:
    """Uniform negatives from the domain of each positive, avoiding training positives.

    Args:
        train: the training data.
        users: ``[b]`` user indices.
        items: ``[b]`` positive global item indices.
        n_negatives: negatives per positive.
        keys: ``positive_keys(train)``.
        rng: the random generator.

    Returns:
        int64 ``[b, n_negatives]`` global item indices (a negative may still be a positive
        for a user who interacted with nearly all of a domain).
    """
    offsets = np.asarray(train.info.item_offsets, dtype=np.int64)
    dom = train.item_domain[items].astype(np.int64)
    start = np.repeat(offsets[dom][:, None], n_negatives, axis=1)
    size = np.repeat((offsets[dom + 1] - offsets[dom])[:, None], n_negatives, axis=1)
    neg = start + (rng.random(start.shape) * size).astype(np.int64)
    base = users.astype(np.int64)[:, None] * train.n_items
    for _ in range(NEGATIVE_RETRIES):
        probe = base + neg
        clash = _in_sorted(keys, probe)
        if not clash.any():
            break
        neg[clash] = start[clash] + (rng.random(int(clash.sum())) * size[clash]).astype(np.int64)
    return neg


def _in_sorted(keys: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """``probe``'s elements found in the sorted ``keys`` (boolean, ``probe``'s shape).

    The probes are searched in sorted order: numpy's binary search starts each one from the
    previous answer, which keeps the search in cache when ``keys`` is large (2-2.5x faster at
    1-20 M keys than searching them in draw order).
    """
    flat = probe.ravel()
    order = np.argsort(flat, kind="stable")
    at = np.empty_like(order)
    at[order] = np.searchsorted(keys, flat[order])
    found = keys[np.minimum(at, len(keys) - 1)] == flat
    return found.reshape(probe.shape)
