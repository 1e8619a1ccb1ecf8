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
from dataclasses import dataclass
from typing import Literal

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
    Recommender,
    Stage,
    TorchRecommender,
    with_column,
)
from crossrec.models.baselines.bpr import positive_keys, sample_negatives


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


@dataclass
class FactorBatch:
    """One batch of interactions for a factorisation loss.

    Attributes:
        users: ``[b]`` user indices.
        items: ``[b]`` global item indices (the positives, or the rated items).
        weights: ``[b]`` loss weight of each interaction (its domain's weight).
        negatives: ``[b, n_negatives]`` sampled global items (bpr) or None.
        ratings: ``[b]`` explicit ratings (mse) or None.
    """

    users: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor
    negatives: torch.Tensor | None = None
    ratings: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> FactorBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return FactorBatch(self.users.to(device), self.items.to(device),
                           self.weights.to(device), move(self.negatives), move(self.ratings))


def factor_batches(
    train: MultiDomainDataset, domains: Sequence[str], objective: str, batch_size: int,
    n_negatives: int, keys: np.ndarray | None, rng: np.random.Generator,
    domain_weights: dict[str, float] | None = None,
) -> Iterator[FactorBatch]:
    """One shuffled pass over the interactions of ``domains`` (all when empty).

    With ``objective="mse"`` only interactions with a rating are used (DataError if none);
    with ``"bpr"`` each positive gets ``n_negatives`` negatives from its own domain, avoiding
    the training positives ``keys`` (``positive_keys(train)``).
    """
    inter = train.interactions
    if domains:
        wanted = [train.info.domain_index(d) for d in domains]
        inter = inter[np.isin(inter["domain"].to_numpy(), wanted)]
    if objective == "mse":
        inter = inter[inter["rating"].notna().to_numpy()]
        if len(inter) == 0:
            raise DataError("objective='mse' needs explicit ratings, but the training "
                            f"interactions of {list(domains) or 'all domains'} have none")
    weight_of = np.array([(domain_weights or {}).get(d, 1.0) for d in train.domains],
                         dtype=np.float32)
    users = inter["user"].to_numpy(np.int64)
    items = inter["item"].to_numpy(np.int64)
    weights = weight_of[inter["domain"].to_numpy(np.int64)]
    ratings = inter["rating"].to_numpy(np.float32)
    order = rng.permutation(len(users))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        u, i = users[idx], items[idx]
        batch = FactorBatch(torch.from_numpy(u), torch.from_numpy(i),
                            torch.from_numpy(weights[idx]))
        if objective == "bpr":
            batch.negatives = torch.from_numpy(
                sample_negatives(train, u, i, n_negatives, keys, rng))
        else:
            batch.ratings = torch.from_numpy(ratings[idx])
        yield batch


def item_rows(train: MultiDomainDataset, domains: Sequence[str]) -> slice:
    """The global item indices from the first to the last item of ``domains`` (items are
    grouped by domain): the rows of an item table that a stage over ``domains`` can train
    (``Stage.rows``), when its negatives come from the positives' domains."""
    parts = [train.domain_items(d) for d in domains]
    return slice(min(p.start for p in parts), max(p.stop for p in parts))


def factor_loss(
    batch: FactorBatch, users: torch.Tensor, items: nn.Embedding, bias: nn.Embedding | None,
    offset: torch.Tensor, weight_decay: float,
) -> torch.Tensor:
    """Weighted BPR (``batch.negatives`` set) or MSE loss plus L2 on the batch's factors.

    Args:
        batch: the interactions.
        users: ``[b, d]`` user vectors of the batch.
        items: the item embedding table (global item indices).
        bias: the item bias table (``[n_items, 1]``) or None.
        offset: ``[b]`` constant added to rating predictions (the domain mean; mse only).
        weight_decay: L2 weight.

    Returns:
        The scalar loss.
    """
    w = batch.weights / batch.weights.sum().clamp_min(1e-12)  # [b], sums to 1

    def predict(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = items(idx)  # [..., d]
        b = bias(idx).squeeze(-1) if bias is not None else torch.zeros(v.shape[:-1],
                                                                        device=v.device)
        return v, b

    p, bp = predict(batch.items)  # [b, d], [b]
    pos = (users * p).sum(-1) + bp  # [b]
    l2 = users.pow(2).sum(-1) + p.pow(2).sum(-1) + bp.pow(2)  # [b]
    if batch.negatives is not None:
        n, bn = predict(batch.negatives)  # [b, k, d], [b, k]
        neg = torch.einsum("bd,bkd->bk", users, n) + bn  # [b, k]
        main = F.softplus(neg - pos[:, None]).mean(-1)  # [b]
        l2 = l2 + (n.pow(2).sum(-1) + bn.pow(2)).mean(-1)
    else:
        main = (pos + offset - batch.ratings).pow(2)  # [b]
    return (w * (main + weight_decay * l2)).sum()


def fold_in(model: Recommender, query: Query, table: nn.Embedding,
            item_mask: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Mean item embedding of each query's history (an approximate user vector).

    Args:
        model: the fitted model (for ``history_matrix``).
        query: users ``[B]`` and history ``[B, L]``.
        table: the item embedding table (global item indices).
        item_mask: bool ``[n_items]``: only these items count (all when None).

    Returns:
        ``[B, d]`` mean vectors (zero for an empty history) and int64 ``[B]`` history sizes.
    """
    device = table.weight.device
    hist = model.history_matrix(query).tocoo()
    keep = np.ones(len(hist.col), bool) if item_mask is None else item_mask[hist.col]
    rows, cols = hist.row[keep].astype(np.int64), hist.col[keep].astype(np.int64)
    counts = np.bincount(rows, minlength=hist.shape[0]).astype(np.int64)
    weights = torch.from_numpy((1.0 / np.maximum(counts, 1)[rows]).astype(np.float32))
    vectors = table(torch.from_numpy(cols).to(device)) * weights.to(device)[:, None]
    out = torch.zeros(hist.shape[0], table.weight.shape[1], device=device)
    return out.index_add_(0, torch.from_numpy(rows).to(device), vectors), counts


def check_users(train: MultiDomainDataset, users: torch.Tensor) -> torch.Tensor:
    """``users`` as int64; DataError when one is outside ``[0, n_users)``."""
    users = users.to(dtype=torch.long)
    if len(users) and (users.min() < 0 or users.max() >= train.n_users):
        raise DataError(f"user index out of range [0, {train.n_users}) and no history given; "
                        "an anonymous user needs Query.history")
    return users


def domain_means(train: MultiDomainDataset) -> torch.Tensor:
    """``[n_domains]`` mean explicit rating per domain (0 where a domain has none)."""
    inter = train.interactions
    out = np.zeros(len(train.domains), dtype=np.float32)
    for d in range(len(train.domains)):
        r = inter["rating"].to_numpy(np.float64)[inter["domain"].to_numpy() == d]
        r = r[~np.isnan(r)]
        out[d] = r.mean() if len(r) else 0.0
    return torch.from_numpy(out)


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
        self._keys: tuple[int, np.ndarray] | None = None  # (id(train), positive keys)

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
        if self._keys is None or self._keys[0] != id(train):
            self._keys = (id(train), positive_keys(train))
        return factor_batches(train, stage.domains, c.objective, stage.batch_size,
                              c.n_negatives, self._keys[1], rng, c.domain_weights)

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
