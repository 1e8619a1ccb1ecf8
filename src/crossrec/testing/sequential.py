"""A synthetic sequential two-domain dataset whose next item is known.

Every user walks a fixed chain that alternates between the domains: ``a_k -> b_k -> a_{k+1}
-> b_{k+1} -> ...`` (indices modulo the domain size), from a random starting point. The next
item follows deterministically from the last one, and every user's last item is held out, so
a sequential model must beat popularity by a wide margin, and a model that ignores the order
of the history cannot be exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.split import TRUTH_COLUMNS, Split

DOMAINS = ("a", "b")


def make_chain(n_users: int = 200, n_items: int = 30, *, length: tuple[int, int] = (6, 12),
               seed: int = 0) -> MultiDomainDataset:
    """Users walking the alternating chain; see the module docstring.

    Args:
        n_users: users.
        n_items: items per domain.
        length: inclusive range of sequence lengths.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(2 * n_items))
        for t in range(int(rng.integers(length[0], length[1] + 1))):
            step = start + t
            domain = DOMAINS[step % 2]
            rows.append((f"u{u}", f"{domain}{(step // 2) % n_items}", domain, 1000 + t))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "timestamp"])
    items = pd.DataFrame([(f"{d}{i}", d, f"{d} item {i}") for d in DOMAINS
                          for i in range(n_items)], columns=["item_id", "domain", "title"])
    return DatasetBuilder("chain").add_interactions(frame).add_items(items).build(
        domains=DOMAINS)


def last_item_split(dataset: MultiDomainDataset, target: str = "b") -> Split:
    """Each user's last interaction (any domain) is held out: valid for even user indices,
    test for odd ones; everything before stays in training."""
    inter = dataset.interactions
    order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(),
                        inter["user"].to_numpy()))
    users = inter["user"].to_numpy()[order]
    last = np.r_[users[1:] != users[:-1], True]
    held = np.zeros(len(inter), bool)
    held[order[last]] = True
    even = inter["user"].to_numpy() % 2 == 0
    return Split(train=dataset.with_interactions(inter[~held]),
                 valid=inter[held & even][TRUTH_COLUMNS].reset_index(drop=True),
                 test=inter[held & ~even][TRUTH_COLUMNS].reset_index(drop=True),
                 target=target, name="last_item")
