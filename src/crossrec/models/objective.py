"""Ranking objectives over sampled negatives, per example (callers weight and reduce)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

RankingObjective = Literal["bpr", "softmax"]


def sampled_ranking_loss(user: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                         objective: RankingObjective,
                         positive_bias: torch.Tensor | None = None,
                         negative_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example ranking loss of one positive against ``k`` sampled negatives.

    * ``"bpr"``: ``mean_j softplus(s_j - s_+)`` (Rendle et al., UAI 2009).
    * ``"softmax"``: sampled softmax cross-entropy ``-log(e^{s_+} / (e^{s_+} + Σ_j e^{s_j}))``.

    Args:
        user: ``[b, d]`` user representations.
        positive: ``[b, d]`` positive item vectors.
        negatives: ``[b, k, d]`` negative item vectors.
        objective: ``"bpr"`` or ``"softmax"``.
        positive_bias: optional ``[b]`` added to the positive scores.
        negative_bias: optional ``[b, k]`` added to the negative scores.

    Returns:
        ``[b]`` losses.
    """
    pos = (user * positive).sum(-1)  # [b]
    neg = torch.einsum("bd,bkd->bk", user, negatives)  # [b, k]
    if positive_bias is not None:
        pos = pos + positive_bias
    if negative_bias is not None:
        neg = neg + negative_bias
    if objective == "bpr":
        return F.softplus(neg - pos[:, None]).mean(-1)
    if objective == "softmax":
        return torch.logsumexp(torch.cat([pos[:, None], neg], 1), dim=1) - pos
    raise ValueError(f"unknown ranking objective {objective!r}; use 'bpr' or 'softmax'")
