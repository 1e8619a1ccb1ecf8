"""Factorisation plumbing shared by the MF-based models (CMF, EMCDR, PTUPCDR, DANN, CoNet,
shared-bottom): interaction batches with sampled negatives, the weighted BPR / MSE loss, history
fold-in, per-domain rating means and the item rows a stage trains.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import Query, Recommender
from crossrec.models.sampling import NegativeSampler


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
    n_negatives: int, sampler: NegativeSampler, rng: np.random.Generator,
    domain_weights: dict[str, float] | None = None,
) -> Iterator[FactorBatch]:
    """One shuffled pass over the interactions of ``domains`` (all when empty).

    With ``objective="mse"`` only interactions with a rating are used (DataError if none);
    with ``"bpr"`` each positive gets ``n_negatives`` negatives from its own domain, avoiding
    the training positives (drawn by ``sampler``).
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
            batch.negatives = torch.from_numpy(sampler.sample(train, u, i, n_negatives, rng))
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
