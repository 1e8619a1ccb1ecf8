"""The one masked top-k: evaluation, serving (``Bundle.recommend``) and the contract suite all
rank through it, so they order tied items the same way.

Tie rule: among equal scores the lower item index comes first. ``torch.topk`` alone picks an
arbitrary subset of the items tied at the cut-off (and orders ties arbitrarily), so the top
``k + 1`` tells which rows have a tie at the cut-off and only those rows are re-selected exactly.
``top_n`` is the same rule on a numpy block (the ranker's candidate sources).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.models.base import Query, Recommender


class Retrieval(Protocol):
    """Finds the top k instead of ``exact_top_k``, with its contract (e.g. a faiss index:
    ``crossrec.serving.retrieval.Retriever``); what ``Bundle.recommend`` can use."""

    def top_k(self, queries: Sequence[Query], domain: str, k: int,
              seen: Sequence[np.ndarray] | None) -> tuple[Tensor, Tensor, np.ndarray]: ...


class RetrievalSpec(Protocol):
    """A retrieval config (``crossrec.serving.retrieval.RetrievalConfig``): builds a
    ``Retrieval`` for a fitted model unless ``is_default`` (exact scoring)."""

    @property
    def is_default(self) -> bool: ...

    def build(self, model: Recommender, train: MultiDomainDataset, target: str
              ) -> Retrieval: ...


def top_indices(scores: Tensor, k: int) -> Tensor:
    """Top ``k`` column indices per row, ``[B, min(k, N)]`` for ``scores [B, N]``; equal
    scores: lower index first. ValueError when a row holds NaN."""
    n = scores.shape[1]
    length = min(k, n)
    if length <= 0:
        return torch.zeros((scores.shape[0], 0), dtype=torch.long, device=scores.device)
    values, index = torch.topk(scores, min(length + 1, n), dim=1, sorted=True)
    if torch.isnan(values[:, 0]).any():  # topk puts NaN first, so this sees every NaN row
        raise ValueError("the model's scores contain NaN")
    if length < n:
        tied = (values[:, length] == values[:, length - 1]).nonzero().squeeze(1)
        values, index = values[:, :length], index[:, :length].clone()
        for chunk in tied.split(256):
            _fill_ties(scores, values, index, chunk)
    index, perm = torch.sort(index, dim=1)
    values = torch.gather(values, 1, perm)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return torch.gather(index, 1, order)


def _fill_ties(scores: Tensor, values: Tensor, index: Tensor, rows: Tensor) -> None:
    """In ``rows``, give the slots holding the cut-off score to the lowest-index tied items."""
    cut = values[rows, -1:]  # [R, 1]
    above = (values[rows] > cut).sum(1)  # the first `above` slots are strictly higher
    tie = scores[rows] == cut  # [R, N]
    ordinal = torch.cumsum(tie, 1, dtype=torch.int32)
    need = (values.shape[1] - above)[:, None]
    r, col = (tie & (ordinal <= need)).nonzero(as_tuple=True)
    index[rows[r], above[r] + ordinal[r, col].long() - 1] = col


def masked_top_k(scores: Tensor, k: int,
                 seen: Sequence[np.ndarray] | None = None) -> tuple[Tensor, Tensor]:
    """Top ``k`` of ``scores [B, N]`` after setting ``seen[r]`` (column indices) of each row
    to ``-inf`` (in place).

    Returns:
        ``[B, min(k, N)]`` scores (``-inf`` where only masked items were left) and column
        indices, best first; equal scores: lower index first.
    """
    for r, items in enumerate(seen or ()):
        scores[r, torch.as_tensor(items, dtype=torch.long)] = float("-inf")
    index = top_indices(scores, k)
    return torch.gather(scores, 1, index), index


def exact_top_k(model: Recommender, queries: Sequence[Query], domain: str, k: int,
                seen: Sequence[np.ndarray] | None) -> tuple[Tensor, Tensor, np.ndarray]:
    """Top ``k`` by ``model.score`` over every item of ``domain`` (serving's exact path).

    Args:
        model: the fitted model.
        queries: the query batches; their rows are stacked in order.
        domain: the domain scored.
        k: items per row.
        seen: per row, local indices of items to leave out (``-inf`` scores), or None.

    Returns:
        ``[B, k]`` scores (``-inf`` where an item was left out), ``[B, k]`` local item
        indices, and ``bool [B]``: the row's scores are not all equal. A NaN score counts
        as left out.
    """
    with torch.no_grad():
        parts = [model.score(q, domain).float().cpu() for q in queries]
    scores = torch.cat(parts) if len(parts) > 1 else parts[0]
    lo, hi = torch.aminmax(scores, dim=1)  # one pass over the scores
    informative = (hi > lo).numpy()
    scores = scores.masked_fill(torch.isnan(scores), float("-inf"))
    values, index = masked_top_k(scores, k, seen)
    return values, index, informative


def top_n(z: np.ndarray, k: int) -> np.ndarray:
    """``int64 [B, k]`` column indices of each row's ``k`` largest values, largest first, equal
    values in ascending column order: exactly ``argsort(-z, stable)[:, :k]`` (and torch's
    stable descending sort), without sorting all ``n`` columns.

    A row's k-th largest value ``t`` is found by selection (``torch.topk`` unsorted: whatever
    order it gives tied values, the k-th largest *value* is the same; ``np.partition`` is 10-20x
    slower on the many ties of count-like scores); every column with a value ``>= t`` (at least
    ``k``, more when ``t`` is tied) is then sorted stably by value, and the first ``k`` kept.
    ``z`` must hold no NaN.
    """
    b, n = z.shape
    k = min(k, n)
    if k == 0 or b == 0:
        return np.zeros((b, k), dtype=np.int64)
    if 4 * k >= n:  # selection saves little: the plain stable sort
        return np.argsort(-z, axis=1, kind="stable")[:, :k].astype(np.int64)
    kth = torch.topk(torch.from_numpy(z), k, dim=1, sorted=False).values.amin(dim=1).numpy()
    rows, cols = np.nonzero(z >= kth[:, None])  # row-major: ascending column within a row
    # by row, then by value descending; lexsort is stable, so ties keep the column order
    order = np.lexsort((-z[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    start = np.searchsorted(rows, np.arange(b))  # every row has at least k entries
    take = (start[:, None] + np.arange(k)[None, :]).ravel()
    return cols[take].reshape(b, k).astype(np.int64)
