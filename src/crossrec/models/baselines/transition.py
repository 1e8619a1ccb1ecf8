"""Sequential co-occurrence: item -> next-item transition counts, recency-weighted history.

A non-neural sequential baseline in the spirit of session-kNN / sequential rules
(Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", UMUAI 2018):
count, over all training sequences (every domain mixed), how often item ``b`` follows item
``a`` within ``window`` steps (a pair ``gap`` steps apart weighs ``gap_decay ** (gap - 1)``;
the reverse direction ``b -> a`` weighs ``backward`` times as much), normalised like a shrunk
cosine: ``C[a, b] / (count(a) ** alpha * count(b) ** beta + shrink)`` with ``count`` the item's
number of training interactions (``alpha = beta = 0.5`` and a ``window`` as long as the
sequences give ItemKNN's similarity with gap weights). A user's score for ``b`` is
``sum_t history_decay ** t * T[h_t, b]`` over their ``max_history`` most recent items
(``t = 0`` the latest), plus ``pop_weight`` times the item's normalised popularity.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.sequence import query_history, user_sequences
from crossrec.models.base import FitOptions, ModelConfig, Query, Recommender


class TransitionConfig(ModelConfig):
    """Transition-model hyper-parameters (see the module docstring)."""

    window: int = Field(10, ge=1)
    gap_decay: float = Field(0.9, gt=0.0, le=1.0)
    backward: float = Field(1.0, ge=0.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    beta: float = Field(0.5, ge=0.0, le=1.0)
    shrink: float = Field(10.0, ge=0.0)
    history_decay: float = Field(0.95, gt=0.0, le=1.0)
    max_history: int = Field(50, ge=1)
    pop_weight: float = Field(1e-3, ge=0.0)


def transition_matrix(seq_indptr: np.ndarray, seq_items: np.ndarray, n_items: int, *,
                      window: int, gap_decay: float, backward: float) -> sp.csr_matrix:
    """Weighted successor counts ``C[a, b]`` over the sequences ``items[indptr[u]:indptr[u+1]]``.

    Returns:
        float32 CSR ``[n_items, n_items]``.
    """
    user = np.repeat(np.arange(len(seq_indptr) - 1), np.diff(seq_indptr))
    rows, cols, vals = [], [], []
    for gap in range(1, window + 1):
        a = np.arange(len(seq_items) - gap)
        same = user[a] == user[a + gap]
        src, dst = seq_items[a[same]], seq_items[a[same] + gap]
        w = np.full(len(src), gap_decay ** (gap - 1), np.float32)
        rows += [src, dst]
        cols += [dst, src]
        vals += [w, w * backward]
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    c = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_items, n_items), dtype=np.float32)
    c.sum_duplicates()
    c.setdiag(0)
    c.eliminate_zeros()
    return c


class Transition(Recommender):
    """Item-to-next-item transitions over mixed-domain sequences; see the module docstring."""

    deterministic = True
    Config = TransitionConfig
    name = "transition"
    config: TransitionConfig

    def __init__(self, config: TransitionConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.matrix: sp.csr_matrix | None = None  # [n_items, n_items] normalised
        self.popularity: np.ndarray | None = None  # float32 [n_items] in [0, 1]
        self._columns: dict[str, sp.csr_matrix] = {}  # domain -> matrix[:, domain items]

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        c = self.config
        self.train_data, self.options = train, options
        seq = user_sequences(train)
        counts = transition_matrix(seq.indptr, seq.items, train.n_items, window=c.window,
                                   gap_decay=c.gap_decay, backward=c.backward)
        pop = np.bincount(seq.items, minlength=train.n_items).astype(np.float64)
        counts = counts.tocoo()
        norm = pop[counts.row] ** c.alpha * pop[counts.col] ** c.beta + c.shrink
        self.matrix = sp.csr_matrix((counts.data / np.maximum(norm, 1e-12),
                                     (counts.row, counts.col)),
                                    shape=counts.shape, dtype=np.float32)
        self._columns = {}
        self.popularity = (pop / max(pop.max(), 1.0)).astype(np.float32)
        return self

    def _weights(self, query: Query) -> sp.csr_matrix:
        """``[B, n_items]`` recency weights of each user's latest ``max_history`` items."""
        train = self._check_fitted()
        history = None if query.history is None else query.history.detach().cpu().numpy()
        h = query_history(train, query.users.detach().cpu().numpy(), history,
                          self.config.max_history)
        age = np.arange(h.shape[1] - 1, -1, -1)  # 0 = the most recent column
        r, col = np.nonzero(h >= 0)
        w = (self.config.history_decay ** age[col]).astype(np.float32)
        out = sp.csr_matrix((w, (r, h[r, col])), shape=(h.shape[0], train.n_items))
        out.sum_duplicates()
        return out

    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Recency-weighted transition scores plus the popularity prior.

        Returns:
            ``[B, n_items(domain)]`` float32.
        """
        train = self._check_fitted()
        items = train.domain_items(domain)
        if domain not in self._columns:
            self._columns[domain] = self.matrix[:, items].tocsr()
        scores = (self._weights(query) @ self._columns[domain]).toarray()
        scores += self.config.pop_weight * self.popularity[items][None, :]
        return torch.from_numpy(scores.astype(np.float32))

    def state(self) -> dict[str, np.ndarray]:
        m = self.matrix
        return {"indptr": m.indptr.astype(np.int64), "indices": m.indices.astype(np.int64),
                "data": m.data.astype(np.float32), "popularity": self.popularity}

    def restore(self, train: MultiDomainDataset, options: FitOptions,
                state: dict[str, np.ndarray]) -> Self:
        self.train_data, self.options = train, options
        arrays = tuple(np.asarray(state[k]) for k in ("data", "indices", "indptr"))
        self.matrix = sp.csr_matrix(arrays, shape=(train.n_items, train.n_items))
        self._columns = {}
        self.popularity = np.asarray(state["popularity"], dtype=np.float32)
        return self
