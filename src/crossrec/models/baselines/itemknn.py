"""ItemKNN: item-item cosine similarity with shrinkage, top-k neighbours, sparse throughout.

Deshpande & Karypis, "Item-based top-N recommendation algorithms" (TOIS 2004), with the
shrunk cosine of Koren (2008). The score of a candidate item is the sum of its similarities to
the items of the user's history.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import BaselineConfig, FitOptions, Query, Recommender

MAX_BLOCK_ENTRIES = 50_000_000  # bound on co-occurrence entries computed at once


class ItemKNNConfig(BaselineConfig):
    """ItemKNN hyper-parameters.

    Attributes:
        neighbors: similar items kept per item and per scored domain.
        shrink: added to the cosine denominator; damps similarities built on few users.
    """

    neighbors: int = Field(200, ge=1)
    shrink: float = Field(10.0, ge=0.0)


def item_similarity(
    matrix: sp.csr_matrix, columns: slice, *, neighbors: int, shrink: float,
    user_power: float = 0.0, row_power: float = 0.5, column_power: float = 0.5,
) -> sp.csr_matrix:
    """Item-item similarity of every item to the items in ``columns``, top-k per row.

    ``sim[i, j] = sum_{u in U_i ∩ U_j} |I_u|^-user_power / (|U_i|^row_power |U_j|^column_power
    + shrink)`` on binary data, with ``sim[i, i] = 0``; each row keeps its ``neighbors``
    largest entries (ties: lower column). The defaults are the shrunk cosine
    ``|U_i ∩ U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink)``; ``user_power = row_power = alpha``,
    ``column_power = beta``, ``shrink = 0`` is RP3beta's walk (``rp3beta.py``).

    Args:
        matrix: binary user x item matrix ``[n_users, n_items]``.
        columns: the items (columns of ``matrix``) similarities are computed to.
        neighbors: entries kept per row.
        shrink: shrinkage term (0 = plain cosine).
        user_power: a co-occurrence through user ``u`` weighs ``|I_u|^-user_power``.
        row_power, column_power: the powers of the two items' user counts dividing it.

    Returns:
        float32 CSR ``[n_items, columns.stop - columns.start]``.
    """
    matrix = matrix.tocsr().astype(np.float32)
    n_items = matrix.shape[1]
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    row_norms, col_norms = _power(counts, row_power), _power(counts, column_power)
    by_item = matrix.T.tocsr()  # [n_items, n_users]
    if user_power:
        per_user = np.asarray(matrix.sum(axis=1)).ravel()
        weight = np.power(np.maximum(per_user, 1.0), -user_power).astype(np.float32)
        by_item = (by_item @ sp.diags(weight)).tocsr()
    to = matrix[:, columns].tocsc()  # [n_users, n_cols]
    n_cols = to.shape[1]
    chunk = max(1, MAX_BLOCK_ENTRIES // max(1, n_cols))
    blocks = []
    for start in range(0, n_items, chunk):
        stop = min(n_items, start + chunk)
        co = (by_item[start:stop] @ to).tocsr()
        co.sort_indices()
        co = co.tocoo()
        rows, cols = co.row.astype(np.int64), co.col.astype(np.int64)
        data = co.data / (row_norms[rows + start] * col_norms[cols + columns.start] + shrink)
        keep = (rows + start != cols + columns.start) & (data > 0)
        rows, cols, data = rows[keep], cols[keep], data[keep].astype(np.float32)
        order = np.lexsort((cols, -data, rows))  # by row, then similarity desc, then column
        rows, cols, data = rows[order], cols[order], data[order]
        first = np.searchsorted(rows, rows, side="left")
        top = np.arange(len(rows)) - first < neighbors
        blocks.append(
            sp.csr_matrix((data[top], (rows[top], cols[top])), shape=(stop - start, n_cols))
        )
    if not blocks:
        return sp.csr_matrix((0, n_cols), dtype=np.float32)
    sim = sp.vstack(blocks, format="csr").astype(np.float32)
    sim.sort_indices()
    return sim


def _power(x: np.ndarray, p: float) -> np.ndarray:
    """``float32 x ** p``; ``np.sqrt`` for 0.5 (the cosine's norms, as they always were)."""
    return (np.sqrt(x) if p == 0.5 else np.power(x, p)).astype(np.float32)


class ItemKNN(Recommender):
    """Item-based nearest neighbours over the target catalogue or all domains merged.

    With ``train_on="all"`` the similarities link items across domains through the users who
    interacted in both, so a user with only source history gets target scores (transfer).
    Users without history in the catalogue get all-zero scores.
    """

    deterministic = True

    Config = ItemKNNConfig
    name = "itemknn"
    config: ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.similarity: dict[str, sp.csr_matrix] = {}  # domain -> [n_catalogue, n_domain]
        self._matrix: sp.csr_matrix | None = None  # binary [n_users, n_catalogue] after fit

    def _domains(self, train: MultiDomainDataset, target: str) -> tuple[str, ...]:
        return (target,) if self.config.train_on == "target" else train.domains

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        self.train_data, self.options = train, options
        catalogue = self.config.catalogue(train, options.target)
        matrix = train.user_items(None)[:, catalogue].tocsr()
        matrix.data[:] = 1.0
        self._matrix = matrix
        self.similarity = {}
        self._domain_similarity(options.target)  # the others when first scored or saved
        return self

    def _terms(self) -> dict[str, float]:
        """The weighting of ``item_similarity`` (the shrunk cosine)."""
        return {"shrink": self.config.shrink}

    def _domain_similarity(self, domain: str) -> sp.csr_matrix:
        """``[n_catalogue, n_items(domain)]`` similarities, computed on first use: a merged
        catalogue scored on its target only never pays for the source domains' columns."""
        if domain not in self.similarity:
            train = self.train_data
            catalogue = self.config.catalogue(train, self.options.target)
            items = train.domain_items(domain)
            columns = slice(items.start - catalogue.start, items.stop - catalogue.start)
            self.similarity[domain] = item_similarity(
                self._matrix, columns, neighbors=self.config.neighbors, **self._terms()
            )
        return self.similarity[domain]

    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Sum of similarities to the history items.

        Returns:
            ``[B, n_items(domain)]`` float32.
        """
        train = self._check_fitted()
        self.config.check_domain(train, domain, self.options.target)
        history = self.history_matrix(query, self.config.catalogue(train, self.options.target))
        scores = (history @ self._domain_similarity(domain)).toarray().astype(np.float32)
        return torch.from_numpy(scores)

    def item_links(self, history: np.ndarray, domain: str, items: np.ndarray) -> np.ndarray:
        """``float32 [L, C]`` the similarity from each global ``history`` item to each local
        ``items`` item of ``domain`` (0 outside the catalogue): the terms of the score (the
        ranker's ``links`` features)."""
        train = self._check_fitted()
        catalogue = self.config.catalogue(train, self.options.target)
        sim = self._domain_similarity(domain)
        local = np.asarray(history) - catalogue.start
        inside = np.flatnonzero((local >= 0) & (local < sim.shape[0]))
        out = np.zeros((len(local), len(items)), dtype=np.float32)
        if len(inside):
            out[inside] = sim[local[inside]][:, np.asarray(items)].toarray()
        return out

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        for domain in self._domains(self._check_fitted(), self.options.target):
            sim = self._domain_similarity(domain)
            out[f"{domain}.indptr"] = sim.indptr.astype(np.int64)
            out[f"{domain}.indices"] = sim.indices.astype(np.int64)
            out[f"{domain}.data"] = sim.data.astype(np.float32)
        return out

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        self.train_data, self.options = train, options
        catalogue = self.config.catalogue(train, options.target)
        n_rows = catalogue.stop - catalogue.start
        self.similarity = {}
        for domain in self._domains(train, options.target):
            arrays = [np.asarray(state[f"{domain}.{k}"]) for k in ("data", "indices", "indptr")]
            shape = (n_rows, train.info.n_domain_items(domain))
            self.similarity[domain] = sp.csr_matrix(tuple(arrays), shape=shape)
        return self
