"""EASE: the closed-form linear item-item autoencoder of Steck (WWW 2019).

``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``, i.e. ``B[i, j] = -P[i, j] / P[j, j]`` off
the diagonal and 0 on it. Dense float32 on the CPU (or ``options.device``); the cost is one
Cholesky factorisation and inverse of an ``[n, n]`` matrix, so the catalogue is capped at
``max_items`` (the most popular items with training interactions).

``fit_subset`` refits on a subset of the training rows (the ranker's episodes hide the rows of
a few thousand users) by a Woodbury update of ``P`` instead of a new inverse: when ``k`` users'
rows change, ``XₑᵀXₑ = XᵀX + VᵀSV`` with ``V`` their old and new rows (``[2k, n]``) and
``S = diag(-1, +1)``, so ``Pₑ = P - P Vᵀ (S + V P Vᵀ)⁻¹ V P``: ``4 k n²`` flops against ``~n³``.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import BaselineConfig, FitOptions, Query, Recommender

GRAM_BLOCK = 2048  # gram-matrix columns computed per sparse product


class EASEConfig(BaselineConfig):
    """EASE hyper-parameters.

    Attributes:
        l2: the ridge penalty λ added to the diagonal of the gram matrix.
        max_items: at most this many items (the most popular ones) enter the model.
    """

    l2: float = Field(500.0, gt=0.0)
    max_items: int = Field(20_000, ge=1)


def ease_weights(matrix: sp.csr_matrix, l2: float, device: str = "cpu") -> torch.Tensor:
    """The EASE item-item weights of a binary user x item matrix.

    Args:
        matrix: ``[n_users, n]`` binary interactions.
        l2: ridge penalty λ.
        device: torch device for the factorisation.

    Returns:
        float32 ``[n, n]`` weights with a zero diagonal; scores are ``history @ B``.
    """
    return _ease_inverse(matrix, l2, device)[0]


def _ease_inverse(matrix: sp.csr_matrix, l2: float, device: str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``ease_weights`` and ``diag(P)`` (float32 ``[n]``), which ``ease_update`` needs."""
    n = matrix.shape[1]
    by_item = matrix.T.tocsr().astype(np.float32)
    gram = np.empty((n, n), dtype=np.float32)
    csc = matrix.tocsc().astype(np.float32)
    for start in range(0, n, GRAM_BLOCK):
        stop = min(n, start + GRAM_BLOCK)
        gram[:, start:stop] = (by_item @ csc[:, start:stop]).toarray()
    g = torch.from_numpy(gram).to(device)
    g.diagonal().add_(l2)
    chol = torch.linalg.cholesky(g)
    del g, gram
    weights = torch.cholesky_inverse(chol)
    del chol
    diag = weights.diagonal().clone()
    weights.div_(-diag.unsqueeze(0))  # column j divided by -P[j, j]
    weights.fill_diagonal_(0.0)
    return weights, diag


def ease_update(weights: torch.Tensor, diag: torch.Tensor, old: sp.csr_matrix,
                new: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """EASE weights after some users' rows change, by a Woodbury update (module docstring).

    Args:
        weights: float32 ``[n, n]`` fitted ``B`` (not modified).
        diag: float32 ``[n]`` its ``diag(P)``.
        old: ``[k, n]`` binary rows of the changed users as ``B`` was fitted on.
        new: ``[k, n]`` their binary rows now (same users, same order).

    Returns:
        The new ``B`` (float32 ``[n, n]``, zero diagonal) and its ``diag(P)``.
    """
    v = sp.vstack([old, new]).tocsr().astype(np.float64)
    sign = np.concatenate([-np.ones(old.shape[0]), np.ones(new.shape[0])])
    p = weights.clone()
    p.mul_(-diag.unsqueeze(0))  # P[i, j] = -B[i, j] * P[j, j] off the diagonal
    p.diagonal().copy_(diag)
    # W = V P ([2k, n]: each row a sum of P's rows) and V P Vᵀ ([2k, 2k]), by sparse products
    w = torch.from_numpy(np.asarray(v.astype(np.float32) @ p.cpu().numpy())).to(p.device)
    inner = torch.from_numpy(np.asarray(v @ w.cpu().numpy().T.astype(np.float64)))
    inner = inner.to(p.device)
    inner.diagonal().add_(torch.from_numpy(sign).to(p.device))  # S⁻¹ = S
    lu, pivots = torch.linalg.lu_factor(inner)
    z = torch.empty_like(w)
    for a in range(0, w.shape[1], GRAM_BLOCK):  # (S + V P Vᵀ)⁻¹ W, float64 in blocks
        z[:, a:a + GRAM_BLOCK] = torch.linalg.lu_solve(lu, pivots,
                                                       w[:, a:a + GRAM_BLOCK].double()).float()
    p.addmm_(w.t(), z, alpha=-1.0)  # P - Wᵀ (S + V P Vᵀ)⁻¹ W
    new_diag = p.diagonal().clone()
    p.div_(-new_diag.unsqueeze(0))
    p.fill_diagonal_(0.0)
    return p, new_diag


class EASE(Recommender):
    """EASE over the target catalogue or all domains merged (``train_on``).

    Items outside the model (no training interaction, or beyond ``max_items``) get a score
    one below the lowest score of the row: last, but finite (no inf/NaN downstream).
    """

    deterministic = True

    Config = EASEConfig
    name = "ease"
    config: EASEConfig

    def __init__(self, config: EASEConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.items: np.ndarray | None = None  # int64[n]: catalogue columns in the model
        self.weights: torch.Tensor | None = None  # float32[n, n]
        self.inverse_diag: torch.Tensor | None = None  # float32[n]: diag(P), after fit only

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        self.train_data, self.options = train, options
        catalogue = self.config.catalogue(train, options.target)
        matrix = train.user_items(None)[:, catalogue].tocsr()
        matrix.data[:] = 1.0
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        active = np.flatnonzero(counts > 0)
        if len(active) > self.config.max_items:
            order = np.argsort(-counts[active], kind="stable")[: self.config.max_items]
            active = np.sort(active[order])
        self.items = active.astype(np.int64)
        self.weights, self.inverse_diag = _ease_inverse(matrix[:, self.items], self.config.l2,
                                                        options.device)
        return self

    def _binary(self, train: MultiDomainDataset, target: str) -> sp.csr_matrix:
        """``[n_users, n]`` binary rows of ``train`` over the model's items."""
        catalogue = self.config.catalogue(train, target)
        matrix = train.user_items(None)[:, catalogue][:, self.items].tocsr()
        matrix.data[:] = 1.0
        matrix.eliminate_zeros()
        return matrix

    def fit_subset(self, train: MultiDomainDataset, options: FitOptions) -> Self | None:
        """EASE on ``train``, whose rows are a subset of this model's, by ``ease_update``; over
        this model's items less those left without a row (exactly a fresh fit on that item
        set; a fresh fit may choose other items where ``max_items`` cuts). None (fit afresh)
        when the rows are not a subset, the update is not cheaper (``4k >= n`` changed users
        ``k``), or this model was restored rather than fitted."""
        if (self.inverse_diag is None or self.train_data is None
                or train.n_users != self.train_data.n_users
                or train.n_items != self.train_data.n_items):
            return None
        old = self._binary(self.train_data, self.options.target)
        new = self._binary(train, options.target)
        diff = (old - new).tocsr()
        diff.eliminate_zeros()
        if len(diff.data) and diff.data.min() < 0:
            return None  # a row that this model did not see
        changed = np.flatnonzero(np.diff(diff.indptr))
        if 4 * len(changed) >= len(self.items):
            return None
        out = type(self)(self.config)
        out.train_data, out.options = train, options
        weights, diag = ease_update(self.weights, self.inverse_diag, old[changed], new[changed])
        kept = np.flatnonzero(np.diff(new.tocsc().indptr) > 0)
        if len(kept) < len(self.items):  # an item without rows is its own block of P
            index = torch.from_numpy(kept).to(weights.device)
            weights = weights.index_select(0, index).index_select(1, index)
            diag = diag[index]
        out.items, out.weights, out.inverse_diag = self.items[kept], weights, diag
        return out

    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``history @ B`` restricted to the domain's items.

        Returns:
            ``[B, n_items(domain)]`` float32.
        """
        train = self._check_fitted()
        items = self.config.check_domain(train, domain, self.options.target)
        catalogue = self.config.catalogue(train, self.options.target)
        history = self.history_matrix(query, catalogue)[:, self.items]
        local = self.items + catalogue.start - items.start  # model item -> local index
        inside = (local >= 0) & (local < items.stop - items.start)
        n_dom = items.stop - items.start
        if inside.all() and len(local) == n_dom:
            h = torch.from_numpy(history.toarray()).to(self.weights.device)
            return (h @ self.weights).cpu()
        cols = np.flatnonzero(inside)
        # only the rows of items somebody in the batch has, and of those only the domain's
        # columns: one [r, n_dom] copy, never the whole [n, n_dom] block (~0.8 GB for
        # 20,000 x 10,000) nor [r, n] rows. The product is the same gemm (same shapes, same
        # contiguous operands) as gathering rows then columns, so the same floats.
        rows = np.unique(history.indices).astype(np.int64)
        h = torch.from_numpy(history[:, rows].toarray()).to(self.weights.device)  # [B, r]
        if len(cols) and cols[-1] - cols[0] + 1 == len(cols):  # a contiguous block (sorted)
            block = self.weights[:, cols[0]:cols[-1] + 1]
        else:
            block = self.weights.index_select(1, torch.from_numpy(cols).to(h.device))
        known = h @ block.index_select(0, torch.from_numpy(rows).to(h.device))
        out = torch.empty(h.shape[0], n_dom, dtype=torch.float32, device=h.device)
        if known.shape[1]:
            out[:] = known.min(dim=1, keepdim=True).values - 1.0
        else:
            out.zero_()
        out[:, torch.from_numpy(local[inside]).to(h.device)] = known
        return out.cpu()

    def item_links(self, history: np.ndarray, domain: str, items: np.ndarray) -> np.ndarray:
        """``float32 [L, C]`` the weights ``B[h, c]`` from each global ``history`` item to each
        local ``items`` item of ``domain`` (0 where either is outside the model's items): the
        terms whose sum is the score (the ranker's ``links`` features)."""
        train = self._check_fitted()
        dom = train.domain_items(domain)
        catalogue = self.config.catalogue(train, self.options.target)
        pos = np.full(catalogue.stop - catalogue.start, -1, dtype=np.int64)
        pos[self.items] = np.arange(len(self.items))

        def model_index(glob: np.ndarray) -> np.ndarray:
            local = glob - catalogue.start
            inside = (local >= 0) & (local < len(pos))
            return np.where(inside, pos[np.where(inside, local, 0)], -1)

        rows, cols = model_index(np.asarray(history)), model_index(np.asarray(items) + dom.start)
        out = np.zeros((len(rows), len(cols)), dtype=np.float32)
        r, c = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        if len(r) and len(c):
            w = self.weights.index_select(0, torch.from_numpy(rows[r]).to(self.weights.device))
            w = w.index_select(1, torch.from_numpy(cols[c]).to(w.device))
            out[np.ix_(r, c)] = w.cpu().numpy()
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"items": self.items, "weights": self.weights.cpu().numpy()}

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        self.train_data, self.options = train, options
        self.items = np.asarray(state["items"], dtype=np.int64)
        self.weights = torch.from_numpy(np.asarray(state["weights"], dtype=np.float32))
        self.weights = self.weights.to(options.device)
        self.inverse_diag = None
        return self
