"""UserKNN: user-user cosine similarity with shrinkage; the neighbours' items are the scores.

The classic user-based collaborative filter (Herlocker et al., SIGIR 1999) on binary data.
With ``train_on="all"`` users are compared on their history in every domain, so a user known
only in a source domain finds neighbours through it and gets their target items: the
memory-based counterpart of cross-domain transfer, and a different signal than item-item
co-occurrence (a useful candidate source for the ranker).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import torch
from pydantic import Field

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import BaselineConfig, FitOptions, Query, Recommender


class UserKNNConfig(BaselineConfig):
    """UserKNN hyper-parameters.

    Attributes:
        neighbors: most similar users kept per scored user.
        shrink: added to the cosine denominator; damps similarities built on few items.
    """

    neighbors: int = Field(100, ge=1)
    shrink: float = Field(10.0, ge=0.0)


class UserKNN(Recommender):
    """Sum of the shrunk cosine similarities of a user's ``neighbors`` nearest users who have
    each item. A known user is never their own neighbour; an anonymous user (a
    ``Query.history``) is compared with every training user."""

    Config = UserKNNConfig
    name = "userknn"
    deterministic = True
    config: UserKNNConfig

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        self.train_data, self.options = train, options
        return self

    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` float32 neighbour scores (zeros without a neighbour)."""
        train = self._check_fitted()
        self.config.check_domain(train, domain, self.options.target)
        catalogue = self.config.catalogue(train, self.options.target)
        key = ("userknn_matrix", catalogue.start, catalogue.stop)
        if key not in train._cache:
            m = train.user_items(None)[:, catalogue].tocsr().astype(np.float32)
            m.data[:] = 1.0
            train._cache[key] = (m, np.sqrt(np.asarray(m.sum(1)).ravel()))
        users_items, norms = train._cache[key]
        hist = self.history_matrix(query, catalogue)  # [B, n_cat] binary
        sims = (hist @ users_items.T).toarray()  # [B, n_users] co-counts
        own = np.sqrt(np.asarray(hist.sum(1)).ravel())
        sims /= own[:, None] * norms[None, :] + self.config.shrink + 1e-12
        if query.history is None:
            users = query.users.detach().cpu().numpy().astype(np.int64).reshape(-1)
            sims[np.arange(len(users)), users] = 0.0
        k = min(self.config.neighbors, sims.shape[1])
        if k < sims.shape[1]:
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # ties: lower user
            keep = np.zeros_like(sims, dtype=bool)
            np.put_along_axis(keep, order, True, axis=1)
            sims = np.where(keep, sims, 0.0)
        target = train.user_items(domain).tocsr().astype(np.float32)
        target.data[:] = 1.0
        return torch.from_numpy(np.ascontiguousarray(np.asarray(target.T @ sims.T).T,
                                                     dtype=np.float32))
