"""EMCDR: embed each domain separately, then map source user factors to target ones.

Man et al., "Cross-Domain Recommendation: An Embedding and Mapping Approach" (IJCAI 2017).
Three stages, run by the Trainer:

1. ``source_mf``: matrix factorisation of the source domains (``source_*`` parameters).
   With several sources, their interactions are merged into one source factorisation (one
   source user vector per user, per-item factors for every source item).
2. ``target_mf``: matrix factorisation of the target domain (``target_*`` parameters).
3. ``mapping``: a linear map or an MLP ``f`` trained on the users with interactions in both a
   source and the target (in training) to minimise ``|f(u_src) - u_tgt|²``.

At scoring time a user with no target interaction in training gets ``f(u_src)`` as target
factor; a warm target user keeps their own — or, with ``shrinkage`` k > 0, a user with n target
interactions and a source history gets ``(n * u_tgt + k * f(u_src)) / (n + k)``: the mapped
factor as a prior that the user's own rows outweigh as they accumulate (a few-shot user's own
factor, learned from one or two rows, is a poor estimate on its own). Both MF stages use the
same objective option as CMF (``"bpr"`` or ``"mse"``) and skip validation (the validation
users are cold, their scores depend on the mapping only); the mapping stage validates and
stops early.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import (
    FactorConfig,
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    choose_on_validation,
    with_column,
)
from crossrec.models.factor import (
    FactorBatch,
    check_users,
    domain_means,
    factor_batches,
    factor_loss,
    fold_in,
    item_rows,
)
from crossrec.models.sampling import NegativeSampler


class EMCDRConfig(FactorConfig):
    """EMCDR hyper-parameters.

    Attributes:
        embedding_size: dimension of the user and item factors in every domain.
        objective: ``"bpr"`` (implicit feedback) or ``"mse"`` (explicit ratings) for the MF
            stages; with ``"mse"``, ``score`` returns predicted ratings.
        item_bias: learn a bias per item.
        n_negatives: negatives per positive (``"bpr"`` only).
        weight_decay: L2 penalty on the factors of each batch (MF stages).
        init_std: standard deviation of the normal initialisation.
        learning_rate, epochs, batch_size: each MF stage (Adam, no early stopping).
        mapping: ``"linear"`` or ``"mlp"`` (hidden size ``2 * embedding_size``, tanh).
        mapping_learning_rate, mapping_epochs, mapping_batch_size, mapping_weight_decay,
            patience: the mapping stage (Adam, early stopping on validation).
        shrinkage: prior strengths k tried after training (the best on validation is kept, a
            tie to the first listed); ``[0]`` = the paper: own factor as soon as n > 0.
    """

    objective: Literal["bpr", "mse"] = "bpr"
    item_bias: bool = True
    learning_rate: float = Field(5e-3, gt=0.0)
    epochs: int = Field(30, ge=1)
    mapping: Literal["linear", "mlp"] = "mlp"
    mapping_learning_rate: float = Field(1e-3, gt=0.0)
    mapping_epochs: int = Field(100, ge=1)
    mapping_batch_size: int = Field(256, ge=1)
    mapping_weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(10, ge=1)
    shrinkage: list[float] = Field(default_factory=lambda: [0.0], min_length=1)


class EMCDR(TorchRecommender):
    """Embedding-and-mapping cross-domain recommender (see the module docstring).

    Parameters: ``source_user`` / ``source_item`` (/ ``source_bias``), ``target_user`` /
    ``target_item`` (/ ``target_bias``) and ``mapping``. A ``query.history`` is folded in as
    the mean target item factor of its target items or, without any, as ``f`` of the mean
    source item factor of its source items.
    """

    Config = EMCDRConfig
    name = "emcdr"
    config: EMCDRConfig

    def __init__(self, config: EMCDRConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c, d = self.config, self.config.embedding_size
        for side in ("source", "target"):
            users, items = nn.Embedding(train.n_users, d), nn.Embedding(train.n_items, d)
            nn.init.normal_(users.weight, std=c.init_std)
            nn.init.normal_(items.weight, std=c.init_std)
            setattr(self, f"{side}_user", users)
            setattr(self, f"{side}_item", items)
            bias = nn.Embedding(train.n_items, 1) if c.item_bias else None
            if bias is not None:
                nn.init.zeros_(bias.weight)
            setattr(self, f"{side}_bias", bias)
        if c.mapping == "linear":
            self.mapping = nn.Linear(d, d)
        else:
            self.mapping = nn.Sequential(nn.Linear(d, 2 * d), nn.Tanh(), nn.Linear(2 * d, d))
        target = train.info.domain_index(options.target)
        sources = [train.info.domain_index(s) for s in self._sources(train, options)]
        warm = np.zeros(train.n_users, bool)
        warm[train.domain_users(options.target)] = True
        in_source = np.zeros(train.n_users, bool)
        for s in self._sources(train, options):
            in_source[train.domain_users(s)] = True
        self.register_buffer("warm", torch.from_numpy(warm), persistent=False)  # [n_users]
        n_target = train.user_items(options.target).getnnz(axis=1).astype(np.float32)
        self.register_buffer("n_target", torch.from_numpy(n_target), persistent=False)
        self.register_buffer("in_source", torch.from_numpy(in_source), persistent=False)
        self.register_buffer("shrink", torch.tensor(float(c.shrinkage[0])))  # chosen k
        self.register_buffer("overlap", torch.from_numpy(np.flatnonzero(warm & in_source)),
                             persistent=False)  # [n_overlap] users with source and target
        self.register_buffer("source_item_mask", torch.from_numpy(
            np.isin(train.item_domain, sources)), persistent=False)  # [n_items]
        self.register_buffer("domain_mean", domain_means(train) if c.objective == "mse"
                             else torch.zeros(len(train.domains)), persistent=False)
        self.register_buffer("item_domain", torch.from_numpy(train.item_domain.astype(np.int64)),
                             persistent=False)
        self._target = target

    @staticmethod
    def _sources(train: MultiDomainDataset, options: FitOptions) -> tuple[str, ...]:
        """The source domains: ``options.sources``, or every domain but the target."""
        return options.sources or tuple(d for d in train.domains if d != options.target)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c, train = self.config, self._check_fitted()
        sources = tuple(sources) or self._sources(train, self.options)
        mf = dict(epochs=c.epochs, learning_rate=c.learning_rate, batch_size=c.batch_size,
                  validate=False)

        def rows(side: str, domains: tuple[str, ...]) -> dict[str, slice]:
            """Item rows an MF stage trains (its negatives share the positive's domain)."""
            tables = ("item", "bias") if c.item_bias else ("item",)
            return {f"{side}_{t}.weight": item_rows(train, domains) for t in tables}

        return [
            Stage("source_mf", domains=sources, trainable=("source_",),
                  rows=rows("source", sources), **mf),
            Stage("target_mf", domains=(target,), trainable=("target_",),
                  rows=rows("target", (target,)), **mf),
            Stage("mapping", epochs=c.mapping_epochs, learning_rate=c.mapping_learning_rate,
                  batch_size=c.mapping_batch_size, weight_decay=c.mapping_weight_decay,
                  trainable=("mapping",), patience=c.patience),
        ]

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[FactorBatch | torch.Tensor]:
        """MF stages: interaction batches; ``mapping``: ``[b]`` batches of overlap users."""
        if stage.name == "mapping":
            users = self.overlap.cpu().numpy()
            order = rng.permutation(len(users))
            for start in range(0, len(order), stage.batch_size):
                yield torch.from_numpy(users[order[start : start + stage.batch_size]])
            return
        c = self.config
        yield from factor_batches(train, stage.domains, c.objective, stage.batch_size,
                                  c.n_negatives, self.sampler, rng)

    def loss(self, batch: FactorBatch | torch.Tensor, stage: str) -> torch.Tensor:
        """MF loss of the stage's side, or the mapping's MSE ``|f(u_src) - u_tgt|²``."""
        if stage == "mapping":
            mapped = self.mapping(self.source_user(batch))  # [b, d]
            return F.mse_loss(mapped, self.target_user(batch), reduction="sum") / len(batch)
        side = "source" if stage == "source_mf" else "target"
        offset = self.domain_mean[self.item_domain[batch.items]]  # [b]
        users = getattr(self, f"{side}_user")(batch.users)
        return factor_loss(batch, users, getattr(self, f"{side}_item"),
                           getattr(self, f"{side}_bias"), offset, self.config.weight_decay)

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        super().fit(train, options)
        c = self.config
        chosen, _ = choose_on_validation(c.shrinkage, self.shrink.fill_, self, options.validate)
        self.fit_report = {**getattr(self, "fit_report", {}), "shrinkage": chosen}
        return self

    # ------------------------------------------------------------------ inference
    def _blend(self, own: torch.Tensor, mapped: torch.Tensor, n: torch.Tensor,
               has_source: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` ``(n * own + k * mapped) / (n + k)`` for users with a source history;
        own (n > 0) or mapped (n = 0) for the rest. ``n``: float ``[B]`` target counts."""
        k = self.shrink
        weight = n / (n + k).clamp(min=1e-12)  # [B]; 0 when n = 0, 1 when k = 0 < n
        weight = torch.where(has_source, weight, (n > 0).to(weight.dtype))
        return torch.lerp(mapped, own, weight[:, None])

    @torch.no_grad()
    def target_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]`` target user factors: own factor (warm), mapped source factor (cold), or
        their count-weighted blend (``shrinkage``)."""
        train = self._check_fitted()
        if query.history is None:
            users = check_users(train, query.users).to(self.warm.device)
            own, mapped = self.target_user(users), self.mapping(self.source_user(users))
            return self._blend(own, mapped, self.n_target[users], self.in_source[users])
        target_mask = (self.item_domain == self._target).cpu().numpy()
        own, n_target = fold_in(self, query, self.target_item, target_mask)
        src, n_source = fold_in(self, query, self.source_item,
                                self.source_item_mask.cpu().numpy())
        device = own.device
        return self._blend(own, self.mapping(src), torch.from_numpy(n_target).float().to(device),
                           torch.from_numpy(n_source > 0).to(device))

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Target: mapped or own factors; a source domain: the source factorisation.

        Returns:
            ``[B, n_items(domain)]`` float32 scores (bpr) or predicted ratings (mse).
        """
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        index = train.info.domain_index(domain)
        side = "target" if index == self._target else "source"
        out = self.user_vectors(query, domain) @ getattr(self, f"{side}_item").weight[items].T
        bias = getattr(self, f"{side}_bias")
        if bias is not None:
            out = out + bias.weight[items, 0]
        return out + self.domain_mean[index]  # [B, n]

    @torch.no_grad()
    def user_vectors(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d]`` user factors for ``domain``: the target's (own or mapped), else the
        source factorisation's (own, or the mean source factor of ``query.history``)."""
        train = self._check_fitted()
        train.domain_items(domain)  # DataError for an unknown domain
        if train.info.domain_index(domain) == self._target:
            return self.target_vectors(query)
        if query.history is None:
            return self.source_user(check_users(train, query.users).to(self.warm.device))
        return fold_in(self, query, self.source_item, self.source_item_mask.cpu().numpy())[0]

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d + 1]`` the side's item factors, then bias + domain mean."""
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        index = train.info.domain_index(domain)
        side = "target" if index == self._target else "source"
        bias = getattr(self, f"{side}_bias")
        column = (bias.weight[items, 0] if bias is not None
                  else torch.zeros(items.stop - items.start, device=self.warm.device))
        return with_column(getattr(self, f"{side}_item").weight[items],
                           column + self.domain_mean[index])

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d + 1]`` user factors (``user_vectors``), then 1."""
        return with_column(self.user_vectors(query, domain), 1.0)
