"""Text transfer: UniSRec-style pre-training on the source domains, then adaptation to the target.

Hou et al., "Towards Universal Sequence Representation Learning for Recommender Systems"
(KDD 2022). Items are frozen text vectors of a pretrained language model; a mixture-of-experts
adapter with parametric whitening maps them to D dimensions; a causal Transformer reads the
user's cross-domain sequence and its last state is the user vector. An item's score is the
cosine of the user vector and the item's adapted vector over a temperature, plus a learned
item bias (and, optionally, a popularity prior whose weight is chosen on validation users).

Stages, run by the Trainer:

1. ``pretrain`` on the fused source domains: sequence-item contrastive loss (every position
   predicts the next item among in-batch and sampled negatives) plus sequence-sequence
   contrastive loss between two augmented views (item drop / crop) of each sequence.
2. ``adapt`` to the target: a target training interaction is predicted from the user's
   source history alone (as for a cold-start user) or from the mixed history before it, ranked
   among in-batch and sampled target items (or all of them). ``adaptation="adapter"`` trains
   only the adapter, the item bias and the layer norms (parameter-efficient; the Transformer's
   weights stay as pre-trained), ``"full"`` trains everything. L2 (weight decay), dropout,
   early stopping on validation users.

A cold-start user's sequence is their source history, scored against the target items: that
is the transfer. ``score_text`` scores free text as a one-item sequence.

**Another modality.** ``modality_file`` names precomputed item vectors (image embeddings made
elsewhere, ...; ``crossrec.encoders.vector_file``), fused with the text vectors before the
sequence model: ``modality_fusion="concat"`` feeds ``[text ; other]`` to the one adapter,
``"gated"`` adapts each modality with its own MoE adapter and mixes them per dimension,
``g * a_text + (1 - g) * a_other`` with ``g = sigmoid(W [text ; other] + b)`` (starts at 0.5).
Items the file lacks, and free-text queries, have a zero vector there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.sequence import user_sequences
from crossrec.models.base import (
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    choose_on_validation,
    with_column,
)
from crossrec.models.cross.text_batches import SequenceBatch, adapt_batches, pretrain_batches
from crossrec.models.history import check_query, select_history, training_histories
from crossrec.models.layers import MoEAdapter, SequenceEncoder
from crossrec.models.text import QueryEncoder, TextConfig


class TextTransferConfig(TextConfig):
    """Text-transfer hyper-parameters.

    Attributes:
        embedding_size: width D of the adapter output and of the Transformer.
        n_experts: adapter experts K.
        max_seq_len: most recent items of a user's sequence read (L).
        n_layers, n_heads: Transformer size.
        dropout: dropout in the Transformer; adapter_dropout: on the text vectors.
        temperature: of the cosine scores (and of both contrastive losses).
        item_bias: learn a bias per item (a learned popularity).
        pop_weights: weights of the popularity prior ``log(1 + training count)`` tried after
            training; the best on validation users is kept, a tie to the first listed (a single
            value is used as is).
        pretrain_epochs: epochs of stage 1 (0 = no pre-training).
        pretrain_domains: ``"sources"`` (the source domains' sequences) or ``"all"`` (the
            mixed sequences of every domain, target included: UniSRec on the fused data, for
            next-item protocols where every domain is a target).
        pretrain_validate: early-stop pre-training on the validation users (always on when
            there is no adaptation stage: a brand-new target domain, or ``epochs = 0``).
        pretrain_learning_rate, pretrain_batch_size: stage 1 (users per batch).
        n_negatives: sampled negatives per pre-training batch (besides the in-batch ones).
        seq_seq_weight: weight of the sequence-sequence loss (0 = off).
        item_drop, crop: augmentation of the two views.
        adaptation: ``"adapter"`` (adapter, item bias and layer norms trained) or ``"full"``
            (everything).
        epochs, learning_rate, batch_size, weight_decay, patience: stage 2 (Adam; an epoch
            draws one target interaction per user; early stopping on validation); ``epochs =
            0`` skips adaptation (the pre-trained model ranks).
        adapt_negatives: 0 = rank each target among every target item; N = in-batch + N.
        cold_share: share of adaptation examples whose input is the source history alone.
        modality_file: Parquet file of precomputed item vectors of another modality (``item_id``,
            ``vector``[, ``domain``]; relative to the data directory), fused with the text.
        modality_fusion: ``"concat"`` (one adapter over both) or ``"gated"`` (an adapter each,
            gated sum); trained with the adapter.
    """

    embedding_size: int = Field(64, ge=1)
    n_experts: int = Field(4, ge=1)
    max_seq_len: int = Field(20, ge=1)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    adapter_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    temperature: float = Field(0.07, gt=0.0)
    item_bias: bool = True
    pop_weights: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    pretrain_epochs: int = Field(2, ge=0)
    pretrain_learning_rate: float = Field(1e-3, gt=0.0)
    pretrain_batch_size: int = Field(128, ge=2)
    pretrain_domains: Literal["sources", "all"] = "sources"
    pretrain_validate: bool = False
    n_negatives: int = Field(512, ge=0)
    seq_seq_weight: float = Field(0.1, ge=0.0)
    item_drop: float = Field(0.2, ge=0.0, lt=1.0)
    crop: float = Field(0.6, gt=0.0, le=1.0)
    adaptation: Literal["adapter", "full"] = "adapter"
    epochs: int = Field(15, ge=0)
    learning_rate: float = Field(1e-2, gt=0.0)
    batch_size: int = Field(512, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(3, ge=1)
    adapt_negatives: int = Field(2048, ge=0)
    cold_share: float = Field(0.5, ge=0.0, le=1.0)
    modality_file: str | None = None
    modality_fusion: Literal["concat", "gated"] = "concat"


ADAPTER_PARAMETERS = ("adapter.", "item_bias", "extra_adapter.", "modality_gate.")
"""Parameter-name prefixes trained by ``adaptation="adapter"`` (besides the layer norms)."""


class TextTransfer(TorchRecommender):
    """Frozen text vectors -> MoE adapter -> Transformer over the cross-domain sequence.

    Parameters: ``adapter`` (MoEAdapter), ``sequence`` (SequenceEncoder), ``item_bias``
    (``[n_items]``). Buffers: ``pop_weight`` (chosen on validation, saved); the text vectors,
    popularity prior and training histories are rebuilt from the data and the encoder cache.
    """

    Config = TextTransferConfig
    name = "text_transfer"
    config: TextTransferConfig

    def __init__(self, config: TextTransferConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._queries = QueryEncoder(self.config)
        self.fit_report: dict[str, Any] = {}
        self._tables: dict[tuple[str, str], torch.Tensor] = {}  # eval-mode item tables

    def train(self, mode: bool = True) -> Self:
        """Switch mode; any change of mode drops the cached inference item tables."""
        self._tables = {}
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        """Load weights; drops the cached inference item tables."""
        self._tables = {}
        return super().load_state_dict(state_dict, *args, **kwargs)

    # ------------------------------------------------------------------ set-up
    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c = self.config
        self._tables = {}
        if c.embedding_size % c.n_heads:
            raise ValueError(f"embedding_size {c.embedding_size} is not divisible by "
                             f"n_heads {c.n_heads}")
        text = torch.from_numpy(c.item_vectors(train, progress=options.progress,
                                               target=options.target))
        extra = torch.zeros((train.n_items, 0))
        if c.modality_file:
            from crossrec.encoders.vector_file import load_item_vectors

            found = load_item_vectors(c.modality_file, train)
            extra = torch.from_numpy(found.vectors)
            self.modality_report = {"items_with_vectors": found.found,
                                    "items_without": found.missing,
                                    "file_rows_unknown": found.unknown}
        gated = c.modality_file is not None and c.modality_fusion == "gated"
        d_in = text.shape[1] + (0 if gated else extra.shape[1])
        self.adapter = MoEAdapter(d_in, c.embedding_size, n_experts=c.n_experts,
                                  dropout=c.adapter_dropout)
        if gated:
            self.extra_adapter = MoEAdapter(extra.shape[1], c.embedding_size,
                                            n_experts=c.n_experts, dropout=c.adapter_dropout)
            self.modality_gate = nn.Linear(text.shape[1] + extra.shape[1], c.embedding_size)
            nn.init.zeros_(self.modality_gate.weight)
            nn.init.zeros_(self.modality_gate.bias)
        self.sequence = SequenceEncoder(c.embedding_size, c.max_seq_len, n_layers=c.n_layers,
                                        n_heads=c.n_heads, dropout=c.dropout)
        if c.item_bias:
            self.item_bias = nn.Parameter(torch.zeros(train.n_items))  # [n_items]
        else:
            self.register_buffer("item_bias", torch.zeros(train.n_items), persistent=False)
        counts = np.bincount(train.interactions["item"].to_numpy(), minlength=train.n_items)
        self.register_buffer("text", text, persistent=False)  # [n_items, d_text]
        self.register_buffer("extra", extra, persistent=False)  # [n_items, d_other] (d_other 0)
        self.register_buffer("pop_prior", torch.from_numpy(np.log1p(counts).astype(np.float32)),
                             persistent=False)  # [n_items]
        self.register_buffer("pop_weight", torch.tensor(float(c.pop_weights[0])))
        self.register_buffer("item_domain", torch.from_numpy(
            train.item_domain.astype(np.int64)), persistent=False)  # [n_items]
        self.register_buffer("histories", training_histories(train, train.domains, c.max_seq_len),
                             persistent=False)  # [n_users, L]
        self._sources = options.sources or tuple(d for d in train.domains
                                                 if d != options.target)
        self._target = options.target
        item_domain = train.item_domain[train.interactions["item"].to_numpy()]  # [n_rows]
        self._new_domain = not bool((item_domain == train.info.domain_index(self._target)).any())

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        sources = tuple(sources) or self._sources
        stages = []
        # no target row to adapt on, or no adaptation asked for: the pre-trained model ranks
        last = getattr(self, "_new_domain", False) or c.epochs == 0
        if c.epochs == 0 and not c.pretrain_epochs:
            raise ValueError("text_transfer: epochs = 0 and pretrain_epochs = 0 train nothing")
        if c.pretrain_epochs:
            domains = () if c.pretrain_domains == "all" else sources  # () = every domain
            stages.append(Stage("pretrain", epochs=c.pretrain_epochs, domains=domains,
                                learning_rate=c.pretrain_learning_rate,
                                batch_size=c.pretrain_batch_size, patience=c.patience,
                                validate=c.pretrain_validate or last))
            if last:
                return stages
        trainable: tuple[str, ...] = ()
        if c.adaptation == "adapter" and c.pretrain_epochs:
            trainable = ADAPTER_PARAMETERS + self.norm_parameters()
        stages.append(Stage("adapt", epochs=c.epochs, learning_rate=c.learning_rate,
                            batch_size=c.batch_size, weight_decay=c.weight_decay,
                            domains=(target,), trainable=trainable, patience=c.patience))
        return stages

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        super().fit(train, options)
        c = self.config
        chosen, _ = choose_on_validation(c.pop_weights, self.pop_weight.fill_, self,
                                         options.validate)
        stages = self.default_stages(options.sources, options.target)
        seconds = {s.name: s.seconds for s in self.training_summary.stages}
        self.fit_report = {"stage_seconds": seconds, "pop_weight": chosen,
                           **self.parameter_counts(stages[-1].trainable),
                           **getattr(self, "modality_report", {})}
        return self

    def norm_parameters(self) -> tuple[str, ...]:
        """Names of the Transformer's layer-norm parameters (trained with the adapter)."""
        return tuple(f"sequence.{n}." for n, m in self.sequence.named_modules()
                     if isinstance(m, nn.LayerNorm))

    def parameter_counts(self, trainable: Sequence[str] = ()) -> dict[str, float]:
        """Parameters trained by a stage with ``trainable`` prefixes (empty = all), of all.

        Returns:
            ``trained``, ``total`` (model parameters), ``percent_trained`` and
            ``frozen_text_values`` (the frozen text-vector table, not counted in ``total``).
        """
        named = [(n, p.numel()) for n, p in self.named_parameters()]
        total = sum(k for _, k in named)
        trained = sum(k for n, k in named if not trainable or n.startswith(tuple(trainable)))
        return {"trained": trained, "total": total,
                "percent_trained": round(100.0 * trained / max(total, 1), 2),
                "frozen_text_values": int(self.text.numel() + self.extra.numel())}

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[SequenceBatch]:
        c = self.config
        domains = stage.domains or tuple(train.domains)
        pool = np.concatenate([np.arange(train.domain_items(d).start, train.domain_items(d).stop)
                               for d in domains])
        if stage.name == "pretrain":
            yield from pretrain_batches(
                user_sequences(train, list(domains)), pool, max_len=c.max_seq_len,
                batch_size=stage.batch_size, n_negatives=c.n_negatives, drop=c.item_drop,
                crop=c.crop, views=c.seq_seq_weight > 0, rng=rng)
            return
        (target,) = domains
        yield from adapt_batches(
            user_sequences(train), user_sequences(train, list(self._sources)),
            train.item_domain, train.info.domain_index(target), pool, max_len=c.max_seq_len,
            batch_size=stage.batch_size, n_negatives=c.adapt_negatives,
            cold_share=c.cold_share, rng=rng)

    def loss(self, batch: SequenceBatch, stage: str) -> torch.Tensor:
        """Pre-training: next-item + weighted sequence-sequence loss; adaptation: next item."""
        if stage == "pretrain":
            width = _width(batch.inputs)
            batch.inputs, batch.targets = batch.inputs[:, -width:], batch.targets[:, -width:]
            states = self.sequence(self.item_inputs(batch.inputs), batch.inputs < 0)  # [B, L, D]
            keep = batch.targets >= 0
            loss = self._item_loss(states[keep], batch.targets[keep], batch.candidates)
            if batch.view_a is not None and self.config.seq_seq_weight > 0:
                loss = loss + self.config.seq_seq_weight * self._seq_loss(batch.view_a,
                                                                          batch.view_b)
            return loss
        candidates = batch.candidates
        if candidates is None:
            items = self._check_fitted().domain_items(self._target)
            candidates = torch.arange(items.start, items.stop, device=batch.targets.device)
        return self._item_loss(self.encode(batch.inputs), batch.targets, candidates)

    def _item_loss(self, states: torch.Tensor, targets: torch.Tensor,
                   candidates: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy of ``targets`` ``[P]`` among sorted ``candidates`` ``[C]``."""
        logits = self._logits(states, candidates)  # [P, C]
        return F.cross_entropy(logits, torch.searchsorted(candidates, targets))

    def _seq_loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between the user vectors of two views ``[B, L]``."""
        a = F.normalize(self.encode(view_a), dim=-1)
        b = F.normalize(self.encode(view_b), dim=-1)
        logits = a @ b.T / self.config.temperature  # [B, B]
        labels = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    # ------------------------------------------------------------------ representations
    def item_inputs(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` adapted vectors of ``[B, L]`` items (padding gives the adapted 0)."""
        uniq, inverse = torch.unique(items.clamp(min=0), return_inverse=True)
        return self.adapt(self.text[uniq], self.extra[uniq])[inverse]

    def adapt(self, text: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` adapted item vectors of ``[N, d_text]`` text and ``[N, d_other]`` other
        modality vectors (``d_other`` 0 without one), fused as ``modality_fusion`` says."""
        if not (self.config.modality_file and self.config.modality_fusion == "gated"):
            return self.adapter(torch.cat([text, extra], -1) if extra.shape[-1] else text)
        gate = torch.sigmoid(self.modality_gate(torch.cat([text, extra], -1)))
        return gate * self.adapter(text) + (1 - gate) * self.extra_adapter(extra)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` user vectors of ``[B, L]`` left-padded item sequences."""
        items = items[:, -_width(items):]  # columns of padding only change nothing: drop them
        return self.sequence.last(self.item_inputs(items), items < 0)

    def _logits(self, states: torch.Tensor, items: torch.Tensor,
                table: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C]`` cosine / temperature + item bias (+ popularity prior) for ``items``;
        ``table`` (``[C, D]``, normalised adapted vectors of ``items``) when already known."""
        if table is None:
            table = F.normalize(self.adapt(self.text[items], self.extra[items]), dim=-1)
        out = F.normalize(states, dim=-1) @ table.T / self.config.temperature
        return out + self.item_bias[items] + self.pop_weight * self.pop_prior[items]

    # ------------------------------------------------------------------ inference
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, D]`` user vectors: the training sequence, or the query's history."""
        train = self._check_fitted()
        check_query(train, query.users, query.history)
        if query.history is None:
            items = self.histories[query.users.to(self.histories.device)]
        else:
            codes = torch.arange(len(train.domains), device=self.item_domain.device)
            items = select_history(query.history.to(self.item_domain.device), self.item_domain,
                                   codes, self.config.max_seq_len)
        return self.encode(items)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` float32 scores of every item of ``domain``."""
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        index = torch.arange(items.start, items.stop, device=self.text.device)
        return self._logits(self.user_vectors(query), index, self._domain_table(domain, index))

    def _domain_table(self, domain: str, index: torch.Tensor) -> torch.Tensor:
        """``[n_items(domain), D]`` normalised adapted vectors of ``domain``'s items (``index``);
        computed once per domain and device while the model is in eval mode (inference), so a
        batch-1 call costs one user encoding and one matmul, not a pass over every item."""
        key = (domain, str(index.device))
        table = self._tables.get(key)
        if table is None:
            table = F.normalize(self.adapt(self.text[index], self.extra[index]), dim=-1)
            if not self.training:
                self._tables[key] = table
        return table

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), D + 1]`` normalised adapted item vectors, then item bias plus
        the weighted popularity prior (the item side of ``_logits``)."""
        items = self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        index = torch.arange(items.start, items.stop, device=self.text.device)
        table = self._domain_table(domain, index)
        return with_column(table, self.item_bias[index] + self.pop_weight * self.pop_prior[index])

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, D + 1]`` normalised user vectors over the temperature, then 1."""
        self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        users = F.normalize(self.user_vectors(query), dim=-1) / self.config.temperature
        return with_column(users, 1.0)

    @torch.no_grad()
    def score_text(self, texts: list[str], domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` scores for free-text queries, each a one-item sequence."""
        train = self._check_fitted()
        items = train.domain_items(domain)
        if not texts:
            return torch.zeros((0, items.stop - items.start))
        vec = torch.from_numpy(self._queries(texts)).to(self.text.device)
        none = vec.new_zeros((len(texts), self.extra.shape[1]))  # a query has no other modality
        states = self.sequence.last(self.adapt(vec, none)[:, None],
                                    torch.zeros(len(texts), 1, dtype=torch.bool,
                                                device=vec.device))
        index = torch.arange(items.start, items.stop, device=self.text.device)
        return self._logits(states, index, self._domain_table(domain, index))


def _width(items: torch.Tensor) -> int:
    """Columns from the first one holding an item of any row (at least 1) of ``[B, L]``."""
    used = (items >= 0).any(0).nonzero()
    return max(1, items.shape[1] - int(used[0])) if len(used) else 1
