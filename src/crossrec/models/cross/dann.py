"""Domain alignment on a shared user encoder (DANN-style transfer to cold-start target users).

A user is represented by what they interacted with: the mean input embedding of their history
items goes through an MLP encoder ``f`` shared by every domain, and ``f(·)`` scores target items
by a dot product with output item embeddings (plus an item bias). Each target training
interaction ``(u, i)`` is predicted twice: from ``f`` of the user's *source* history, and (warm
users) from ``f`` of the user's *target* history without ``i``; the loss is BPR or sampled
softmax over ``n_negatives`` uniform target negatives.

A cold-start target user has only a source history, so they are scored from ``f(source)``. The
transfer rests on source-derived representations living where the scorer expects
target-derived ones; an alignment term pulls the two distributions together (``alignment``):

* ``"adversarial"``: a domain classifier behind a gradient reversal layer (Ganin & Lempitsky,
  ICML 2015; Ganin et al., JMLR 2016);
* ``"mmd"``: multi-bandwidth Gaussian-kernel MMD (Long et al., ICML 2015);
* ``"coral"``: covariance distance (Sun & Saenko, 2016);
* ``"none"``: the shared encoder alone.

Each batch draws ``align_batch_size`` users with a source history (the cold users included: their
source history is training data) and as many with a target history; the alignment loss compares
their ``f(source)`` and ``f(target)``, weighted by ``alignment_weight`` (λ). One training stage,
on the target's interactions; epochs are selected on the validation users (early stopping).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.alignment import Aligner, AlignmentKind, ramp
from crossrec.models.base import (
    FactorConfig,
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    with_column,
)
from crossrec.models.factor import FactorBatch, factor_batches
from crossrec.models.history import check_query, masked_mean, select_history, training_histories
from crossrec.models.layers import MLP
from crossrec.models.objective import RankingObjective, sampled_ranking_loss
from crossrec.models.sampling import NegativeSampler


class DANNConfig(FactorConfig):
    """Hyper-parameters of the domain-aligned shared user encoder.

    Attributes:
        embedding_size: ``d``, width of item embeddings and user representations.
        hidden: hidden widths of the encoder MLP (``d -> *hidden -> d``).
        dropout: dropout after each hidden layer of the encoder.
        max_history: most recent items per domain role (source / target) a user is read from.
        objective: ``"bpr"`` or ``"softmax"`` (sampled softmax) over the negatives.
        n_negatives: uniform target negatives per positive.
        item_bias: learn a bias per target item.
        weight_decay: L2 on the batch's representations and output item vectors.
        alignment: ``"adversarial"``, ``"mmd"``, ``"coral"`` or ``"none"``.
        alignment_weight: λ, the weight of the alignment term (the GRL scale when adversarial).
        mmd_bandwidths: Gaussian kernel widths σ of ``"mmd"``; None = data-dependent (the
            mean pairwise distance times 0.5..2). Fixed widths are the default: with
            data-dependent ones the MMD gradient grows as the representations shrink, and on
            the synthetic two-domain data training collapsed every user onto one vector.
        alignment_ramp: raise the alignment weight from 0 to λ with DANN's schedule
            ``2 / (1 + exp(-10 p)) - 1`` over the training progress ``p`` (planned epochs).
        align_batch_size: users per side drawn for the alignment term of each batch.
        classifier_hidden: hidden width of the adversarial domain classifier.
        learning_rate, epochs, batch_size, patience: the training stage (Adam, early stopping
            on validation).
    """

    hidden: list[int] = [128]
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_history: int = Field(50, ge=1)
    objective: RankingObjective = "bpr"
    n_negatives: int = Field(4, ge=1)
    item_bias: bool = True
    weight_decay: float = Field(1e-3, ge=0.0)
    alignment: AlignmentKind = "mmd"
    alignment_weight: float = Field(0.1, ge=0.0)
    mmd_bandwidths: list[float] | None = [0.5, 1.0, 2.0, 4.0, 8.0]
    alignment_ramp: bool = True
    align_batch_size: int = Field(256, ge=2)
    classifier_hidden: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(1024, ge=1)


@dataclass
class DANNBatch:
    """Target interactions plus the users drawn for the alignment term.

    Attributes:
        inter: ``FactorBatch`` of target positives ``[b]`` with negatives ``[b, k]``.
        align_source: ``[a]`` users with a source history (empty: no alignment this batch).
        align_target: ``[a]`` users with a target history.
        align_scale: factor on the alignment weight (the warm-up ramp).
    """

    inter: FactorBatch
    align_source: torch.Tensor
    align_target: torch.Tensor
    align_scale: float = 1.0

    def to(self, device: str | torch.device) -> DANNBatch:
        return DANNBatch(self.inter.to(device), self.align_source.to(device),
                         self.align_target.to(device), self.align_scale)


class DANN(TorchRecommender):
    """Shared history encoder with source/target distribution alignment (module docstring).

    Parameters: ``item_input`` (history embeddings, every item), ``encoder`` (MLP),
    ``item_output`` / ``item_bias`` (scoring; target rows used) and ``aligner`` (the domain
    classifier when adversarial). Only the target domain is scored; a warm user (with target
    items in training or in ``Query.history``) is represented from them, anyone else from
    their source items.
    """

    Config = DANNConfig
    name = "dann"
    config: DANNConfig

    def __init__(self, config: DANNConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()
        self._epochs_done = 0  # epochs of the training stage so far (for the ramp)

    def source_domains(self) -> tuple[str, ...]:
        """The fit's sources (every other domain when none were named)."""
        train, target = self._check_fitted(), self.options.target
        return tuple(self.options.sources) or tuple(d for d in train.domains if d != target)

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c, d = self.config, self.config.embedding_size
        self._epochs_done = 0
        sources = self.source_domains()
        if options.target in sources or not sources:
            raise DataError(f"DANN needs source domains other than the target "
                            f"{options.target!r}; got sources {list(sources)}")
        self.item_input = nn.Embedding(train.n_items, d)
        self.item_output = nn.Embedding(train.n_items, d)
        nn.init.normal_(self.item_input.weight, std=c.init_std)
        nn.init.normal_(self.item_output.weight, std=c.init_std)
        self.item_bias = nn.Embedding(train.n_items, 1) if c.item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.encoder = MLP([d, *c.hidden, d], dropout=c.dropout)
        self.aligner = Aligner(c.alignment, d, c.alignment_weight, c.classifier_hidden,
                               c.mmd_bandwidths)
        codes = [train.info.domain_index(s) for s in sources]
        histories = {"source_history": training_histories(train, sources, c.max_history),
                     "target_history": training_histories(train, [options.target],
                                                          c.max_history)}
        for name, value in histories.items():  # [n_users, L], rebuilt from data: not saved
            self.register_buffer(name, value, persistent=False)
        self.register_buffer("item_domain", torch.from_numpy(train.item_domain.astype(np.int64)),
                             persistent=False)
        self.register_buffer("source_codes", torch.tensor(codes, dtype=torch.long),
                             persistent=False)
        self.register_buffer("target_code", torch.tensor([train.info.domain_index(
            options.target)]), persistent=False)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("train", epochs=c.epochs, learning_rate=c.learning_rate,
                      batch_size=c.batch_size, domains=(target,), patience=c.patience)]

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[DANNBatch]:
        """Shuffled target interactions with negatives, plus users for the alignment term."""
        c = self.config
        with_source = np.flatnonzero((self.source_history[:, -1] >= 0).cpu().numpy())
        with_target = np.flatnonzero((self.target_history[:, -1] >= 0).cpu().numpy())
        align = c.alignment != "none" and min(len(with_source), len(with_target)) >= 2
        empty = torch.zeros(0, dtype=torch.long)
        n_batches = -(-int(np.isin(train.interactions["domain"].to_numpy(), [
            train.info.domain_index(d) for d in stage.domains]).sum()) // stage.batch_size)
        batches = factor_batches(train, stage.domains, "bpr", stage.batch_size, c.n_negatives,
                                 self.sampler, rng)
        for step, inter in enumerate(batches):
            if not align:
                yield DANNBatch(inter, empty, empty)
                continue
            progress = (self._epochs_done + step / max(n_batches, 1)) / stage.epochs
            a = c.align_batch_size
            yield DANNBatch(inter,
                            torch.from_numpy(with_source[rng.integers(len(with_source), size=a)]),
                            torch.from_numpy(with_target[rng.integers(len(with_target), size=a)]),
                            ramp(progress) if c.alignment_ramp else 1.0)
        self._epochs_done += 1

    def represent(self, history: torch.Tensor,
                  drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(mean item_input(history))``: ``[B, d]`` representations and ``[B]`` item counts.

        Args:
            history: ``[B, L]`` global item indices, -1 padding.
            drop: optional ``[B]`` item left out of each row (the positive being predicted).
        """
        pooled, counts = masked_mean(self.item_input, history, drop)
        return self.encoder(pooled), counts

    def loss(self, batch: DANNBatch, stage: str) -> torch.Tensor:
        """Ranking loss from both views (where the view has items) + L2 + alignment."""
        c, inter = self.config, batch.inter
        users, pos, neg = inter.users, inter.items, inter.negatives
        v_pos, v_neg = self.item_output(pos), self.item_output(neg)  # [b, d], [b, k, d]
        b_pos = self.item_bias(pos).squeeze(-1) if self.item_bias is not None else None
        b_neg = self.item_bias(neg).squeeze(-1) if self.item_bias is not None else None
        total, count = v_pos.new_zeros(()), v_pos.new_zeros(())
        for history, drop in ((self.source_history[users], None),
                              (self.target_history[users], pos)):
            z, n = self.represent(history, drop)
            has = (n > 0).float()  # [b]
            rank = sampled_ranking_loss(z, v_pos, v_neg, c.objective, b_pos, b_neg)
            l2 = z.pow(2).sum(-1) + v_pos.pow(2).sum(-1) + v_neg.pow(2).sum(-1).mean(-1)
            total = total + (has * (rank + c.weight_decay * l2)).sum()
            count = count + has.sum()
        loss = total / count.clamp(min=1.0)
        if len(batch.align_source) >= 2:
            z_src, _ = self.represent(self.source_history[batch.align_source])
            z_tgt, _ = self.represent(self.target_history[batch.align_target])
            loss = loss + self.aligner(z_src, z_tgt, batch.align_scale)
        return loss

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]``: ``f(target history)`` for warm users, ``f(source history)`` otherwise."""
        train = self._check_fitted()
        check_query(train, query.users, query.history)
        device = self.item_input.weight.device
        if query.history is None:
            users = query.users.to(device=device, dtype=torch.long)
            source, target = self.source_history[users], self.target_history[users]
        else:
            h, length = query.history.to(device), self.config.max_history
            source = select_history(h, self.item_domain, self.source_codes, length)
            target = select_history(h, self.item_domain, self.target_code, length)
        z_src, _ = self.represent(source)
        z_tgt, n_tgt = self.represent(target)
        return torch.where((n_tgt > 0)[:, None], z_tgt, z_src)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products with the target's output item embeddings plus item bias.

        Returns:
            ``[B, n_items(target)]`` float32, on the model's device.

        Raises:
            DataError: ``domain`` is not the target (only the target is scored).
        """
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        if domain != self.options.target:
            raise DataError(f"DANN was fitted to score the target {self.options.target!r}; "
                            f"it cannot score {domain!r}")
        out = self.user_vectors(query) @ self.item_output.weight[items].T  # [B, n]
        if self.item_bias is not None:
            out = out + self.item_bias.weight[items, 0]
        return out

    def _target_items(self, domain: str) -> slice:
        """The target's global items; DataError for any other domain (only it is scored)."""
        items = self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        if domain != self.options.target:
            raise DataError(f"DANN was fitted to score the target {self.options.target!r}; "
                            f"it cannot score {domain!r}")
        return items

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(target), d + 1]`` output item embeddings, then the item bias."""
        items = self._target_items(domain)
        bias = (self.item_bias.weight[items, 0] if self.item_bias is not None
                else torch.zeros(items.stop - items.start, device=self.item_output.weight.device))
        return with_column(self.item_output.weight[items], bias)

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d + 1]`` encoded users (``user_vectors``), then 1."""
        self._target_items(domain)
        return with_column(self.user_vectors(query), 1.0)
