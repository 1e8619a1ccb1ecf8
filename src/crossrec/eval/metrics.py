"""Evaluation metrics as pure functions on tensors (numpy arrays are accepted too).

Ranking metrics take ``hits: bool[B, L]`` — whether the item at rank ``r`` (0-based column) of
each user's ranked list is relevant — and ``n_truth: int[B]``, the number of relevant items of
each user. They return one value per user, ``float64[B]``.

Conventions:
    * Users with ``n_truth == 0`` have no defined value: they get NaN and must be left out of
      averages (``evaluate`` never ranks them; ``nanmean`` over users is the summary).
    * ``k`` may exceed the list length ``L`` (a domain with fewer than ``k`` items): the metric
      uses the ``L`` positions there are. Precision still divides by ``k`` (the list asked for
      had ``k`` slots), so its maximum is then ``L / k``.
    * Binary relevance. NDCG's ideal DCG puts ``min(n_truth, k)`` hits at the top.

Example:
    >>> import torch
    >>> hits = torch.tensor([[False, True, False]])
    >>> float(ndcg_at_k(hits, torch.tensor([1]), 3)[0])  # 1 / log2(3)
    0.6309297535714575
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

RANK_METRICS = ("recall", "precision", "hr", "ndcg", "mrr")
"""Metrics at a cut-off ``k`` computed from a ranked list of hits."""

FULL_METRICS = (*RANK_METRICS, "auc")
"""Everything ``evaluate`` can report with full ranking (``auc`` has no ``k``)."""

ArrayLike = Tensor | np.ndarray | Sequence


def _hits(hits: ArrayLike, k: int) -> Tensor:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    h = torch.as_tensor(hits)
    if h.dim() != 2:
        raise ValueError(f"hits must be 2-D [B, L], got shape {tuple(h.shape)}")
    return h[:, :k].to(torch.float64)


def _truth(n_truth: ArrayLike, device: torch.device) -> Tensor:
    return torch.as_tensor(n_truth, device=device).to(torch.float64)


def _undefined_where_empty(values: Tensor, n_truth: Tensor) -> Tensor:
    return torch.where(n_truth > 0, values, torch.full_like(values, float("nan")))


def _discount(n: int, device: torch.device) -> Tensor:
    """``1 / log2(rank + 1)`` for ranks ``1..n``, ``float64[n]``."""
    return 1.0 / torch.log2(torch.arange(2, n + 2, dtype=torch.float64, device=device))


def recall_at_k(hits: ArrayLike, n_truth: ArrayLike, k: int) -> Tensor:
    """Hits in the top ``k`` divided by the number of relevant items.

    Args:
        hits: ``bool[B, L]`` relevance of each rank.
        n_truth: ``int[B]`` relevant items per user.
        k: cut-off.

    Returns:
        ``float64[B]`` (NaN where ``n_truth == 0``).
    """
    h = _hits(hits, k)
    n = _truth(n_truth, h.device)
    return _undefined_where_empty(h.sum(1) / n.clamp(min=1), n)


def precision_at_k(hits: ArrayLike, n_truth: ArrayLike, k: int) -> Tensor:
    """Hits in the top ``k`` divided by ``k`` (also when the list is shorter than ``k``).

    Returns:
        ``float64[B]`` (NaN where ``n_truth == 0``).
    """
    h = _hits(hits, k)
    return _undefined_where_empty(h.sum(1) / k, _truth(n_truth, h.device))


def hit_rate_at_k(hits: ArrayLike, n_truth: ArrayLike, k: int) -> Tensor:
    """1 if any of the top ``k`` is relevant, else 0.

    Returns:
        ``float64[B]`` (NaN where ``n_truth == 0``).
    """
    h = _hits(hits, k)
    return _undefined_where_empty((h.sum(1) > 0).to(torch.float64), _truth(n_truth, h.device))


def ndcg_at_k(hits: ArrayLike, n_truth: ArrayLike, k: int) -> Tensor:
    """Binary-relevance NDCG: ``sum_r hit_r / log2(r + 1)`` over the ideal ``min(n_truth, k)``.

    Returns:
        ``float64[B]`` (NaN where ``n_truth == 0``).
    """
    h = _hits(hits, k)
    n = _truth(n_truth, h.device)
    dcg = (h * _discount(h.shape[1], h.device)).sum(1)
    ideal = torch.cat([torch.zeros(1, dtype=torch.float64, device=h.device),
                       torch.cumsum(_discount(k, h.device), 0)])
    idcg = ideal[n.clamp(min=0, max=k).long()]
    return _undefined_where_empty(dcg / idcg.clamp(min=1e-12), n)


def mrr_at_k(hits: ArrayLike, n_truth: ArrayLike, k: int) -> Tensor:
    """Reciprocal rank of the first relevant item within the top ``k``, else 0.

    Returns:
        ``float64[B]`` (NaN where ``n_truth == 0``).
    """
    h = _hits(hits, k)
    n = _truth(n_truth, h.device)
    if h.shape[1] == 0:
        return _undefined_where_empty(torch.zeros(h.shape[0], dtype=torch.float64), n)
    first = torch.argmax(h, dim=1)  # first maximum = first hit (0 if there is none)
    rr = torch.where(h.sum(1) > 0, 1.0 / (first + 1).to(torch.float64), 0.0)
    return _undefined_where_empty(rr, n)


_AT_K = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hr": hit_rate_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
}


def rank_metrics(
    hits: ArrayLike, n_truth: ArrayLike, ks: Sequence[int], metrics: Sequence[str]
) -> dict[str, np.ndarray]:
    """Every ``metric@k`` at once, as numpy columns ready for a DataFrame.

    Args:
        hits: ``bool[B, L]`` relevance of each rank.
        n_truth: ``int[B]`` relevant items per user.
        ks: cut-offs.
        metrics: names among ``RANK_METRICS`` (others are ignored).

    Returns:
        ``{"ndcg@10": float64[B], ...}`` in the order metrics x ks.
    """
    out: dict[str, np.ndarray] = {}
    for m in metrics:
        if m in _AT_K:
            for k in ks:
                out[f"{m}@{k}"] = _AT_K[m](hits, n_truth, int(k)).cpu().numpy()
    return out


def auc(scores: ArrayLike, truth: ArrayLike, exclude: ArrayLike | None = None) -> Tensor:
    """Per-user ROC AUC (Mann–Whitney): P(positive scored above a negative), ties count 0.5.

    Negatives are the items that are neither relevant nor excluded (e.g. the training items
    that evaluation masks). No sort of the ``N`` items: each negative is located among the
    user's (few) sorted positives with ``searchsorted``, ``O(B N log P)``.

    Args:
        scores: ``float[B, N]`` scores of all items (compared in their own precision).
        truth: ``bool[B, N]`` relevant items.
        exclude: optional ``bool[B, N]`` items that are neither positives nor negatives.

    Returns:
        ``float64[B]``; NaN for a user with no positive or no negative.
    """
    s = torch.as_tensor(scores)
    if not s.is_floating_point():
        s = s.to(torch.float64)
    pos = torch.as_tensor(truth, device=s.device).bool()
    neg = ~pos
    if exclude is not None:
        neg &= ~torch.as_tensor(exclude, device=s.device).bool()
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    out = torch.full((s.shape[0],), float("nan"), dtype=torch.float64, device=s.device)
    p_max = int(n_pos.max()) if s.shape[0] else 0
    if p_max == 0:
        return out
    # each row's positive scores, sorted ascending, padded with +inf: [B, P]
    r, c = pos.nonzero(as_tuple=True)
    first = torch.cumsum(n_pos, 0) - n_pos
    packed = torch.full((s.shape[0], p_max), torch.inf, dtype=s.dtype, device=s.device)
    packed[r, torch.arange(len(r), device=s.device) - first[r]] = s[r, c]
    packed = torch.sort(packed, dim=1).values
    twice_wins = torch.zeros(s.shape[0], dtype=torch.int64, device=s.device)
    for rows in torch.arange(s.shape[0], device=s.device).split(128):  # bounded memory
        cap = n_pos[rows, None].to(torch.int32)
        seq, v = packed[rows], s[rows]
        below = torch.minimum(torch.searchsorted(seq, v, out_int32=True), cap)  # positives < v
        upto = torch.minimum(torch.searchsorted(seq, v, right=True, out_int32=True), cap)
        # against a negative scored v, positives above v win (2 halves), equal ones tie (1)
        halves = (cap - upto) * 2 + (upto - below)
        twice_wins[rows] = torch.where(neg[rows], halves, 0).sum(1, dtype=torch.int64)
    ok = (n_pos > 0) & (n_neg > 0)
    out[ok] = twice_wins[ok].to(torch.float64) / (2.0 * n_pos[ok] * n_neg[ok])
    return out


def sampled_metrics(
    rank: ArrayLike, n_candidates: int, ks: Sequence[int], metrics: Sequence[str]
) -> dict[str, np.ndarray]:
    """Metrics of one positive ranked among ``n_candidates`` (itself plus sampled negatives).

    Args:
        rank: ``int[N]`` 1-based rank of the positive of each case.
        n_candidates: candidates per case (negatives + 1).
        ks: cut-offs.
        metrics: names among ``FULL_METRICS``. ``hr``/``recall`` = rank <= k; ``precision`` =
            hr / k; ``ndcg`` = 1/log2(rank+1) within k; ``mrr`` gives both ``mrr@k`` and ``mrr``
            (reciprocal rank over all candidates, the CDRIB figure); ``auc`` = share of
            negatives ranked below the positive.

    Returns:
        ``{"hr@10": float64[N], ..., "mrr": float64[N]}``.
    """
    r = np.asarray(torch.as_tensor(rank).cpu().numpy(), dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for m in metrics:
        for k in ks if m in _AT_K else ():
            inside = r <= k
            if m in ("hr", "recall"):
                out[f"{m}@{k}"] = inside.astype(np.float64)
            elif m == "precision":
                out[f"{m}@{k}"] = inside / k
            elif m == "ndcg":
                out[f"{m}@{k}"] = np.where(inside, 1.0 / np.log2(r + 1.0), 0.0)
            else:
                out[f"{m}@{k}"] = np.where(inside, 1.0 / r, 0.0)
        if m == "mrr":
            out["mrr"] = 1.0 / r
        elif m == "auc":
            out["auc"] = (n_candidates - r) / max(1, n_candidates - 1)
    return out


def mae(pred: ArrayLike, true: ArrayLike) -> float:
    """Mean absolute error of explicit rating predictions (NaN for empty input)."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t))) if len(p) else float("nan")


def rmse(pred: ArrayLike, true: ArrayLike) -> float:
    """Root mean squared error of explicit rating predictions (NaN for empty input)."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2))) if len(p) else float("nan")


def _pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred.cpu() if isinstance(pred, Tensor) else pred, dtype=np.float64).ravel()
    t = np.asarray(true.cpu() if isinstance(true, Tensor) else true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length: {p.shape[0]} vs {t.shape[0]}")
    return p, t
