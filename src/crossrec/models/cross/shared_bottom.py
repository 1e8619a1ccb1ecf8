"""Shared-bottom multi-domain model: one shared network, one tower per domain.

The multi-task "shared-bottom" architecture (Caruana, "Multitask Learning", 1997; the baseline
of MMoE, Ma et al., KDD 2018 and of STAR, Sheng et al., CIKM 2021) applied to domains. A user's
input is their free user embedding and/or the mean input embedding of their history over all
domains (``user_input``); a shared MLP bottom maps it to a common representation, a small tower
per domain specialises it, and the tower's output scores that domain's items by a dot product
with output item embeddings (plus an item bias). All domains train together, each
interaction's loss weighted by its domain (``domain_weights``, default equal); one model scores
every domain.

A cold-start target user has no target items, only source ones: their history representation
must carry them. So that training sees such users, each training example drops the items of the
positive's own domain from the pooled history with probability ``domain_dropout`` (the example
then looks like a user new to that domain); the positive itself is always left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import (
    FactorConfig,
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    with_column,
)
from crossrec.models.factor import FactorBatch, factor_batches
from crossrec.models.history import (
    check_query,
    masked_mean,
    select_history,
    training_histories,
)
from crossrec.models.layers import MLP
from crossrec.models.objective import RankingObjective, sampled_ranking_loss
from crossrec.models.sampling import NegativeSampler


class SharedBottomConfig(FactorConfig):
    """Hyper-parameters of the shared-bottom model.

    Attributes:
        embedding_size: ``d``, width of item embeddings, user embeddings and tower outputs.
        user_input: ``"history"`` (pooled history), ``"embedding"`` (a free user vector) or
            ``"both"`` (their concatenation) as the bottom's input.
        bottom: widths of the shared MLP bottom (its last entry is the shared representation).
        tower: hidden widths of each domain tower (``bottom[-1] -> *tower -> d``).
        dropout: dropout after hidden layers.
        max_history: most recent items (all domains) a user's history is read from.
        domain_dropout: probability that an example's history loses its own domain's items.
        domain_weights: loss weight per domain name (1.0 for a domain not listed).
        objective: ``"bpr"`` or ``"softmax"`` over the negatives (from the positive's domain).
        n_negatives: negatives per positive.
        item_bias: learn a bias per item.
        weight_decay: L2 on the batch's user vectors and output item vectors.
        learning_rate, epochs, batch_size, patience: the training stage (Adam, early stopping
            on validation).
    """

    user_input: Literal["history", "embedding", "both"] = "history"
    bottom: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    tower: list[int] = [64]
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_history: int = Field(50, ge=1)
    domain_dropout: float = Field(0.5, ge=0.0, le=1.0)
    domain_weights: dict[str, float] = {}
    objective: RankingObjective = "bpr"
    n_negatives: int = Field(4, ge=1)
    item_bias: bool = True
    weight_decay: float = Field(1e-3, ge=0.0)
    learning_rate: float = Field(1e-3, gt=0.0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(1024, ge=1)


class SharedBottom(TorchRecommender):
    """Shared bottom + per-domain towers over every domain (see the module docstring).

    Parameters: ``item_input`` (history embeddings), ``user_embedding`` (with ``user_input``
    ``"embedding"`` / ``"both"``), ``bottom``, ``towers.<domain index>``, ``item_output`` and
    ``item_bias``. A ``Query.history`` replaces the users' training history; an anonymous user
    (-1) has a zero user embedding.
    """

    Config = SharedBottomConfig
    name = "shared_bottom"
    config: SharedBottomConfig

    def __init__(self, config: SharedBottomConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c, d = self.config, self.config.embedding_size
        unknown = sorted(set(c.domain_weights) - set(train.domains))
        if unknown:
            raise DataError(f"domain_weights names unknown domains {unknown}; the data has "
                            f"{list(train.domains)}")
        self.item_input = nn.Embedding(train.n_items, d)
        self.item_output = nn.Embedding(train.n_items, d)
        for table in (self.item_input, self.item_output):
            nn.init.normal_(table.weight, std=c.init_std)
        self.item_bias = nn.Embedding(train.n_items, 1) if c.item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.user_embedding = (nn.Embedding(train.n_users, d) if c.user_input != "history"
                               else None)
        if self.user_embedding is not None:
            nn.init.normal_(self.user_embedding.weight, std=c.init_std)
        width = 2 * d if c.user_input == "both" else d
        self.bottom = nn.Sequential(MLP([width, *c.bottom], dropout=c.dropout), nn.GELU())
        self.towers = nn.ModuleList(MLP([c.bottom[-1], *c.tower, d], dropout=c.dropout)
                                    for _ in train.domains)
        self.register_buffer("history", training_histories(train, train.domains, c.max_history),
                             persistent=False)  # [n_users, L]
        self.register_buffer("item_domain", torch.from_numpy(train.item_domain.astype(np.int64)),
                             persistent=False)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("train", epochs=c.epochs, learning_rate=c.learning_rate,
                      batch_size=c.batch_size, patience=c.patience)]

    # ------------------------------------------------------------------ model
    def represent(self, users: torch.Tensor, history: torch.Tensor, domains: torch.Tensor,
                  drop: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]`` tower outputs.

        Args:
            users: ``[B]`` user indices (-1: anonymous, zero user embedding).
            history: ``[B, L]`` global item indices, -1 padding.
            domains: ``[B]`` domain index of the tower to use per row.
            drop: optional ``[B]`` item to leave out of each row's history.
        """
        parts = []
        if self.user_embedding is not None:
            known = (users >= 0).float()[:, None]
            parts.append(self.user_embedding(users.clamp(min=0)) * known)
        if self.config.user_input != "embedding":
            parts.append(masked_mean(self.item_input, history, drop)[0])
        shared = self.bottom(torch.cat(parts, dim=1))  # [B, bottom[-1]]
        out = shared.new_empty(len(shared), self.config.embedding_size)
        for index, tower in enumerate(self.towers):
            rows = (domains == index).nonzero(as_tuple=True)[0]
            if len(rows):
                out[rows] = tower(shared[rows])
        return out

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[tuple[FactorBatch, torch.Tensor]]:
        """Shuffled interactions of every domain, with negatives from the positive's domain and
        a ``[b]`` bool: whether the example's own domain is dropped from its history."""
        c = self.config
        for inter in factor_batches(train, stage.domains, "bpr", stage.batch_size,
                                    c.n_negatives, self.sampler, rng, c.domain_weights):
            dropped = rng.random(len(inter.users)) < c.domain_dropout
            yield inter, torch.from_numpy(dropped)

    def loss(self, batch: tuple[FactorBatch, torch.Tensor], stage: str) -> torch.Tensor:
        """Domain-weighted ranking loss plus L2 on the batch's user and item vectors."""
        c = self.config
        inter, dropped = batch
        pos, neg = inter.items, inter.negatives
        domain = self.item_domain[pos]  # [b]
        history = self.history[inter.users]  # [b, L]
        own = self.item_domain[history.clamp(min=0)] == domain[:, None]
        history = torch.where(dropped[:, None] & own, -1, history)
        z = self.represent(inter.users, history, domain, drop=pos)  # [b, d]
        v_pos, v_neg = self.item_output(pos), self.item_output(neg)
        b_pos = self.item_bias(pos).squeeze(-1) if self.item_bias is not None else None
        b_neg = self.item_bias(neg).squeeze(-1) if self.item_bias is not None else None
        rank = sampled_ranking_loss(z, v_pos, v_neg, c.objective, b_pos, b_neg)
        l2 = z.pow(2).sum(-1) + v_pos.pow(2).sum(-1) + v_neg.pow(2).sum(-1).mean(-1)
        w = inter.weights / inter.weights.sum().clamp_min(1e-12)
        return (w * (rank + c.weight_decay * l2)).sum()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d]`` the ``domain`` tower's output for the query's users."""
        train = self._check_fitted()
        check_query(train, query.users, query.history)
        device = self.item_input.weight.device
        users = query.users.to(device=device, dtype=torch.long)
        if query.history is None:
            history = self.history[users]
        else:
            if len(users) != len(query.history):
                raise DataError(f"Query has {len(users)} users but {len(query.history)} "
                                "histories")
            every = torch.arange(len(train.domains), device=device)
            history = select_history(query.history.to(device), self.item_domain, every,
                                     self.config.max_history)
        index = torch.full((len(users),), train.info.domain_index(domain), device=device)
        return self.represent(users, history, index)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products of the domain tower's output with that domain's output item embeddings.

        Returns:
            ``[B, n_items(domain)]`` float32, on the model's device.
        """
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        out = self.user_vectors(query, domain) @ self.item_output.weight[items].T
        if self.item_bias is not None:
            out = out + self.item_bias.weight[items, 0]
        return out

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d + 1]`` output item embeddings, then the item bias."""
        items = self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        bias = (self.item_bias.weight[items, 0] if self.item_bias is not None
                else torch.zeros(items.stop - items.start, device=self.item_output.weight.device))
        return with_column(self.item_output.weight[items], bias)

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d + 1]`` the domain tower's output (``user_vectors``), then 1."""
        return with_column(self.user_vectors(query, domain), 1.0)
