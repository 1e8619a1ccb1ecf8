"""A hand-built two-domain split, a random one, and a recommender whose scores a test chooses.

(Not named conftest: a second ``conftest`` module would clash with ``tests/conftest.py``.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from crossrec.data import DatasetBuilder, MultiDomainDataset, Split, predefined
from crossrec.models.base import FitOptions, Query, Recommender

# (user, domain, item, part, rating). Items of "movies" get local indices m0..m5 = 0..5 and
# users a, b, c, d = 0, 1, 2, 3 (order of first appearance).
ROWS = [
    ("a", "books", "b0", "train", 4.0),
    ("b", "books", "b1", "train", 3.0),
    ("c", "books", "b0", "train", 5.0),
    ("c", "books", "b1", "train", 2.0),
    ("a", "movies", "m0", "train", 5.0),
    ("a", "movies", "m1", "valid", 4.0),
    ("a", "movies", "m2", "test", 3.0),
    ("b", "movies", "m3", "train", 1.0),
    ("b", "movies", "m4", "train", 2.0),
    ("b", "movies", "m0", "valid", 3.0),
    ("b", "movies", "m5", "test", 4.0),
    ("c", "movies", "m1", "test", 5.0),  # c is cold in movies: no training interaction there
    ("c", "movies", "m4", "test", 1.0),
    ("d", "movies", "m2", "train", 2.0),
    ("d", "movies", "m3", "train", 3.0),
]


def toy_dataset(ratings: bool = False) -> MultiDomainDataset:
    frame = pd.DataFrame(ROWS, columns=["user_id", "domain", "item_id", "part", "rating"])
    frame["timestamp"] = np.arange(len(frame))
    if not ratings:
        frame = frame.drop(columns="rating")
    return DatasetBuilder("toy").add_interactions(frame).build()


def toy_split(ratings: bool = False) -> Split:
    return predefined(toy_dataset(ratings), "movies")


class FixedScores(Recommender):
    """Scores looked up in a fixed ``[n_users, n_items(domain)]`` table per domain."""

    name = "fixed"

    def __init__(self, tables: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.tables = {d: torch.as_tensor(np.asarray(t, np.float32)) for d, t in tables.items()}
        self.calls: list[int] = []

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> FixedScores:
        self.train_data, self.options = train, options
        return self

    def score(self, query: Query, domain: str) -> torch.Tensor:
        self.calls.append(len(query.users))
        return self.tables[domain][query.users.cpu()].to(query.users.device)


def random_split(seed: int = 0, n_users: int = 60, n_items: int = 40) -> Split:
    """Random two-domain interactions, leave-one-out on "movies"."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for dom in ("books", "movies"):
            for i in rng.choice(n_items, size=rng.integers(3, 10), replace=False):
                rows.append((f"u{u}", dom, f"{dom[0]}{i}", int(rng.integers(0, 1000))))
    frame = pd.DataFrame(rows, columns=["user_id", "domain", "item_id", "timestamp"])
    from crossrec.data import leave_one_out

    return leave_one_out(DatasetBuilder("random").add_interactions(frame).build(), "movies")
