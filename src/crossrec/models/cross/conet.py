"""CoNet: collaborative cross networks, two MLP towers joined by cross connections.

Hu, Zhang & Yang, "CoNet: Collaborative Cross Networks for Cross-Domain Recommendation"
(CIKM 2018). One feed-forward tower per domain role: the *target* tower (``options.target``)
and the *source* tower (every domain of ``options.sources`` merged into one source catalogue).
Each tower reads ``[e_u ; e_i]``, the user embedding (one table shared by both towers) and an
item embedding of its domain, ``x -> a^0 = ReLU(W^0 x + b^0)``. Between consecutive hidden
layers ``l -> l+1`` the towers exchange their activations through a transfer matrix ``H^l``
(``[h_{l+1}, h_l]``)::

    a_t^{l+1} = ReLU(W_t^l a_t^l + b_t^l + H^l a_s^l)
    a_s^{l+1} = ReLU(W_s^l a_s^l + b_s^l + H'^l a_t^l)

with ``H' = H`` (``cross="shared"``, the paper's one matrix for both directions), ``H' = H^T``
(``"transpose"``; needs equal widths on both sides of every cross), a second learned matrix
(``"separate"``) or no cross at all (``"none"``: two independent towers on shared user
embeddings). Each tower ends in a logit ``w^T a^L + c``. ``cross_l1`` puts the sparsity penalty
of SCoNet on the ``H`` matrices, ``cross_l2`` an L2 penalty.

**Pairing.** The paper pairs each target interaction ``(u, i)`` with one source interaction
``(u, j)`` of the same user and runs both towers jointly on the pair. A full-ranking scorer has
no source item to pair a target item with, so here the partner is the user's *history* in the
other role: a target example ``(u, i)`` runs the target tower on ``[e_u ; e_i]`` jointly with
the source tower on ``[e_u ; s_u]``, ``s_u`` the mean item embedding of the user's (last
``max_history``) source items, and a source example ``(u, j)`` runs the source tower on
``[e_u ; e_j]`` jointly with the target tower on ``[e_u ; t_u]`` (mean of the user's target
items). A user without items in the partner role gets the zero vector there. The same pairing
is used for scoring, so training and inference agree; a batch is a shuffled slice of the
target and source interactions together (``factor_batches``), each row paired with its own
user's other-role history (never another user's rows).

Loss per example: the positive and ``n_negatives`` uniform negatives from its domain (sharing
the example's partner), ``"bce"`` (the paper's pointwise log loss, averaged over the 1 + k
instances), ``"bpr"`` or sampled ``"softmax"``; source examples are weighted
``source_weight``; plus ``weight_decay`` times the squared norms of the batch's embeddings.

**Cold-start target users** (source items only) are scored by the target tower from their user
embedding, learned from their source interactions alone, and from their source history through
the cross connections: both carry the transfer. An anonymous user (``Query.users == -1``)
has a zero user embedding and is read from ``Query.history`` alone (through the partner
contexts); a ``Query.history`` given for a known user replaces their training histories.

Scoring is an MLP over (user, item) pairs, ``[B, C]`` pairs at a time with
``C = score_pairs // B`` items per chunk: no two-tower view (``retrieval_items`` is None).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import FactorConfig, FitOptions, Query, Stage, TorchRecommender
from crossrec.models.factor import FactorBatch, factor_batches
from crossrec.models.history import check_query, masked_mean, select_history, training_histories
from crossrec.models.sampling import NegativeSampler

CrossKind = Literal["shared", "transpose", "separate", "none"]


class CoNetConfig(FactorConfig):
    """Hyper-parameters of CoNet.

    Attributes:
        embedding_size: ``d``, width of the user and item embeddings (tower input ``2d``).
        hidden: hidden widths ``[h_0, ..., h_L]`` of each tower; a cross connection joins every
            pair of consecutive hidden layers (at least two widths: one cross).
        cross: ``"shared"`` (one ``H`` for both directions, the paper), ``"transpose"``
            (``H^T`` back to the source; every width in ``hidden`` equal), ``"separate"`` or
            ``"none"`` (independent towers).
        cross_l1: L1 (sparsity) penalty on the transfer matrices, per batch.
        cross_l2: L2 penalty on the transfer matrices, per batch.
        objective: ``"bce"`` (pointwise log loss), ``"bpr"`` or ``"softmax"`` over the negatives.
        n_negatives: uniform negatives per positive, from the positive's domain.
        source_weight: loss weight of the source examples (target examples weigh 1).
        max_history: most recent items per role that make a user's partner context.
        weight_decay: L2 on the batch's user and item embeddings.
        score_pairs: (user, item) pairs per scoring chunk (bounds scoring memory).
        learning_rate, epochs, batch_size, patience: the training stage (Adam, early stopping
            on validation).
    """

    embedding_size: int = Field(32, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32, 16], min_length=2)
    cross: CrossKind = "shared"
    cross_l1: float = Field(0.0, ge=0.0)
    cross_l2: float = Field(0.0, ge=0.0)
    objective: Literal["bce", "bpr", "softmax"] = "bce"
    n_negatives: int = Field(4, ge=1)
    source_weight: float = Field(1.0, ge=0.0)
    max_history: int = Field(50, ge=1)
    weight_decay: float = Field(1e-4, ge=0.0)
    score_pairs: int = Field(1 << 20, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(1024, ge=1)

    @model_validator(mode="after")
    def _check_widths(self) -> Self:
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        if self.cross == "transpose" and len(set(self.hidden)) > 1:
            raise ValueError(f"cross='transpose' needs equal hidden widths (H^T maps h_(l+1) "
                             f"back to h_l), got hidden={self.hidden}")
        return self


class Tower(nn.Module):
    """One domain's MLP: input layer split into user and item halves, hidden layers, logit.

    ``user_in(e_u) + item_in(e_i)`` equals ``W^0 [e_u ; e_i] + b^0``; split so that scoring
    computes the user half once per user and the item half once per item.
    """

    def __init__(self, d: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.user_in = nn.Linear(d, hidden[0])
        self.item_in = nn.Linear(d, hidden[0], bias=False)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hidden[:-1], hidden[1:],
                                                                   strict=True))
        self.out = nn.Linear(hidden[-1], 1)


def ranking_loss(logits: torch.Tensor, objective: str) -> torch.Tensor:
    """``[b]`` losses from ``[b, 1 + k]`` logits (positive first, then the negatives)."""
    pos, neg = logits[:, 0], logits[:, 1:]
    if objective == "bce":
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)) / logits.shape[1]
    if objective == "bpr":
        return F.softplus(neg - pos[:, None]).mean(-1)
    return torch.logsumexp(logits, dim=1) - pos  # softmax


class CoNet(TorchRecommender):
    """Collaborative cross networks (see the module docstring).

    Parameters: ``user_embedding`` ``[n_users, d]``, ``item_embedding`` ``[n_items, d]`` (each
    tower reads its own domains' rows), ``target_tower`` / ``source_tower`` (``Tower``),
    ``transfer.<l>`` (``H^l``, ``[h_{l+1}, h_l]``) and, with ``cross="separate"``,
    ``transfer_back.<l>``. Scores the target and the source domains of the fit.
    """

    Config = CoNetConfig
    name = "conet"
    config: CoNetConfig

    def __init__(self, config: CoNetConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()
        self.sources: tuple[str, ...] = ()

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        c, d = self.config, self.config.embedding_size
        self.sources = tuple(options.sources) or tuple(x for x in train.domains
                                                       if x != options.target)
        train.domain_items(options.target)  # DataError for an unknown target
        if options.target in self.sources or not self.sources:
            raise DataError(f"CoNet needs source domains other than the target "
                            f"{options.target!r}; got sources {list(self.sources)}")
        self.user_embedding = nn.Embedding(train.n_users, d)
        self.item_embedding = nn.Embedding(train.n_items, d)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=c.init_std)
        self.target_tower = Tower(d, c.hidden)
        self.source_tower = Tower(d, c.hidden)
        gaps = list(zip(c.hidden[:-1], c.hidden[1:], strict=True))
        self.transfer = (None if c.cross == "none" else
                         nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in gaps))
        self.transfer_back = (nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in gaps)
                              if c.cross == "separate" else None)
        codes = [train.info.domain_index(s) for s in self.sources]
        buffers = {  # rebuilt from the data: not saved
            "source_history": training_histories(train, self.sources, c.max_history),
            "target_history": training_histories(train, [options.target], c.max_history),
            "item_domain": torch.from_numpy(train.item_domain.astype(np.int64)),
            "source_codes": torch.tensor(codes, dtype=torch.long),
            "target_code": torch.tensor([train.info.domain_index(options.target)]),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [Stage("train", epochs=c.epochs, learning_rate=c.learning_rate,
                      batch_size=c.batch_size, domains=(target, *self.sources),
                      patience=c.patience)]

    # ------------------------------------------------------------------ model
    def joint(self, target_pre: torch.Tensor,
              source_pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers run together from their first-layer pre-activations.

        Args:
            target_pre: ``[..., h_0]`` ``user_in(e_u) + item_in(x)`` of the target tower.
            source_pre: ``[..., h_0]`` the same for the source tower (broadcastable with
                ``target_pre``, e.g. ``[B, 1, h_0]`` against ``[B, C, h_0]``).

        Returns:
            Target and source logits, ``[...]`` each (the broadcast shape without ``h``).
        """
        a_t, a_s = F.relu(target_pre), F.relu(source_pre)
        for layer, (w_t, w_s) in enumerate(zip(self.target_tower.layers,
                                               self.source_tower.layers, strict=True)):
            z_t, z_s = w_t(a_t), w_s(a_s)
            if self.transfer is not None:
                h = self.transfer[layer].weight  # [h_{l+1}, h_l]
                z_t = z_t + a_s @ h.T
                if self.transfer_back is not None:
                    z_s = z_s + self.transfer_back[layer](a_t)
                elif self.config.cross == "transpose":
                    z_s = z_s + a_t @ h  # H^T a_t (square H)
                else:
                    z_s = z_s + a_t @ h.T
            a_t, a_s = F.relu(z_t), F.relu(z_s)
        return (self.target_tower.out(a_t).squeeze(-1),
                self.source_tower.out(a_s).squeeze(-1))

    def logits(self, users: torch.Tensor, items: torch.Tensor, context: torch.Tensor,
               on_target: bool) -> torch.Tensor:
        """``[B, C]`` logits of ``items`` in one role, paired with the other role's context.

        Args:
            users: ``[B, d]`` user embeddings.
            items: ``[B, C, d]`` or ``[C, d]`` (the same items for every user) embeddings of
                items of the role's domain.
            context: ``[B, d]`` the other role's partner input (a mean item embedding).
            on_target: score with the target tower (True) or the source tower.
        """
        main, other = ((self.target_tower, self.source_tower) if on_target
                       else (self.source_tower, self.target_tower))
        main_pre = main.user_in(users)[:, None] + main.item_in(items)  # [B, C, h_0]
        other_pre = (other.user_in(users) + other.item_in(context))[:, None]  # [B, 1, h_0]
        if on_target:
            return self.joint(main_pre, other_pre)[0]
        return self.joint(other_pre, main_pre)[1]

    def cross_penalty(self) -> torch.Tensor:
        """``cross_l1 * Σ|H| + cross_l2 * ΣH²`` over the transfer matrices (scalar)."""
        c, total = self.config, self.user_embedding.weight.new_zeros(())
        for mats in (self.transfer, self.transfer_back):
            for m in mats or ():
                if c.cross_l1:
                    total = total + c.cross_l1 * m.weight.abs().sum()
                if c.cross_l2:
                    total = total + c.cross_l2 * m.weight.pow(2).sum()
        return total

    # ------------------------------------------------------------------ training
    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[FactorBatch]:
        """Shuffled target and source interactions with negatives from the positive's domain;
        source rows weigh ``source_weight``."""
        c = self.config
        weights = {s: c.source_weight for s in self.sources}
        yield from factor_batches(train, stage.domains, "bpr", stage.batch_size,
                                  c.n_negatives, self.sampler, rng, weights)

    def loss(self, batch: FactorBatch, stage: str) -> torch.Tensor:
        """Weighted ranking loss of both roles + L2 on the batch's embeddings + cross penalty."""
        c = self.config
        items = torch.cat([batch.items[:, None], batch.negatives], dim=1)  # [b, 1 + k]
        u, v = self.user_embedding(batch.users), self.item_embedding(items)  # [b, d], [b, 1+k, d]
        on_target = self.item_domain[batch.items] == self.target_code  # [b]
        rank = u.new_zeros(len(u))
        for role in (True, False):
            rows = (on_target == role).nonzero(as_tuple=True)[0]
            if len(rows) == 0:
                continue
            history = (self.source_history if role else self.target_history)[batch.users[rows]]
            context, _ = masked_mean(self.item_embedding, history)  # [r, d]
            logits = self.logits(u[rows], v[rows], context, on_target=role)  # [r, 1 + k]
            rank = rank.index_put((rows,), ranking_loss(logits, c.objective))
        l2 = u.pow(2).sum(-1) + v[:, 0].pow(2).sum(-1) + v[:, 1:].pow(2).sum(-1).mean(-1)
        w = batch.weights / batch.weights.sum().clamp_min(1e-12)
        return (w * (rank + c.weight_decay * l2)).sum() + self.cross_penalty()

    # ------------------------------------------------------------------ inference
    def _role(self, domain: str) -> tuple[slice, bool]:
        """The global items of ``domain`` and whether it is the target; DataError for a domain
        the model did not learn."""
        train = self._check_fitted()
        items = train.domain_items(domain)  # DataError for an unknown domain
        if domain != self.options.target and domain not in self.sources:
            raise DataError(f"CoNet was fitted on target {self.options.target!r} and sources "
                            f"{list(self.sources)}; it cannot score {domain!r}")
        return items, domain == self.options.target

    @torch.no_grad()
    def inputs(self, query: Query, on_target: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, d]`` user embeddings (zero for -1) and partner contexts for one role.

        The context is the mean embedding of the user's items of the *other* role: from
        ``query.history`` when given, else from the training history.
        """
        train = self._check_fitted()
        check_query(train, query.users, query.history)
        device = self.user_embedding.weight.device
        users = query.users.to(device=device, dtype=torch.long)
        if query.history is not None and len(query.history) != len(users):
            raise DataError(f"Query has {len(users)} users but {len(query.history)} histories")
        if query.history is None:
            history = (self.source_history if on_target else self.target_history)[users]
        else:
            codes = self.source_codes if on_target else self.target_code
            history = select_history(query.history.to(device), self.item_domain, codes,
                                     self.config.max_history)
        known = (users >= 0).float()[:, None]
        u = self.user_embedding(users.clamp(min=0)) * known
        return u, masked_mean(self.item_embedding, history)[0]

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Logits of every item of ``domain`` (the target or a source of the fit).

        Returns:
            ``[B, n_items(domain)]`` float32 on the model's device, computed ``score_pairs``
            (user, item) pairs at a time.
        """
        items, on_target = self._role(domain)
        u, context = self.inputs(query, on_target)
        table = self.item_embedding.weight[items]  # [n, d]
        chunk = max(1, self.config.score_pairs // max(1, len(u)))
        out = table.new_empty(len(u), len(table))
        for start in range(0, len(table), chunk):
            part = table[start : start + chunk]
            out[:, start : start + len(part)] = self.logits(u, part, context, on_target)
        return out
