"""Hybrid: item text vectors through a trainable projection, plus ID embeddings for warm items.

An item is ``e_i = P(t_i) + m_i * v_i`` with ``t_i`` its frozen text vector (a pretrained
sentence encoder), ``P`` a linear projection, ``v_i`` a learned ID embedding and ``m_i = 1`` when
the item has at least ``min_count`` training interactions (0 otherwise: rare, cold or brand-new
items are represented by their text alone). Its bias is ``w·t_i + m_i * b_i``. A user is
``Q(mean of e_j over the last max_seq_len items of their history)`` in every domain, so a
cold-start user of the target is represented by source items, and an item nobody has seen is
scored through its text. The score is ``u·e_i + bias_i`` (+ ``w`` x standardised
log-popularity, ``w`` chosen on validation users after training when a grid is given).

Training (one stage on all domains, early stopping on validation users): every training
interaction is predicted from the user's other history items (the positive left out) against
``n_negatives`` items drawn uniformly from the positive's domain (one draw per batch and
domain, shared by the batch's examples of that domain), with a sampled softmax or BPR. A share
``id_dropout`` of the warm items of each batch lose their ID part (DropoutNet-style, Volkovs et
al. NeurIPS 2017), so items never seen in training are scored on the same scale as the others.
A share ``cross_share`` of the examples only sees the items of the *other* domains, as a
cold-start user would. Optionally a distribution alignment loss (``crossrec.models.alignment``:
mmd, coral, adversarial) pulls the user vectors pooled from source-domain items towards those
pooled from target-domain items.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.sequence import user_sequences
from crossrec.models.alignment import Aligner
from crossrec.models.base import (
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    choose_on_validation,
    with_column,
)
from crossrec.models.baselines.text_zero_shot import log_popularity, query_histories
from crossrec.models.layers import gather_rows
from crossrec.models.text import TextConfig


class HybridConfig(TextConfig):
    """Hybrid text + ID hyper-parameters.

    Attributes:
        embedding_size: width D of item and user vectors.
        min_count: training interactions an item needs for an ID embedding.
        max_seq_len: most recent history items pooled into a user vector.
        objective: ``"softmax"`` (sampled softmax) or ``"bpr"``.
        n_negatives: negatives per batch and domain, uniform over the domain's items, shared
            by the batch's examples whose positive is in that domain.
        cross_share: share of examples whose history keeps only other-domain items.
        text_dropout: dropout on the text vectors before the projection.
        id_dropout: in training, the share of warm items in a batch scored by their text part
            alone (as a cold item is), so text-only and ID-enhanced vectors stay comparable.
        id_weight_decay: L2 penalty on the ID embeddings of each batch.
        learning_rate, epochs, batch_size, weight_decay, patience: the training stage (Adam,
            ``batch_size`` interactions; early stopping on validation).
        alignment: ``"none"``, ``"mmd"``, ``"coral"`` or ``"adversarial"`` between user vectors
            pooled from target items and from the other domains' items.
        alignment_weight: weight λ of the alignment loss.
        popularity_grid: weights ``w`` of a standardised log-popularity prior added to the
            scores, tried after training; the best on validation users is kept (``(0.0,)`` =
            no prior).
    """

    embedding_size: int = Field(64, ge=1)
    min_count: int = Field(5, ge=1)
    max_seq_len: int = Field(50, ge=1)
    objective: Literal["softmax", "bpr"] = "softmax"
    n_negatives: int = Field(256, ge=1)
    cross_share: float = Field(0.5, ge=0.0, le=1.0)
    text_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    id_dropout: float = Field(0.3, ge=0.0, le=1.0)
    id_weight_decay: float = Field(1e-4, ge=0.0)
    learning_rate: float = Field(1e-3, gt=0.0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(1024, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(3, ge=1)
    popularity_grid: tuple[float, ...] = (0.0,)
    alignment: Literal["none", "mmd", "coral", "adversarial"] = "none"
    alignment_weight: float = Field(0.1, ge=0.0)


@dataclass
class HybridBatch:
    """One batch of interactions: ``users``, ``items`` (positives), ``domains`` (the
    positives' domain codes) ``[b]``, ``history`` ``[b, L]`` (-1 = padding) and ``negatives``
    ``[n_domains, k]`` (global item indices, row d drawn from domain d)."""

    users: torch.Tensor
    items: torch.Tensor
    domains: torch.Tensor
    history: torch.Tensor
    negatives: torch.Tensor

    def to(self, device: str | torch.device) -> HybridBatch:
        return HybridBatch(*(t.to(device) for t in (self.users, self.items, self.domains,
                                                    self.history, self.negatives)))


class Hybrid(TorchRecommender):
    """Text-projection + warm-item ID embeddings, history-pooled users (module docstring).

    Parameters: ``text_proj`` (``Linear(dim, D)``), ``text_bias`` (``Linear(dim, 1)``),
    ``item_id`` / ``item_bias`` (ID parts, used where ``warm``), ``user_proj`` (``Linear(D, D)``)
    and ``aligner`` (its classifier when adversarial). Buffers: ``text`` (``float16
    [n_items, dim]``, saved with the state so a bundle needs no encoder).
    """

    Config = HybridConfig
    name = "hybrid"
    config: HybridConfig

    def __init__(self, config: HybridConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self._vectors: np.ndarray | None = None

    # ------------------------------------------------------------------ setup
    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        """Read the item text vectors (encoder + cache), then train (see the module doc)."""
        self._vectors = self.config.item_vectors(train, progress=options.progress,
                                                 target=options.target)
        super().fit(train, options)
        grid = self.config.popularity_grid
        w, curve = choose_on_validation(grid, self.prior_weight.fill_, self, options.validate)
        if curve:
            self.validation = {"popularity_weight": w, "valid": curve[str(w)]}
        return self

    def restore(self, train: MultiDomainDataset, options: FitOptions,
                state: dict[str, np.ndarray]) -> Self:
        self._vectors = np.asarray(state["text"])
        return super().restore(train, options, state)

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c, d = self.config, self.config.embedding_size
        if self._vectors is None or len(self._vectors) != train.n_items:
            raise RuntimeError("Hybrid.build needs the item text vectors; call fit() or restore()")
        dim = self._vectors.shape[1]
        self.register_buffer("text", torch.from_numpy(
            np.ascontiguousarray(self._vectors, dtype=np.float16)))  # [n_items, dim]
        self.text_proj = nn.Linear(dim, d)
        self.text_bias = nn.Linear(dim, 1)
        nn.init.zeros_(self.text_bias.weight)
        nn.init.zeros_(self.text_bias.bias)
        self.item_id = nn.Embedding(train.n_items, d)
        nn.init.zeros_(self.item_id.weight)  # warm items start from their text
        self.item_bias = nn.Embedding(train.n_items, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.user_proj = nn.Linear(d, d)
        self.text_dropout = nn.Dropout(c.text_dropout)
        self.aligner = Aligner(c.alignment, d, c.alignment_weight)
        counts = np.bincount(train.interactions["item"].to_numpy(np.int64),
                             minlength=train.n_items)
        self.register_buffer("warm", torch.from_numpy(counts >= c.min_count), persistent=False)
        self.register_buffer("item_domain", torch.from_numpy(
            train.item_domain.astype(np.int64)), persistent=False)
        self._target = train.info.domain_index(options.target)
        self._seq = None
        self.register_buffer("popularity", torch.from_numpy(log_popularity(train)),
                             persistent=False)  # [n_items], standardised per domain
        self.register_buffer("prior_weight", torch.zeros(()))  # chosen on validation

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("train", epochs=c.epochs, learning_rate=c.learning_rate,
                      batch_size=c.batch_size, weight_decay=c.weight_decay, patience=c.patience)]

    # ------------------------------------------------------------------ representations
    def item_vectors(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[..., D]`` vectors and ``[...]`` biases of global ``items`` (any shape, >= 0)."""
        t = self.text_dropout(self.text[items].float())
        warm = self.warm[items]
        if self.training and self.config.id_dropout > 0:
            warm = warm & (torch.rand(warm.shape, device=warm.device) >= self.config.id_dropout)
        vec = self.text_proj(t) + self.item_id(items) * warm[..., None]
        bias = self.text_bias(t).squeeze(-1) + self.item_bias(items).squeeze(-1) * warm
        return vec, bias

    def pool(self, history: torch.Tensor, vectors: torch.Tensor,
             keep: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, D]`` user vectors: ``Q(mean of the kept history vectors)``.

        Args:
            history: ``[B, L]`` item indices, -1 = padding.
            vectors: ``[B, L, D]`` their item vectors.
            keep: optional ``[B, L]`` bool, positions to pool (default: every non-padding one).
        """
        mask = history >= 0 if keep is None else keep & (history >= 0)
        weights = mask.float() / mask.sum(1, keepdim=True).clamp(min=1).float()  # [B, L]
        return self.user_proj(torch.einsum("bl,bld->bd", weights, vectors))

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[HybridBatch]:
        """Shuffled interactions of every domain, their users' histories, negatives."""
        if self._seq is None:
            self._seq = user_sequences(train)
        inter = train.interactions
        users = inter["user"].to_numpy(np.int64)
        items = inter["item"].to_numpy(np.int64)
        starts = np.array([train.domain_items(d).start for d in train.domains], dtype=np.int64)
        sizes = np.array([train.info.n_domain_items(d) for d in train.domains], dtype=np.int64)
        dom = train.item_domain.astype(np.int64)
        k = self.config.n_negatives
        order = rng.permutation(len(users))
        for s in range(0, len(order), stage.batch_size):
            idx = order[s:s + stage.batch_size]
            u, i = users[idx], items[idx]
            d = dom[i]
            neg = starts[:, None] + (rng.random((len(starts), k)) * sizes[:, None]
                                     ).astype(np.int64)  # [n_domains, k]
            hist = self._seq.padded(u, self.config.max_seq_len)
            cross = rng.random(len(idx)) < self.config.cross_share
            same = (hist >= 0) & (dom[np.maximum(hist, 0)] == d[:, None])
            hist[cross[:, None] & same] = -1  # a cold-start view: other domains only
            yield HybridBatch(torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(d),
                              torch.from_numpy(hist), torch.from_numpy(neg))

    def loss(self, batch: HybridBatch, stage: str) -> torch.Tensor:
        """Sampled ranking loss of each positive from its user's other items (+ alignment)."""
        b, length = batch.history.shape
        flat = torch.cat([batch.history.clamp(min=0).reshape(-1), batch.items,
                          batch.negatives.reshape(-1)])
        uniq, inverse = torch.unique(flat, return_inverse=True)
        vec, bias = self.item_vectors(uniq)
        vec, bias = gather_rows(vec, inverse), gather_rows(bias, inverse)
        hist_vec = vec[: b * length].view(b, length, -1)
        keep = batch.history != batch.items[:, None]  # leave the positive out
        user = self.pool(batch.history, hist_vec, keep)
        pos = slice(b * length, b * length + b)
        n_dom, k = batch.negatives.shape
        pos_score = (user * vec[pos]).sum(-1) + bias[pos]  # [b]
        neg_all = (user @ vec[b * length + b :].T).view(b, n_dom, k)  # [b, n_domains, k]
        neg_score = neg_all[torch.arange(b, device=user.device), batch.domains]  # [b, k]
        neg_score = neg_score + gather_rows(bias[b * length + b :].view(n_dom, k),
                                            batch.domains)
        if self.config.objective == "bpr":
            losses = F.softplus(neg_score - pos_score[:, None]).mean(-1)
        else:
            losses = torch.logsumexp(torch.cat([pos_score[:, None], neg_score], 1), 1) - pos_score
        wanted = torch.cat([batch.items, batch.history[batch.history >= 0]])
        penalty = self.item_id(wanted).pow(2).sum() / b
        total = losses.mean() + self.config.id_weight_decay * penalty
        if self.config.alignment != "none":
            total = total + self._alignment(batch.history, hist_vec)
        return total

    def _alignment(self, history: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """Alignment between user vectors pooled from target items and from other items."""
        in_target = self.item_domain[history.clamp(min=0)] == self._target
        valid = history >= 0
        tgt, src = in_target & valid, ~in_target & valid
        both = tgt.any(1) & src.any(1)
        if int(both.sum()) < 2:
            return vectors.new_zeros(())
        x = self.pool(history[both], vectors[both], src[both])
        y = self.pool(history[both], vectors[both], tgt[both])
        return self.aligner(x, y)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, D]`` pooled history vectors (training history unless ``query.history``)."""
        train = self._check_fitted()
        hist = torch.from_numpy(query_histories(train, query, self.config.max_seq_len))
        hist = hist.to(self.text.device)
        vec, _ = self.item_vectors(hist.clamp(min=0))
        return self.pool(hist, vec)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` ``u·e_i + bias_i``."""
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        u = self.user_vectors(query)
        idx = torch.arange(items.start, items.stop, device=self.text.device)
        vec, bias = self.item_vectors(idx)
        return u @ vec.T + bias[None, :] + self.prior_weight * self.popularity[idx][None, :]

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), D + 1]`` item vectors, then bias plus the popularity prior."""
        items = self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        idx = torch.arange(items.start, items.stop, device=self.text.device)
        vec, bias = self.item_vectors(idx)
        return with_column(vec, bias + self.prior_weight * self.popularity[idx])

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, D + 1]`` pooled user vectors, then 1."""
        self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        return with_column(self.user_vectors(query), 1.0)
