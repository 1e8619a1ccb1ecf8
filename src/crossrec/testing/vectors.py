"""Synthetic two-tower vectors: a large item catalogue and users, for retrieval tests.

Shaped like a factorised model's view (``Recommender.retrieval_vectors``): items lie around
cluster centres with log-normal norms (popular items have large norms) and carry a bias in the
last column; users lie around the same centres and carry a constant 1 there. The score of a
user for an item is their inner product. Cheap to make at any size (no model to fit).
"""

from __future__ import annotations

import numpy as np


def make_vectors(n_items: int, n_users: int = 1000, dim: int = 64, *, n_clusters: int = 256,
                 spread: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered item and user vectors.

    Args:
        n_items: catalogue size.
        n_users: users (queries).
        dim: factor dimension ``d``; the vectors have ``d + 1`` columns (bias / constant 1).
        n_clusters: cluster centres (drawn ``N(0, I)``).
        spread: standard deviation of a vector around its centre, per dimension.
        seed: random seed.

    Returns:
        ``float32 [n_items, dim + 1]`` items and ``float32 [n_users, dim + 1]`` users.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    items = centres[rng.integers(n_clusters, size=n_items)]
    items = items + spread * rng.normal(size=(n_items, dim))
    items *= rng.lognormal(0.0, 0.25, size=(n_items, 1)) / np.sqrt(dim)
    bias = rng.normal(0.0, 0.5, size=(n_items, 1))
    users = centres[rng.integers(n_clusters, size=n_users)]
    users = (users + spread * rng.normal(size=(n_users, dim))) / np.sqrt(dim)
    return (np.hstack([items, bias]).astype(np.float32),
            np.hstack([users, np.ones((n_users, 1))]).astype(np.float32))
