"""Paired significance tests between two models on the same users, and seed statistics."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from crossrec.eval.result import EvalResult


def _rows(x: EvalResult | pd.DataFrame) -> pd.DataFrame:
    return x.per_user if isinstance(x, EvalResult) else x


def paired_test(
    a: EvalResult | pd.DataFrame, b: EvalResult | pd.DataFrame, metric: str = "ndcg@10"
) -> dict[str, Any]:
    """Compare ``metric`` of two evaluations on the users (or cases) they share.

    Rows are matched on ``user`` — on ``(user, item)`` when both have an ``item`` column
    (sampled or rating cases) — and rows where either value is NaN are dropped.

    Args:
        a: an EvalResult or its ``per_user`` frame.
        b: the same for the other model.
        metric: a column of both frames, e.g. ``"ndcg@10"``, ``"auc"``, ``"mae"``.

    Returns:
        ``{"metric", "n", "mean_a", "mean_b", "mean_diff" (a - b), "p_wilcoxon",
        "p_ttest"}``. A p-value is NaN when the test is undefined (fewer than 2 pairs);
        identical values give ``p = 1``.

    Raises:
        KeyError: ``metric`` is not a column of both.
        ValueError: the two share no user.
    """
    from scipy import stats

    fa, fb = _rows(a), _rows(b)
    for name, f in (("a", fa), ("b", fb)):
        if metric not in f.columns:
            raise KeyError(f"{name} has no column {metric!r}; it has: {', '.join(f.columns)}")
    on = ["user", "item"] if "item" in fa.columns and "item" in fb.columns else ["user"]
    joined = fa[[*on, metric]].merge(fb[[*on, metric]], on=on, suffixes=("_a", "_b"))
    if joined.empty:
        raise ValueError(f"the two evaluations share no {'/'.join(on)}; a paired test needs "
                         "the same users (same split and seed)")
    va = joined[f"{metric}_a"].to_numpy(np.float64)
    vb = joined[f"{metric}_b"].to_numpy(np.float64)
    ok = ~(np.isnan(va) | np.isnan(vb))
    va, vb = va[ok], vb[ok]
    diff = va - vb
    n = int(len(diff))
    p_w = p_t = float("nan")
    if n >= 2:
        if np.allclose(diff, 0.0):
            p_w = p_t = 1.0
        else:
            p_w = float(stats.wilcoxon(va, vb, zero_method="wilcox").pvalue)
            p_t = float(stats.ttest_rel(va, vb).pvalue)
            if math.isnan(p_t) and np.allclose(diff, diff[0]):
                p_t = 0.0  # a constant non-zero difference: no variance, certain
    return {
        "metric": metric,
        "n": n,
        "mean_a": float(va.mean()) if n else float("nan"),
        "mean_b": float(vb.mean()) if n else float("nan"),
        "mean_diff": float(diff.mean()) if n else float("nan"),
        "p_wilcoxon": p_w,
        "p_ttest": p_t,
    }


def mean_std(values: Iterable[float], *, ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation over seeds (sample std, ``ddof=1``; 0.0 for one value).

    Example:
        >>> mean_std([0.2, 0.4])
        (0.30000000000000004, 0.14142135623730953)
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    std = float(v.std(ddof=ddof)) if v.size > ddof else 0.0
    return float(v.mean()), std


def format_mean_std(values: Iterable[float], digits: int = 4) -> str:
    """``"0.3000 ± 0.1414"`` (just the mean when there is a single value)."""
    v = list(values)
    mean, std = mean_std(v)
    return f"{mean:.{digits}f}" if len(v) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"
