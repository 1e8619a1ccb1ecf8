"""EASE: the closed-form linear item-item autoencoder of Steck (WWW 2019).

``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``, i.e. ``B[i, j] = -P[i, j] / P[j, j]`` off
the diagonal and 0 on it. Dense float32 on the CPU (or ``options.device``); the cost is one
Cholesky factorisation and inverse of an ``[n, n]`` matrix, so the catalogue is capped at
``max_items`` (the most popular items with training interactions).
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
    return weights


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
        self.weights = ease_weights(matrix[:, self.items], self.config.l2, options.device)
        return self

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

    def state(self) -> dict[str, np.ndarray]:
        return {"items": self.items, "weights": self.weights.cpu().numpy()}

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        self.train_data, self.options = train, options
        self.items = np.asarray(state["items"], dtype=np.int64)
        self.weights = torch.from_numpy(np.asarray(state["weights"], dtype=np.float32))
        self.weights = self.weights.to(options.device)
        return self
