"""Leak-free training episodes for the ranker, carved from the training split only.

The ranker learns from (user, candidate, label) rows that look like the evaluation protocol,
without ever seeing valid/test truth: a nested split of ``split.train``.

- ``cold_users``: among training users with interactions in the ranked domain *and* another
  domain, a seeded sample loses its rows in the ranked domain (all of them, or all but the
  first ``n_shots``); those hidden rows are the labels. Mirrors cold-start / few-shot users.
- ``last_item``: every sampled user's last training interaction (any domain) is hidden and is
  the label, ranked in its own domain. Mirrors next-item / leave-one-out protocols. With
  ``position = p > 0``, the user's last ``p`` interactions are dropped as well and the one
  before them is the label: the same question asked ``p`` steps earlier.
- ``cold_items``: a seeded sample of the ranked domain's items loses every interaction; the
  users who had them are labelled with them. Mirrors cold-start items.

The candidate models are fitted on ``Episodes.train`` (the rest), never on the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from crossrec.errors import DataError

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset

EpisodeKind = Literal["cold_users", "last_item", "cold_items"]


@dataclass(frozen=True)
class Episodes:
    """A nested split of the training data.

    Attributes:
        train: the training interactions minus the hidden rows (candidate models fit here).
        labels: hidden rows, columns ``user, item, domain`` (global item indices).
        kind: how they were carved.
    """

    train: MultiDomainDataset
    labels: pd.DataFrame
    kind: str

    def users(self, domain: int) -> np.ndarray:
        """Sorted users with a label in domain index ``domain``."""
        lab = self.labels
        return np.unique(lab["user"].to_numpy()[lab["domain"].to_numpy() == domain])


def _sample(rng: np.random.Generator, pool: np.ndarray, ratio: float, cap: int,
            fold: int = 0) -> np.ndarray:
    """The ``fold``-th disjoint block of ``min(cap, ratio * len(pool))`` of a seeded
    permutation of ``pool`` (fold 0: the first block)."""
    n = min(cap, max(1, int(round(ratio * len(pool)))))
    return np.sort(rng.permutation(pool)[fold * n:(fold + 1) * n])


def make_episodes(train: MultiDomainDataset, kind: EpisodeKind, domain: str, *,
                  ratio: float = 0.2, max_users: int = 3000, n_shots: int = 0,
                  seed: int = 0, fold: int = 0, position: int = 0) -> Episodes:
    """Carve ranker episodes out of ``train`` (see the module docstring).

    Args:
        train: the training split (``split.train``); nothing else is read.
        kind: ``cold_users``, ``last_item`` or ``cold_items``.
        domain: the ranked domain (``cold_users``, ``cold_items``).
        ratio: share of eligible users (items for ``cold_items``) sampled.
        max_users: cap on labelled users.
        n_shots: ``cold_users`` only: each sampled user keeps their first ``n_shots`` rows.
        seed: the draw.
        fold: which block of the seed's permutation is hidden: folds ``0..F-1`` of one seed
            hide disjoint users (items), so ``F`` episode sets together label ``F`` times as
            many users while each fold's candidate models still see ``1 - ratio`` of them.
        position: ``last_item`` only: label the interaction ``position`` steps before the last
            (the later ones are dropped, not labelled).

    Raises:
        DataError: nothing eligible (e.g. no user has the domain and another one).
    """
    rng = np.random.default_rng(seed)
    inter = train.interactions
    users = inter["user"].to_numpy()
    if kind == "last_item":
        order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(), users))
        sorted_users = users[order]
        # steps from the end of each user's sequence: 0 = the last interaction
        from_end = np.zeros(len(order), dtype=np.int64)
        from_end[order] = (pd.Series(sorted_users[::-1]).groupby(sorted_users[::-1])
                           .cumcount().to_numpy()[::-1])
        size = np.bincount(users, minlength=train.n_users)
        eligible = np.flatnonzero(size >= 2 + position)
        if len(eligible) == 0:
            raise DataError(f"ranker episodes 'last_item': no user has {2 + position} training "
                            "interactions")
        chosen = np.isin(users, _sample(rng, eligible, ratio, max_users, fold))
        hidden = chosen & (from_end == position)
        dropped = chosen & (from_end < position)
        labels = inter.loc[hidden, ["user", "item", "domain"]].reset_index(drop=True)
        return Episodes(train.with_interactions(inter[~(hidden | dropped)]), labels, kind)
    else:
        d = train.info.domain_index(domain)
        in_dom = inter["domain"].to_numpy() == d
        if kind == "cold_users":
            others = [train.domain_users(o) for o in train.domains if o != domain]
            pool = np.intersect1d(train.domain_users(domain),
                                  np.unique(np.concatenate(others)) if others else [])
            if n_shots:
                counts = np.bincount(users[in_dom], minlength=train.n_users)
                pool = pool[counts[pool] > n_shots]
            if len(pool) == 0:
                raise DataError(f"ranker episodes 'cold_users': no training user has domain "
                                f"{domain!r} and another domain")
            chosen = _sample(rng, pool, ratio, max_users, fold)
            hidden = in_dom & np.isin(users, chosen)
            if n_shots:
                idx = np.flatnonzero(hidden)
                ts = inter["timestamp"].to_numpy()[idx]
                order = idx[np.lexsort((idx, ts, users[idx]))]
                rank = pd.Series(users[order]).groupby(users[order]).cumcount().to_numpy()
                hidden[order[rank < n_shots]] = False
        elif kind == "cold_items":
            items = inter["item"].to_numpy()
            active = np.unique(items[in_dom])
            if len(active) < 2:
                raise DataError(f"ranker episodes 'cold_items': domain {domain!r} has "
                                f"{len(active)} items with interactions")
            held = _sample(rng, active, ratio, len(active) - 1, fold)
            hidden = np.isin(items, held)
            labelled = np.unique(users[hidden])
            if len(labelled) > max_users:
                keep = _sample(rng, labelled, 1.0, max_users)
                # rows of unsampled users still leave training (the items stay cold)
                hidden_labels = hidden & np.isin(users, keep)
                labels = inter.loc[hidden_labels, ["user", "item", "domain"]]
                return Episodes(train.with_interactions(inter[~hidden]),
                                labels.reset_index(drop=True), kind)
        else:
            raise DataError(f"unknown ranker episode kind {kind!r}")
    labels = inter.loc[hidden, ["user", "item", "domain"]].reset_index(drop=True)
    return Episodes(train.with_interactions(inter[~hidden]), labels, kind)
