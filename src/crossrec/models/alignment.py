"""Distribution alignment losses between two sets of representations.

Used to pull the representations a model computes from one domain towards those it computes
from another, so that a scorer trained on one kind works on the other:

* ``mmd``: squared maximum mean discrepancy with a sum of Gaussian kernels at several
  bandwidths (Gretton et al., JMLR 2012; the multi-kernel form of Long et al., ICML 2015).
* ``coral``: distance between the two covariance matrices (Sun & Saenko, "Deep CORAL",
  ECCV 2016 workshops).
* ``GradientReversal`` + a domain classifier: adversarial alignment (Ganin & Lempitsky,
  ICML 2015; Ganin et al., JMLR 2016). The classifier learns to tell the two sets apart; the
  reversed gradient trains the encoder to make them indistinguishable.

``Aligner`` wraps the three behind one call, ``aligner(x, y) -> loss to add``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AlignmentKind = Literal["adversarial", "mmd", "coral", "none"]
BANDWIDTH_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be [n, d] and [m, d], got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"need at least 2 rows in each set, got {len(x)} and {len(y)}")


def mmd(x: torch.Tensor, y: torch.Tensor,
        bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """Squared MMD (biased V-statistic) with a sum of Gaussian kernels.

    ``k(a, b) = Σ_σ exp(-|a - b|² / (2σ²))``. Without ``bandwidths`` the σ² are
    ``BANDWIDTH_SCALES`` times the mean squared pairwise distance of the pooled sample
    (detached), which makes the loss invariant to the scale of the representations.

    Args:
        x: ``[n, d]`` first sample.
        y: ``[m, d]`` second sample.
        bandwidths: kernel widths σ (absolute), or None for the data-dependent default.

    Returns:
        Scalar ``>= 0``; 0 when ``x`` and ``y`` are the same sample.
    """
    _check_pair(x, y)
    z = torch.cat([x, y])  # [n + m, d]
    sq = torch.cdist(z, z).pow(2)  # [n + m, n + m]
    if bandwidths is None:
        n_all = len(z)
        base = sq.detach().sum() / (n_all * n_all - n_all)
        variances = [max(float(base), 1e-12) * s for s in BANDWIDTH_SCALES]
    else:
        variances = [float(b) ** 2 for b in bandwidths]
    kernel = sum(torch.exp(-sq / (2.0 * v)) for v in variances)
    n = len(x)
    return (kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()).clamp_min(0)


def coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CORAL loss ``|C_x - C_y|_F² / (4 d²)`` between the sample covariances.

    Args:
        x: ``[n, d]`` first sample.
        y: ``[m, d]`` second sample.

    Returns:
        Scalar ``>= 0``; 0 when both have the same covariance (whatever their means).
    """
    _check_pair(x, y)
    d = x.shape[1]

    def cov(a: torch.Tensor) -> torch.Tensor:
        c = a - a.mean(0, keepdim=True)
        return c.T @ c / (len(a) - 1)  # [d, d]

    return (cov(x) - cov(y)).pow(2).sum() / (4 * d * d)


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: ANN001
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the gradient by ``-scale``."""
    return _Reverse.apply(x, scale)


class GradientReversal(nn.Module):
    """The gradient reversal layer of DANN as a module (``scale`` = λ of the paper)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def ramp(progress: float, gamma: float = 10.0) -> float:
    """DANN's warm-up ``2 / (1 + exp(-gamma * p)) - 1``: 0 at ``p = 0``, near 1 from p ≈ 0.5.

    Ganin & Lempitsky use it on the adaptation weight to suppress the noisy alignment signal
    of the first steps, before the task loss has shaped the representations.
    """
    p = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class Aligner(nn.Module):
    """One alignment objective, chosen by name; call it with the two samples.

    * ``"mmd"`` / ``"coral"``: ``weight * mmd(x, y)`` / ``weight * coral(x, y)``.
    * ``"adversarial"``: a domain classifier (``d -> hidden -> 1``) behind a gradient reversal
      layer of scale ``weight``; returns the classifier's cross-entropy (``x`` labelled 1,
      ``y`` 0). Minimising it trains the classifier to separate the sets and, through the
      reversed gradient, the encoder that produced ``x`` and ``y`` to confuse it.

    ``forward(x, y, scale)`` multiplies the weight by ``scale`` (a warm-up schedule, e.g.
    ``ramp(progress)``).
    * ``"none"``: 0 (no parameters).

    Args:
        kind: the alignment objective.
        dim: width ``d`` of the representations.
        weight: λ, the weight of the alignment term.
        hidden: hidden width of the domain classifier (adversarial only).
        bandwidths: kernel widths σ of ``mmd`` (None: the data-dependent default).
    """

    def __init__(self, kind: AlignmentKind, dim: int, weight: float = 1.0,
                 hidden: int = 64, bandwidths: Sequence[float] | None = None) -> None:
        super().__init__()
        self.bandwidths = None if bandwidths is None else tuple(bandwidths)
        if kind not in ("adversarial", "mmd", "coral", "none"):
            raise ValueError(f"unknown alignment {kind!r}; use adversarial, mmd, coral or none")
        self.kind, self.weight = kind, weight
        self.classifier = (nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                         nn.Linear(hidden, 1))
                           if kind == "adversarial" else None)

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The alignment loss between ``x`` ``[n, d]`` and ``y`` ``[m, d]`` (a scalar)."""
        weight = self.weight * scale
        if self.kind == "none" or weight == 0.0:
            return x.new_zeros(())
        if self.kind == "mmd":
            return weight * mmd(x, y, self.bandwidths)
        if self.kind == "coral":
            return weight * coral(x, y)
        _check_pair(x, y)
        reversed_ = grad_reverse(torch.cat([x, y]), weight)
        logits = self.classifier(reversed_).squeeze(-1)  # [n + m]
        labels = torch.cat([x.new_ones(len(x)), x.new_zeros(len(y))])
        return F.binary_cross_entropy_with_logits(logits, labels)

    @torch.no_grad()
    def domain_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Share of rows the adversarial classifier assigns to the right set (0.5 = confused)."""
        if self.classifier is None:
            raise ValueError(f"alignment {self.kind!r} has no domain classifier")
        logits = self.classifier(torch.cat([x, y])).squeeze(-1)
        labels = torch.cat([x.new_ones(len(x)), x.new_zeros(len(y))])
        return float(((logits > 0).float() == labels).float().mean())
