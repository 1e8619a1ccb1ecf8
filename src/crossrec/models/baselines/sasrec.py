"""SASRec: self-attentive sequential recommendation over mixed-domain ID sequences.

Kang & McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018): a causal Transformer
over the user's time-ordered item sequence (here the items of every domain, one sequence per
user), item embeddings shared between input and output. Trained to predict the next item at
every position with a softmax cross-entropy over *all* items, which trains SASRec far better
than the original one-negative binary loss (Petrov & Macdonald, "gSASRec", RecSys 2023;
Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?",
RecSys 2023). ``n_negatives > 0`` switches to a sampled softmax (uniform negatives shared by
the batch, log-Q corrected) for catalogues too large for the full one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.sequence import query_history, user_sequences
from crossrec.models.base import FitOptions, ModelConfig, Query, Stage, TorchRecommender
from crossrec.models.layers import SequenceEncoder

BUCKET = 16  # batches per block of users sorted by length (less padding per batch)


class SASRecConfig(ModelConfig):
    """SASRec hyper-parameters.

    Attributes:
        embedding_size: item embedding and Transformer width D.
        max_seq_len: the most recent items a user is represented by (L).
        n_layers, n_heads: Transformer size.
        dropout: on the input and inside the Transformer.
        n_negatives: 0 = full softmax over all items; N = sampled softmax with N negatives.
        domains: domains whose items form the sequences (empty = every domain).
        learning_rate, weight_decay, epochs, batch_size, patience: training (Adam, L2 as
            Adam weight decay, early stopping on validation).
    """

    embedding_size: int = Field(64, ge=1)
    max_seq_len: int = Field(50, ge=1)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    n_negatives: int = Field(0, ge=0)
    domains: list[str] = Field(default_factory=list)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(128, ge=1)
    patience: int = Field(5, ge=1)


@dataclass
class SequenceBatch:
    """``inputs [b, L]`` and next-item ``targets [b, L]`` (global item indices, -1 = none)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def to(self, device: str | torch.device) -> SequenceBatch:
        return SequenceBatch(self.inputs.to(device), self.targets.to(device))


class SASRec(TorchRecommender):
    """ID-only causal Transformer over each user's mixed-domain sequence.

    A user is the encoder state at their most recent item; an item's score is its dot product
    with the (shared) item embedding. ``Query.history`` (oldest first) replaces the training
    sequence. A user with no history at all gets all-zero scores.
    """

    Config = SASRecConfig
    name = "sasrec"
    config: SASRecConfig

    def _domains(self, train: MultiDomainDataset) -> tuple[str, ...] | None:
        return tuple(self.config.domains) if self.config.domains else None

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c = self.config
        if c.embedding_size % c.n_heads:
            raise ValueError(f"embedding_size {c.embedding_size} is not divisible by "
                             f"n_heads {c.n_heads}")
        for d in c.domains:
            train.info.domain_index(d)
        self.n_items = train.n_items
        # the last row is the padding item: zero, never trained, never scored
        self.item_embedding = nn.Embedding(train.n_items + 1, c.embedding_size,
                                           padding_idx=train.n_items)
        nn.init.normal_(self.item_embedding.weight[:-1], std=1.0 / math.sqrt(c.embedding_size))
        self.encoder = SequenceEncoder(c.embedding_size, c.max_seq_len, n_layers=c.n_layers,
                                       n_heads=c.n_heads, dropout=c.dropout)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("train", epochs=c.epochs, learning_rate=c.learning_rate,
                      weight_decay=c.weight_decay, batch_size=c.batch_size, patience=c.patience)]

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[SequenceBatch]:
        """Every user with 2+ items: the last ``max_seq_len + 1`` items give the inputs (all
        but the last) and the targets (all but the first), left-padded.

        Users are shuffled, then sorted by length within blocks of ``BUCKET`` batches, and
        each batch is cut to its longest sequence, so little time goes to padding; the order
        of the batches is shuffled again.
        """
        seq = user_sequences(train, self._domains(train))
        lengths = seq.lengths()
        users = rng.permutation(np.flatnonzero(lengths >= 2))
        size, length = stage.batch_size, self.config.max_seq_len
        block = size * BUCKET
        chunks = []
        for start in range(0, len(users), block):
            part = users[start:start + block]
            part = part[np.argsort(lengths[part], kind="stable")]
            chunks += [part[i:i + size] for i in range(0, len(part), size)]
        for i in rng.permutation(len(chunks)):
            batch = chunks[i]
            width = int(min(lengths[batch].max(), length + 1))
            window = seq.padded(batch, width)
            yield SequenceBatch(torch.from_numpy(window[:, :-1].copy()),
                                torch.from_numpy(window[:, 1:].copy()))

    def _embed(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, L]`` item indices (-1 = padding) -> item vectors ``[B, L, D]``, padding mask."""
        padding = sequences < 0
        return self.item_embedding(torch.where(padding, self.n_items, sequences)), padding

    def loss(self, batch: SequenceBatch, stage: str) -> torch.Tensor:
        """Mean next-item cross-entropy over the non-padded positions."""
        states = self.encoder(*self._embed(batch.inputs))  # [b, L, D]
        valid = batch.targets >= 0
        h, target = states[valid], batch.targets[valid]  # [P, D], [P]
        items = self.item_embedding.weight[:-1]  # [N, D]
        k = self.config.n_negatives
        if k == 0 or k >= self.n_items:
            return F.cross_entropy(h @ items.T, target)
        neg = torch.randint(0, self.n_items, (k,), device=h.device)
        pos_logit = (h * items[target]).sum(-1, keepdim=True)  # [P, 1]
        neg_logit = h @ items[neg].T  # [P, k]
        neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], -torch.inf)
        # uniform sampling: log-Q correction adds the same log(N / k) to every negative
        logits = torch.cat([pos_logit, neg_logit + math.log(self.n_items / k)], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(h), dtype=torch.long, device=h.device))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, D]`` the encoder state at each user's most recent item."""
        train = self._check_fitted()
        device = self.item_embedding.weight.device
        history = None if query.history is None else query.history.detach().cpu().numpy()
        seqs = query_history(train, query.users.detach().cpu().numpy(), history,
                             self.config.max_seq_len, self._domains(train))
        return self.encoder.last(*self._embed(torch.from_numpy(seqs).to(device)))

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products of the user state with the items of ``domain``.

        Returns:
            ``[B, n_items(domain)]`` float32 on the model's device.
        """
        train = self._check_fitted()
        items = train.domain_items(domain)
        return self.user_vectors(query) @ self.item_embedding.weight[items].T

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), D]`` the (shared) item embeddings of ``domain``."""
        return self.item_embedding.weight[self._check_fitted().domain_items(domain)].detach()

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, D]`` encoder states (``user_vectors``)."""
        self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        return self.user_vectors(query)
