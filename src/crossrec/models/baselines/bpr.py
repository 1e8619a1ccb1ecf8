"""BPR-MF: matrix factorisation trained with the Bayesian personalised ranking loss.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI 2009). Each
training interaction (u, i) is paired with ``n_negatives`` items j drawn uniformly from the
same domain as i (and not in u's training history); the loss is
``-log σ(e_u·e_i - e_u·e_j) + weight_decay * (|e_u|² + |e_i|² + |e_j|²)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import (
    BaselineConfig,
    FactorConfig,
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
)
from crossrec.models.factor import FactorBatch, factor_batches
from crossrec.models.sampling import NegativeSampler


class BPRConfig(BaselineConfig, FactorConfig):
    """BPR-MF hyper-parameters.

    Attributes:
        embedding_size: dimension of user and item embeddings.
        n_negatives: negatives sampled per positive.
        weight_decay: L2 penalty on the embeddings of each batch.
        init_std: standard deviation of the normal initialisation.
        learning_rate, epochs, batch_size, patience: the training stage (Adam).
        sparse_updates: row-sparse embedding gradients and lazy Adam (``torch.optim.SparseAdam``):
            a step reads and writes only the batch's rows, so an epoch costs O(interactions)
            instead of O(steps x table rows). Not the same optimiser as Adam (the moments of
            rows absent from a batch are not decayed), so results differ a little; use it for
            large user and item tables (see the scale benchmark).
    """

    learning_rate: float = Field(5e-3, gt=0.0)
    sparse_updates: bool = False
    epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)


class BPR(TorchRecommender):
    """BPR matrix factorisation over the target domain or all domains merged (``train_on``).

    Embeddings exist for every user and item; with ``train_on="target"`` only the target's
    interactions train them, so users without target history keep their random
    initialisation (cold-start users get no signal: that is the honest baseline). With
    ``train_on="all"`` a user's source interactions shape the same embedding that scores
    target items. A ``query.history`` is folded in as the mean of its items' embeddings.
    """

    Config = BPRConfig
    name = "bpr"
    config: BPRConfig

    def __init__(self, config: BPRConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        d = self.config.embedding_size
        sparse = self.config.sparse_updates
        self.user_embedding = nn.Embedding(train.n_users, d, sparse=sparse)
        self.item_embedding = nn.Embedding(train.n_items, d, sparse=sparse)
        nn.init.normal_(self.user_embedding.weight, std=self.config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=self.config.init_std)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [
            Stage(
                "train",
                epochs=c.epochs,
                learning_rate=c.learning_rate,
                batch_size=c.batch_size,
                domains=(target,) if c.train_on == "target" else (),
                patience=c.patience,
            )
        ]

    # ------------------------------------------------------------------ training
    def batches(
        self, train: MultiDomainDataset, stage: Stage, rng: np.random.Generator
    ) -> Iterator[FactorBatch]:
        """One shuffled pass over the stage's interactions, ``stage.batch_size`` at a time,
        each positive with ``n_negatives`` uniform negatives from its domain."""
        return factor_batches(train, stage.domains, "bpr", stage.batch_size,
                              self.config.n_negatives, self.sampler, rng)

    def loss(self, batch: FactorBatch, stage: str) -> torch.Tensor:
        """Mean BPR loss plus L2 on the batch's embeddings."""
        u = self.user_embedding(batch.users)  # [b, d]
        p = self.item_embedding(batch.items)  # [b, d]
        n = self.item_embedding(batch.negatives)  # [b, k, d]
        pos = (u * p).sum(-1, keepdim=True)  # [b, 1]
        neg = torch.einsum("bd,bkd->bk", u, n)  # [b, k]
        ranking = F.softplus(neg - pos).mean()
        l2 = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum() / n.shape[1]) / len(u)
        return ranking + self.config.weight_decay * l2

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]`` user embeddings, or the mean item embedding of ``query.history``."""
        train = self._check_fitted()
        device = self.item_embedding.weight.device
        if query.history is None:
            users = query.users.to(device=device, dtype=torch.long)
            if len(users) and (users.min() < 0 or users.max() >= train.n_users):
                raise DataError(
                    f"user index out of range [0, {train.n_users}) and no history given; "
                    "an anonymous user needs Query.history"
                )
            return self.user_embedding(users)
        catalogue = self.config.catalogue(train, self.options.target)
        hist = self.history_matrix(query, catalogue).tocoo()
        counts = np.maximum(np.bincount(hist.row, minlength=hist.shape[0]), 1)
        weights = torch.from_numpy((1.0 / counts[hist.row]).astype(np.float32)).to(device)
        rows = torch.from_numpy(hist.row.astype(np.int64)).to(device)
        items = torch.from_numpy(hist.col.astype(np.int64) + catalogue.start).to(device)
        vectors = self.item_embedding(items) * weights[:, None]  # [nnz, d]
        out = torch.zeros(hist.shape[0], vectors.shape[1], device=device)
        return out.index_add_(0, rows, vectors)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products of user and item embeddings.

        Returns:
            ``[B, n_items(domain)]`` float32, on the model's device.
        """
        train = self._check_fitted()
        items = self.config.check_domain(train, domain, self.options.target)
        return self.user_vectors(query) @ self.item_embedding.weight[items].T

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d]`` item embeddings (the two-tower view of ``score``)."""
        items = self.config.check_domain(self._check_fitted(), domain, self.options.target)
        return self.item_embedding.weight[items].detach()

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d]`` user vectors (see ``user_vectors``)."""
        self.config.check_domain(self._check_fitted(), domain, self.options.target)
        return self.user_vectors(query)

