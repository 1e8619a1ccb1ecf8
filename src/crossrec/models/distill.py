"""Knowledge distillation: a small, fast student learns a fitted teacher's target-domain scores.

Hinton et al., "Distilling the Knowledge in a Neural Network" (2015); for ranking, Tang & Wang,
"Ranking Distillation" (KDD 2018). The teacher (any registered model, typically the text
model ``text_transfer``) is fitted first on the same training data and ``FitOptions`` (or is
passed already fitted: ``Distill(config, fitted_teacher=model)``). Its scores of every
target item are read for every user with training history — cold target users included, whose
only history is in the source domains: that is what a cross-domain teacher passes on — and
standardised per user over the target's items. Nothing of the valid/test truth is read.

Each step takes a batch of users and ``n_candidates`` target items per user: up to
``n_positives`` of the user's training positives, the teacher's ``n_top`` best items among the
ones the user has not seen, and uniform items for the rest. The loss is

    alpha * T² * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * ranking(s, positives)

with ``t`` the teacher's and ``s`` the student's scores of the candidates, ``T`` the
``temperature`` and ``ranking`` the softmax cross-entropy of the true positives among the
candidates (users without target positives only get the KL term).

Students (both score all target items with one matmul, ``[B, d] @ [d, n_items]`` + bias):

- ``mf``: user and item embeddings and an item bias. Every user with training history has a
  trained row (cold target users learn theirs from the teacher alone). A ``Query.history``
  is folded in as the mean embedding of its target items (as BPR does); a history with no
  target item gets the item biases only.
- ``mlp``: a 2-layer MLP maps the mean text vector of a user's history (all domains; the
  cached vectors of the teacher's encoder) to a user vector; items are a linear map of their
  text vectors plus a bias. Anonymous cross-domain histories are scored like known users.

A student scores the target domain only (other domains raise a DataError).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import (
    FitOptions,
    ModelConfig,
    Query,
    Recommender,
    Stage,
    TorchRecommender,
    with_column,
)
from crossrec.models.history import check_query, select_history, training_histories
from crossrec.models.layers import gather_rows
from crossrec.models.text import TextConfig


class DistillConfig(ModelConfig):
    """Distillation settings.

    Attributes:
        teacher: the teacher's model config, ``{"name": ..., **its fields}`` (a registered
            model other than ``distill``), fitted first inside ``fit``.
        student: ``"mf"`` (user/item embeddings) or ``"mlp"`` (MLP over history text vectors).
        embedding_size: width ``d`` of the student's user and item vectors.
        hidden_size: hidden width of the ``mlp`` student's user MLP.
        temperature: of both softmaxes of the KL term (teacher scores are standardised first).
        n_candidates: target items per user and step (positives + teacher top + uniform).
        n_top: the teacher's best unseen items among the candidates.
        n_positives: the user's training target positives among the candidates (at most).
        alpha: weight of the distillation loss; ``1 - alpha`` weighs the ranking loss.
        epochs, learning_rate, batch_size (users), weight_decay, patience: the stage (Adam,
            early stopping on validation when ``FitOptions.validate`` is given).
        init_std: normal initialisation of the ``mf`` embeddings.
        max_history: most recent history items averaged by the ``mlp`` student.
        encoder, template, lora: the ``mlp`` student's item text and optional LoRA-tuned
            encoder (default: the teacher's, else the text models' default).
        teacher_cache_mb: the teacher's standardised scores (float16) are kept in memory during
            ``fit`` when they take at most this much; else they are recomputed every batch.
    """

    teacher: dict[str, Any] = Field(default_factory=lambda: {"name": "text_transfer"})
    student: Literal["mf", "mlp"] = "mf"
    embedding_size: int = Field(64, ge=1)
    hidden_size: int = Field(256, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    n_candidates: int = Field(256, ge=2)
    n_top: int = Field(50, ge=1)
    n_positives: int = Field(8, ge=0)
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    epochs: int = Field(30, ge=1)
    learning_rate: float = Field(1e-2, gt=0.0)
    batch_size: int = Field(256, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(3, ge=1)
    init_std: float = Field(0.1, gt=0.0)
    max_history: int = Field(50, ge=1)
    encoder: str | None = None
    template: str | None = None
    lora: dict[str, Any] | None = None
    teacher_cache_mb: float = Field(2048.0, ge=0.0)

    @field_validator("teacher")
    @classmethod
    def _check_teacher(cls, spec: dict[str, Any]) -> dict[str, Any]:
        from crossrec.models import check_nested_spec

        check_nested_spec(spec, "teacher", exclude="distill")
        return spec

    def text_config(self) -> TextConfig:
        """The ``mlp`` student's encoder and template (own setting > teacher's > default)."""
        fields = {k: v for k in ("encoder", "template", "lora")
                  if (v := getattr(self, k) or self.teacher.get(k)) is not None}
        return TextConfig(**fields)

    def n_slots(self) -> tuple[int, int, int]:
        """Candidate slots: positives, teacher top, uniform (their sum is ``n_candidates``)."""
        pos = min(self.n_positives, self.n_candidates - 1)
        top = min(self.n_top, self.n_candidates - pos)
        return pos, top, self.n_candidates - pos - top


@dataclass
class DistillBatch:
    """``users [b]``; ``candidates [b, C]`` local target items (the first ``P`` slots the
    positives); ``teacher [b, C]`` standardised teacher scores; ``positive [b, P]`` bool."""

    users: torch.Tensor
    candidates: torch.Tensor
    teacher: torch.Tensor
    positive: torch.Tensor

    def to(self, device: str | torch.device) -> DistillBatch:
        return DistillBatch(self.users.to(device), self.candidates.to(device),
                            self.teacher.to(device), self.positive.to(device))


class Distill(TorchRecommender):
    """A student (``mf`` or ``mlp``) trained on a fitted teacher's target scores.

    Parameters: ``mf``: ``user_embedding`` ``[n_users, d]``, ``item_embedding``
    ``[n_target_items, d]``, ``item_bias``; ``mlp``: ``user_mlp`` (``dim -> hidden -> d``),
    ``item_map`` (``dim -> d``), ``item_bias``. The text vectors and training histories of the
    ``mlp`` student are rebuilt from the data and the encoder cache. After ``fit``, ``teacher``
    is the fitted teacher (not part of the state: the student scores alone).
    """

    Config = DistillConfig
    name = "distill"
    config: DistillConfig

    def __init__(self, config: DistillConfig | dict | None = None, *,
                 fitted_teacher: Recommender | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        # object.__setattr__: a torch teacher must not become a submodule (state, device)
        object.__setattr__(self, "teacher", fitted_teacher)
        self._table: torch.Tensor | None = None  # mlp: [n_target_items, d] cached in eval mode
        self._cache: torch.Tensor | None = None  # [n_distilled, n_target_items] float16
        self._row: np.ndarray | None = None  # user -> row of _cache (-1: none)

    # ------------------------------------------------------------------ set-up
    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c = self.config
        self._target = options.target
        self._items = train.domain_items(options.target)  # DataError for an unknown target
        n_t = self._items.stop - self._items.start
        if c.student == "mf":
            self.user_embedding = nn.Embedding(train.n_users, c.embedding_size)
            self.item_embedding = nn.Embedding(n_t, c.embedding_size)
            nn.init.normal_(self.user_embedding.weight, std=c.init_std)
            nn.init.normal_(self.item_embedding.weight, std=c.init_std)
        else:
            text = torch.from_numpy(c.text_config().item_vectors(
                train, progress=options.progress, target=options.target))
            dim = text.shape[1]
            self.user_mlp = nn.Sequential(nn.Linear(dim, c.hidden_size), nn.ReLU(),
                                          nn.Linear(c.hidden_size, c.embedding_size))
            self.item_map = nn.Linear(dim, c.embedding_size, bias=False)
            self.register_buffer("text", text, persistent=False)  # [n_items, dim]
            self.register_buffer("histories", training_histories(
                train, train.domains, c.max_history), persistent=False)  # [n_users, L]
            self.register_buffer("item_domain", torch.from_numpy(
                train.item_domain.astype(np.int64)), persistent=False)  # [n_items]
        self.item_bias = nn.Parameter(torch.zeros(n_t))  # [n_target_items]
        self._table = None

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("distill", epochs=c.epochs, learning_rate=c.learning_rate,
                      batch_size=c.batch_size, weight_decay=c.weight_decay,
                      domains=(target,), patience=c.patience)]

    def train(self, mode: bool = True) -> Self:
        self._table = None  # the mlp item table changes with the weights
        return super().train(mode)

    # ------------------------------------------------------------------ teacher
    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        """Fit the teacher (unless given fitted), then the student on its scores."""
        teacher = self.teacher
        if teacher is None:
            from crossrec.models import build_model

            teacher = build_model(self.config.teacher)
            sub = options.run_dir / "teacher" if options.run_dir is not None else None
            teacher.fit(train, replace(options, run_dir=sub))
            object.__setattr__(self, "teacher", teacher)
        elif teacher.train_data is None:
            raise ValueError("fitted_teacher is not fitted; call its fit() first")
        elif (teacher.train_data.n_users, teacher.train_data.n_items) != (train.n_users,
                                                                        train.n_items):
            raise ValueError("fitted_teacher was fitted on other data (users/items differ)")
        self._distilled = np.unique(train.interactions["user"].to_numpy(np.int64))
        self._seen = train.user_items(options.target).tocsr()  # [n_users, n_target_items]
        n_t = self._seen.shape[1]
        self._cache, self._row = None, None
        if len(self._distilled) * n_t * 2 <= self.config.teacher_cache_mb * 2**20:
            rows = [self._teacher_rows(teacher, self._distilled[s : s + 512], options.target)
                    for s in range(0, len(self._distilled), 512)]
            self._cache = torch.cat(rows).half() if rows else torch.zeros((0, n_t)).half()
            self._row = np.full(train.n_users, -1, dtype=np.int64)
            self._row[self._distilled] = np.arange(len(self._distilled))
        try:
            super().fit(train, options)
        finally:
            self._cache = self._row = self._seen = None  # the student scores alone
        return self

    @staticmethod
    def _teacher_rows(teacher: Recommender, users: np.ndarray, target: str) -> torch.Tensor:
        """``[b, n_target_items]`` the teacher's scores, standardised per user (float32)."""
        with torch.no_grad():
            s = teacher.score(Query(torch.from_numpy(users)), target).detach().cpu().float()
        if not torch.isfinite(s).all():
            raise DataError(f"teacher {type(teacher).__name__} gave non-finite scores")
        return (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True).clamp(min=1e-6)

    def _teacher_batch(self, users: np.ndarray) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[torch.from_numpy(self._row[users])].float()
        return self._teacher_rows(self.teacher, users, self._target).half().float()  # as cached

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[DistillBatch]:
        """One shuffled pass over the distilled users, ``stage.batch_size`` at a time."""
        n_pos, n_top, n_uni = self.config.n_slots()
        n_t = self._seen.shape[1]
        order = rng.permutation(self._distilled)
        for start in range(0, len(order), stage.batch_size):
            users = order[start : start + stage.batch_size]
            b = len(users)
            teacher = self._teacher_batch(users)  # [b, n_t]
            seen = self._seen[users].tocoo()
            cand = rng.integers(0, n_t, size=(b, n_pos + n_top + n_uni))
            positive = np.zeros((b, n_pos), dtype=bool)
            if n_pos and seen.nnz:  # up to n_pos random positives per user, in the first slots
                key = np.lexsort((rng.random(seen.nnz), seen.row))
                r, col = seen.row[key], seen.col[key]
                rank = np.arange(len(r)) - np.searchsorted(r, r)
                keep = rank < n_pos
                cand[r[keep], rank[keep]] = col[keep]
                positive[r[keep], rank[keep]] = True
            masked = teacher.clone()
            masked[torch.from_numpy(seen.row.astype(np.int64)),
                   torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
            top = torch.topk(masked, min(n_top, n_t), dim=1).indices.numpy()
            cand[:, n_pos : n_pos + top.shape[1]] = top
            cand_t = torch.from_numpy(cand)
            yield DistillBatch(torch.from_numpy(users.astype(np.int64)), cand_t,
                               torch.gather(teacher, 1, cand_t), torch.from_numpy(positive))

    def loss(self, batch: DistillBatch, stage: str) -> torch.Tensor:
        """``alpha`` x T² x KL(teacher || student) + (1 - alpha) x positives' cross-entropy."""
        c = self.config
        users = self._users(batch.users)  # [b, d]
        uniq, inverse = torch.unique(batch.candidates, return_inverse=True)
        # gather_rows: repeated candidates' gradients summed deterministically
        items = gather_rows(self._item_vectors(uniq), inverse)  # [b, C, d]
        bias = gather_rows(self.item_bias, batch.candidates)  # [b, C]
        s = torch.einsum("bd,bcd->bc", users, items) + bias
        out = s.new_zeros(())
        if c.alpha > 0:
            t = c.temperature
            kl = F.kl_div(F.log_softmax(s / t, dim=1), F.log_softmax(batch.teacher / t, dim=1),
                          log_target=True, reduction="batchmean")
            out = out + c.alpha * t * t * kl
        if c.alpha < 1 and batch.positive.any():
            log_p = F.log_softmax(s, dim=1)[:, : batch.positive.shape[1]]  # [b, P]
            mask = batch.positive.float()
            out = out - (1 - c.alpha) * (log_p * mask).sum() / mask.sum()
        return out

    # ------------------------------------------------------------------ representations
    def _users(self, users: torch.Tensor) -> torch.Tensor:
        """``[b, d]`` training-time user vectors of known users."""
        if self.config.student == "mf":
            return self.user_embedding(users)
        return self._mlp_users(self.histories[users])

    def _mlp_users(self, history: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` MLP of the mean text vector of ``[B, L]`` histories (-1 = padding)."""
        valid = (history >= 0).float()  # [B, L]
        vectors = self.text[history.clamp(min=0)] * valid[..., None]  # [B, L, dim]
        mean = vectors.sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0)
        return self.user_mlp(mean)

    def _item_vectors(self, local: torch.Tensor) -> torch.Tensor:
        """``[n, d]`` student vectors of local target items ``[n]``."""
        if self.config.student == "mf":
            return self.item_embedding(local)
        return self.item_map(self.text[local + self._items.start])

    def _item_table(self) -> torch.Tensor:
        """``[n_target_items, d]`` every target item's vector (cached in eval mode)."""
        if self.config.student == "mf":
            return self.item_embedding.weight
        if self._table is None or self.training:
            n_t = self._items.stop - self._items.start
            table = self._item_vectors(torch.arange(n_t, device=self.text.device))
            if self.training:
                return table
            self._table = table.detach()
        return self._table

    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]`` student user vectors: the user's own (trained row or training history),
        or the folded-in ``query.history``."""
        train = self._check_fitted()
        check_query(train, query.users, query.history)
        device = self.item_bias.device
        if query.history is None:
            return self._users(query.users.to(device=device, dtype=torch.long))
        if self.config.student == "mlp":
            codes = torch.arange(len(train.domains), device=device)
            history = select_history(query.history.to(device), self.item_domain, codes,
                                     self.config.max_history)
            return self._mlp_users(history)
        hist = self.history_matrix(query, self._items).tocoo()  # the target items, as BPR
        counts = np.maximum(np.bincount(hist.row, minlength=hist.shape[0]), 1)
        weights = torch.from_numpy((1.0 / counts[hist.row]).astype(np.float32)).to(device)
        rows = torch.from_numpy(hist.row.astype(np.int64)).to(device)
        cols = torch.from_numpy(hist.col.astype(np.int64)).to(device)
        vectors = self.item_embedding(cols) * weights[:, None]  # [nnz, d]
        out = torch.zeros(hist.shape[0], vectors.shape[1], device=device)
        return out.index_add_(0, rows, vectors)

    def _check_domain(self, domain: str) -> None:
        train = self._check_fitted()
        train.domain_items(domain)  # DataError for an unknown domain
        if domain != self._target:
            raise DataError(f"a distilled student scores only its target domain "
                            f"{self._target!r}, not {domain!r}")

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]``: user vectors @ item vectors + item bias (one matmul)."""
        self._check_domain(domain)
        return torch.addmm(self.item_bias, self.user_vectors(query), self._item_table().T)

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d + 1]`` item vectors, then the item bias."""
        self._check_domain(domain)
        return with_column(self._item_table().detach(), self.item_bias.detach())

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d + 1]`` user vectors, then 1."""
        self._check_domain(domain)
        return with_column(self.user_vectors(query), 1.0)
