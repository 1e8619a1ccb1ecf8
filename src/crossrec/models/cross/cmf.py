"""CMF: collective matrix factorisation, one user embedding shared by every domain.

Singh & Gordon, "Relational Learning via Collective Matrix Factorization" (KDD 2008). Each
domain's user x item matrix is factorised with the *same* user factors and its own item
factors (plus an optional item bias), trained jointly on all domains with per-domain loss
weights. A target cold-start user's vector is shaped by their source interactions only, and
scores target items through the shared space: that is the transfer.

Two objectives: ``"bpr"`` (implicit feedback; negatives drawn from the positive's domain, as in
BPR-MF) and ``"mse"`` (explicit ratings: ``r̂ = u·v + b_i + μ_domain``; ``score`` then returns
predicted ratings, so ``evaluate_ratings`` can compute MAE / RMSE).

``train_on="target"`` fits the target domain alone: plain MF, the no-transfer baseline of the
rating protocol (EMCDR, PTUPCDR). A user with no training interaction in the domains the model
learned from gets the zero vector, so their score falls back to ``b_i (+ μ_domain)``, the item
baseline, instead of an untrained random vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import (
    BaselineConfig,
    FactorConfig,
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    with_column,
)
from crossrec.models.factor import (
    FactorBatch,
    check_users,
    domain_means,
    factor_batches,
    factor_loss,
    fold_in,
)
from crossrec.models.sampling import NegativeSampler


class CMFConfig(BaselineConfig, FactorConfig):
    """CMF hyper-parameters.

    Attributes:
        train_on: ``"all"`` (collective: every domain, the default) or ``"target"`` (the target
            domain alone: plain MF, the no-transfer baseline; it scores the target only).
        embedding_size: dimension of the shared user and the per-domain item embeddings.
        objective: ``"bpr"`` (implicit feedback, ranking) or ``"mse"`` (explicit ratings).
        domain_weights: loss weight per domain name (1.0 for a domain not listed).
        item_bias: learn a bias per item.
        n_negatives: negatives per positive (``"bpr"`` only).
        weight_decay: L2 penalty on the embeddings (and biases) of each batch.
        init_std: standard deviation of the normal initialisation.
        learning_rate, epochs, batch_size, patience: the training stage (Adam).
    """

    train_on: Literal["target", "all"] = "all"
    objective: Literal["bpr", "mse"] = "bpr"
    domain_weights: dict[str, float] = {}
    item_bias: bool = True
    weight_decay: float = Field(0.1, ge=0.0)  # tuned on Arts->Office validation
    learning_rate: float = Field(5e-3, gt=0.0)
    epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)


class CMF(TorchRecommender):
    """Collective MF: shared user embeddings, per-domain item embeddings, joint training.

    ``score`` returns ``u·v_i + b_i`` (bpr) or the predicted rating ``u·v_i + b_i + μ`` (mse).
    A ``query.history`` is folded in as the mean embedding of its items (in the domains it
    learned from); a user without training interactions there gets the zero vector.
    """

    Config = CMFConfig
    name = "cmf"
    config: CMFConfig

    def __init__(self, config: CMFConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c = self.config
        self.user_embedding = nn.Embedding(train.n_users, c.embedding_size)
        self.item_embedding = nn.Embedding(train.n_items, c.embedding_size)
        nn.init.normal_(self.user_embedding.weight, std=c.init_std)
        nn.init.normal_(self.item_embedding.weight, std=c.init_std)
        self.item_bias = nn.Embedding(train.n_items, 1) if c.item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("domain_mean", domain_means(train) if c.objective == "mse"
                             else torch.zeros(len(train.domains)), persistent=False)
        self.register_buffer("item_domain", torch.from_numpy(train.item_domain.astype(np.int64)),
                             persistent=False)
        catalogue = c.catalogue(train, options.target)
        inter = train.interactions
        items = inter["item"].to_numpy()
        if c.objective == "mse":  # only rated interactions train the factors
            items = np.where(inter["rating"].notna().to_numpy(), items, -1)
        seen = np.zeros(train.n_users, bool)
        seen[inter["user"].to_numpy()[(items >= catalogue.start) & (items < catalogue.stop)]] = 1
        self.register_buffer("seen", torch.from_numpy(seen), persistent=False)  # [n_users]

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("train", epochs=c.epochs, learning_rate=c.learning_rate,
                      batch_size=c.batch_size, patience=c.patience,
                      domains=(target,) if c.train_on == "target" else ())]

    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[FactorBatch]:
        c = self.config
        return factor_batches(train, stage.domains, c.objective, stage.batch_size,
                              c.n_negatives, self.sampler, rng, c.domain_weights)

    def loss(self, batch: FactorBatch, stage: str) -> torch.Tensor:
        """Domain-weighted BPR or MSE loss plus L2 on the batch's factors."""
        offset = self.domain_mean[self.item_domain[batch.items]]  # [b]
        return factor_loss(batch, self.user_embedding(batch.users), self.item_embedding,
                           self.item_bias, offset, self.config.weight_decay)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Scores (bpr) or predicted ratings (mse).

        Returns:
            ``[B, n_items(domain)]`` float32, on the model's device.
        """
        train = self._check_fitted()
        items = self.config.check_domain(train, domain, self.options.target)
        out = self.user_vectors(query) @ self.item_embedding.weight[items].T  # [B, n]
        if self.item_bias is not None:
            out = out + self.item_bias.weight[items, 0]
        return out + self.domain_mean[train.info.domain_index(domain)]

    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]`` shared user factors (zero for a user unseen in training), or the mean
        factor of ``query.history``'s items."""
        train = self._check_fitted()
        if query.history is None:
            users = check_users(train, query.users).to(self.user_embedding.weight.device)
            return self.user_embedding(users) * self.seen[users][:, None]  # unseen users: zero
        catalogue = self.config.catalogue(train, self.options.target)
        mask = np.zeros(train.n_items, bool)
        mask[catalogue] = True
        return fold_in(self, query, self.item_embedding, mask)[0]

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d + 1]`` item factors, then ``b_i + μ_domain``."""
        train = self._check_fitted()
        items = self.config.check_domain(train, domain, self.options.target)
        bias = (self.item_bias.weight[items, 0] if self.item_bias is not None
                else torch.zeros(items.stop - items.start, device=self.domain_mean.device))
        return with_column(self.item_embedding.weight[items],
                           bias + self.domain_mean[train.info.domain_index(domain)])

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d + 1]`` user factors, then 1."""
        self.config.check_domain(self._check_fitted(), domain, self.options.target)
        return with_column(self.user_vectors(query), 1.0)
