"""PTUPCDR: personalised bridges that transfer user preferences across domains.

Zhu et al., "Personalized Transfer of User Preferences for Cross-domain Recommendation"
(WSDM 2022). Three stages:

1. ``source_mf`` / ``target_mf``: matrix factorisation per role (source user and item factors
   from the source interactions, target ones from the target interactions), with the BPR loss
   (implicit data, negatives from the positive's domain) or the squared error on ratings
   (``objective="mse"``; the score is then the predicted rating).
2. ``meta``: a meta network reads the user's source history (the source item factors of the
   ``max_history`` most recent source items), pools them with attention (an MLP gives each item
   a logit, softmax over the real items), and decodes the pooled characteristic vector into a
   personalised bridge ``W_u`` (``[d, d]``). The transferred target factor is ``u_src @ W_u``.
   It is trained task-oriented, as in the paper: the target objective on the target
   interactions of users with both domains in training, with the transferred factor in place
   of the user's target factor and every factor frozen (only ``meta.*`` trains).

With ``"mse"`` a prediction is ``u·v + μ_domain`` (the domain's mean training rating), so the
factors model deviations from the mean instead of the whole 1..5 scale.

Scoring the target: users without target interactions in training (cold-start) get the
transferred factor; warm users keep their target factor (``transfer_warm=True`` uses the bridge
for everyone). The MF stages run a fixed number of epochs; only the meta stage is validated
(the authors select the best *test* epoch; here early stopping uses the validation users).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
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
from crossrec.models.factor import domain_means, item_rows
from crossrec.models.sampling import NegativeSampler


class PTUPCDRConfig(FactorConfig):
    """PTUPCDR hyper-parameters.

    Attributes:
        embedding_size: ``d``, the dimension of user and item factors (the bridge is ``d x d``).
        objective: "bpr" (implicit feedback, sampled negatives) or "mse" (explicit ratings).
        n_negatives: negatives per positive with "bpr".
        weight_decay: L2 penalty on the factors of each MF batch.
        init_std: standard deviation of the normal initialisation of the factors.
        max_history: source items (most recent first) the meta network reads per user.
        meta_dim: hidden width of the decoder MLP that outputs the bridge.
        transfer_warm: use the bridge for warm target users too (default: their own factor).
        mf_epochs, mf_learning_rate: each MF stage (Adam, no validation, last weights kept).
        meta_epochs, meta_learning_rate, patience: the meta stage (Adam, early stopping).
        batch_size: interactions per batch in every stage.

    Defaults: chosen on the validation users of Arts -> Office cold-start (seed 0), where
    ``n_negatives=4`` beat 1 and ``embedding_size=32`` matched 64 at a quarter of the bridge.
    """

    embedding_size: int = Field(32, ge=1)
    objective: Literal["bpr", "mse"] = "bpr"
    n_negatives: int = Field(4, ge=1)
    max_history: int = Field(20, ge=1)
    meta_dim: int = Field(50, ge=1)
    transfer_warm: bool = False
    mf_epochs: int = Field(10, ge=1)
    mf_learning_rate: float = Field(5e-3, gt=0.0)
    meta_epochs: int = Field(30, ge=1)
    meta_learning_rate: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(4096, ge=1)


@dataclass
class PTUPCDRBatch:
    """Training interactions of one batch.

    Attributes:
        users: ``[b]`` user indices.
        items: ``[b]`` global item indices (the positives, or the rated items).
        negatives: ``[b, n_negatives]`` global item indices ("bpr"), else None.
        ratings: ``[b]`` float32 ratings ("mse"), else None.
        history: ``[b, max_history]`` global source item indices, -1 padding (meta stage).
    """

    users: torch.Tensor
    items: torch.Tensor
    negatives: torch.Tensor | None = None
    ratings: torch.Tensor | None = None
    history: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> PTUPCDRBatch:
        return PTUPCDRBatch(*(None if (v := getattr(self, f.name)) is None else v.to(device)
                              for f in fields(self)))


class MetaNetwork(nn.Module):
    """Source history -> personalised bridge ``[d, d]`` (attention pooling, then an MLP)."""

    def __init__(self, d: int, meta_dim: int) -> None:
        super().__init__()
        self.d = d
        self.attention = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1, bias=False))
        self.decoder = nn.Sequential(nn.Linear(d, meta_dim), nn.ReLU(),
                                     nn.Linear(meta_dim, d * d))

    def attention_weights(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the real history items.

        Args:
            items: ``[B, L, d]`` source item factors.
            mask: ``[B, L]`` bool, True for real items (False = padding).

        Returns:
            ``[B, L]`` weights, 0 on padding; rows sum to 1 (0 for an empty history).
        """
        logits = self.attention(items).squeeze(-1).masked_fill(~mask, -torch.inf)  # [B, L]
        weights = torch.softmax(logits, dim=1)
        return torch.where(mask, weights, torch.zeros_like(weights))  # empty rows: NaN -> 0

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, d]`` item factors and ``[B, L]`` mask -> ``[B, d, d]`` bridges."""
        pooled = (self.attention_weights(items, mask).unsqueeze(-1) * items).sum(1)  # [B, d]
        return self.decoder(pooled).view(-1, self.d, self.d)


class PTUPCDR(TorchRecommender):
    """PTUPCDR over one target and one or more source domains (all sources share one factor).

    Parameters: ``source_user`` / ``target_user`` (``[n_users, d]``), ``source_item`` /
    ``target_item`` (``[n_items, d]``, global item indices; each uses its role's rows) and
    ``meta``. A ``Query.history`` is folded in: its source items (the last ``max_history``)
    give the bridge and, through the mean of their factors, the source user factor; its target
    items, if any, give a warm target factor (their mean factor). Source domains are scored
    with the source factors; other domains raise DataError.
    """

    Config = PTUPCDRConfig
    name = "ptupcdr"
    config: PTUPCDRConfig

    def __init__(self, config: PTUPCDRConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()  # uniform negatives from the positive's domain
        self._cache: tuple[int, torch.Tensor, torch.Tensor, np.ndarray] | None = None

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c = self.config
        d = c.embedding_size
        for name, rows in (("source_user", train.n_users), ("target_user", train.n_users),
                           ("source_item", train.n_items), ("target_item", train.n_items)):
            table = nn.Embedding(rows, d)
            nn.init.normal_(table.weight, std=c.init_std)
            setattr(self, name, table)
        self.meta = MetaNetwork(d, c.meta_dim)
        self.register_buffer("domain_mean", domain_means(train) if c.objective == "mse"
                             else torch.zeros(len(train.domains)), persistent=False)
        self.register_buffer("item_domain", torch.from_numpy(train.item_domain.astype(np.int64)),
                             persistent=False)

    def source_domains(self) -> tuple[str, ...]:
        """The fit's sources (every other domain when none were named)."""
        train, target = self._check_fitted(), self.options.target
        return tuple(self.options.sources) or tuple(d for d in train.domains if d != target)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c, train = self.config, self._check_fitted()
        sources = tuple(sources) or self.source_domains()
        mf = dict(epochs=c.mf_epochs, learning_rate=c.mf_learning_rate,
                  batch_size=c.batch_size, validate=False)
        return [  # an MF stage trains its domains' item rows (negatives: the positive's domain)
            Stage("source_mf", domains=sources, trainable=("source_",),
                  rows={"source_item.weight": item_rows(train, sources)}, **mf),
            Stage("target_mf", domains=(target,), trainable=("target_",),
                  rows={"target_item.weight": item_rows(train, (target,))}, **mf),
            Stage("meta", epochs=c.meta_epochs, learning_rate=c.meta_learning_rate,
                  batch_size=c.batch_size, domains=(target,), trainable=("meta",),
                  patience=c.patience),
        ]

    # ------------------------------------------------------------------ data
    def _user_data(self, train: MultiDomainDataset) -> tuple[torch.Tensor, torch.Tensor,
                                                              np.ndarray]:
        """Per user: source history ``[n_users, L]`` (most recent first, -1 padding), whether
        it has source items ``[n_users]`` (bool tensor), whether it is warm in the target."""
        if self._cache is None or self._cache[0] != id(train):
            inter = train.interactions
            src = [train.info.domain_index(d) for d in self.source_domains()]
            frame = inter[np.isin(inter["domain"].to_numpy(), src)]
            frame = frame.sort_values(["user", "timestamp"], ascending=[True, False],
                                      kind="stable")
            pos = frame.groupby("user", sort=False).cumcount().to_numpy()
            keep = pos < self.config.max_history
            history = np.full((train.n_users, self.config.max_history), -1, dtype=np.int64)
            history[frame["user"].to_numpy()[keep], pos[keep]] = frame["item"].to_numpy()[keep]
            warm = np.zeros(train.n_users, dtype=bool)
            warm[train.domain_users(self.options.target)] = True
            hist = torch.from_numpy(history)
            self._cache = (id(train), hist, hist[:, 0] >= 0, warm)
        return self._cache[1:]

    def batches(
        self, train: MultiDomainDataset, stage: Stage, rng: np.random.Generator
    ) -> Iterator[PTUPCDRBatch]:
        """One shuffled pass over the stage's interactions (the meta stage: of the users with
        a source history)."""
        inter = train.interactions
        wanted = [train.info.domain_index(d) for d in stage.domains]
        inter = inter[np.isin(inter["domain"].to_numpy(), wanted)]
        history, has_source, _ = self._user_data(train)
        if stage.name == "meta":
            inter = inter[has_source.numpy()[inter["user"].to_numpy()]]
        users = inter["user"].to_numpy(np.int64)
        items = inter["item"].to_numpy(np.int64)
        ratings = inter["rating"].to_numpy(np.float32)
        if self.config.objective == "mse" and np.isnan(ratings).any():
            raise DataError(f"objective='mse' needs explicit ratings; stage {stage.name!r} has "
                            f"{int(np.isnan(ratings).sum())} interactions without one")
        order = rng.permutation(len(users))
        for start in range(0, len(order), stage.batch_size):
            idx = order[start : start + stage.batch_size]
            u, i = users[idx], items[idx]
            batch = PTUPCDRBatch(torch.from_numpy(u), torch.from_numpy(i))
            if self.config.objective == "bpr":
                batch.negatives = torch.from_numpy(
                    self.sampler.sample(train, u, i, self.config.n_negatives, rng))
            else:
                batch.ratings = torch.from_numpy(ratings[idx])
            if stage.name == "meta":
                batch.history = history[batch.users]
            yield batch

    # ------------------------------------------------------------------ model
    def transfer(self, user_source: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Transferred target factors ``u_src @ W_u``.

        Args:
            user_source: ``[B, d]`` source user factors.
            history: ``[B, L]`` global source item indices, -1 padding.

        Returns:
            ``[B, d]``.
        """
        mask = history >= 0
        bridge = self.meta(self.source_item(history.clamp(min=0)), mask)  # [B, d, d]
        return torch.bmm(user_source.unsqueeze(1), bridge).squeeze(1)

    def loss(self, batch: PTUPCDRBatch, stage: str) -> torch.Tensor:
        """The stage's objective (BPR or squared error), L2 on the MF stages' factors."""
        if stage == "source_mf":
            u, table = self.source_user(batch.users), self.source_item
        elif stage == "target_mf":
            u, table = self.target_user(batch.users), self.target_item
        else:
            u, table = self.transfer(self.source_user(batch.users), batch.history), \
                self.target_item
        item = table(batch.items)  # [b, d]
        pred = (u * item).sum(-1)  # [b]
        l2 = u.pow(2).sum() + item.pow(2).sum()
        if self.config.objective == "bpr":
            neg = table(batch.negatives)  # [b, k, d]
            loss = F.softplus(torch.einsum("bd,bkd->bk", u, neg) - pred[:, None]).mean()
            l2 = l2 + neg.pow(2).sum() / neg.shape[1]
        else:
            loss = F.mse_loss(pred + self.domain_mean[self.item_domain[batch.items]],
                              batch.ratings)
        return loss if stage == "meta" else loss + self.config.weight_decay * l2 / len(u)

    # ------------------------------------------------------------------ inference
    def _fold_in(self, query: Query) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor]:
        """A query history -> (source factor ``[B, d]``, source history ``[B, L]``, target
        factor ``[B, d]``, warm ``[B]`` bool): mean factors of its source / target items."""
        train = self._check_fitted()
        self.history_matrix(query, slice(0, 0))  # validates the history (DataError)
        device = self.source_item.weight.device
        h = query.history.to(device=device, dtype=torch.long)
        domain_of = torch.from_numpy(train.item_domain.astype(np.int64)).to(device)
        dom = torch.where(h >= 0, domain_of[h.clamp(min=0)], -1)
        src_ids = torch.tensor([train.info.domain_index(d) for d in self.source_domains()],
                               device=device)
        is_src, is_tgt = torch.isin(dom, src_ids), dom == train.info.domain_index(
            self.options.target)
        # the last max_history source items, right to left (order does not matter to attention)
        from_end = is_src.flip(1).cumsum(1).flip(1)
        keep = is_src & (from_end <= self.config.max_history)
        position = torch.arange(h.shape[1], device=device).expand_as(h)
        order = torch.where(keep, position, h.shape[1]).argsort(dim=1, stable=True)
        history = torch.where(keep, h, -1).gather(1, order)[:, : self.config.max_history]
        history = F.pad(history, (0, self.config.max_history - history.shape[1]), value=-1)

        def mean(table: nn.Embedding, mask: torch.Tensor) -> torch.Tensor:
            w = mask.float() / mask.sum(1, keepdim=True).clamp(min=1)  # [B, L]
            return torch.einsum("bl,bld->bd", w, table(h.clamp(min=0)))

        return mean(self.source_item, keep), history, mean(self.target_item, is_tgt), \
            is_tgt.any(1)

    @torch.no_grad()
    def user_vectors(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d]`` user factors for scoring ``domain`` (target: transferred for cold users)."""
        train = self._check_fitted()
        target = domain == self.options.target
        if query.history is not None:
            u_src, history, u_tgt, warm = self._fold_in(query)
        else:
            device = self.source_user.weight.device
            users = query.users.to(device=device, dtype=torch.long)
            if len(users) and (users.min() < 0 or users.max() >= train.n_users):
                raise DataError(
                    f"user index out of range [0, {train.n_users}) and no history given; "
                    "an anonymous user needs Query.history"
                )
            all_history, _, all_warm = self._user_data(train)
            u_src, u_tgt = self.source_user(users), self.target_user(users)
            history = all_history.to(device)[users]
            warm = torch.from_numpy(all_warm).to(device)[users]
        if not target:
            return u_src
        transferred = self.transfer(u_src, history)
        if self.config.transfer_warm:
            return transferred
        return torch.where(warm[:, None], u_tgt, transferred)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products of user and item factors (predicted ratings with "mse").

        Returns:
            ``[B, n_items(domain)]`` float32, on the model's device.

        Raises:
            DataError: an unknown domain, or one neither the target nor a source.
        """
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        table = self._item_table(domain)
        mean = self.domain_mean[train.info.domain_index(domain)]  # 0 with "bpr"
        return self.user_vectors(query, domain) @ table.weight[items].T + mean

    def _item_table(self, domain: str) -> nn.Embedding:
        """The item factors that score ``domain``; DataError for a domain not fitted."""
        self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        if domain == self.options.target:
            return self.target_item
        if domain in self.source_domains():
            return self.source_item
        raise DataError(f"PTUPCDR was fitted with target {self.options.target!r} and "
                        f"sources {list(self.source_domains())}; it cannot score {domain!r}")

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d + 1]`` item factors, then the domain mean (0 with "bpr")."""
        train = self._check_fitted()
        table = self._item_table(domain)
        return with_column(table.weight[train.domain_items(domain)],
                           self.domain_mean[train.info.domain_index(domain)])

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d + 1]`` user factors (transferred for cold target users), then 1."""
        self._item_table(domain)
        return with_column(self.user_vectors(query, domain), 1.0)
