"""paired_test and mean_std on known numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crossrec.eval.significance import format_mean_std, mean_std, paired_test


def frame(users, values, metric="ndcg@10") -> pd.DataFrame:
    return pd.DataFrame({"user": users, "group": "warm", "n_truth": 1, metric: values})


def test_known_numbers() -> None:
    a = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, -0.05])
    out = paired_test(frame(range(6), a), frame(range(6), a - d))
    assert out["n"] == 6
    assert out["mean_diff"] == pytest.approx(d.mean())
    assert out["mean_a"] == pytest.approx(a.mean())
    # |d| ranks: 0.05 -> 1 (negative), the rest 2..6 positive: W- = 1. Exact two-sided p:
    # subsets of {1..6} with rank sum <= 1 are {} and {1}: 2 / 64 per side.
    assert out["p_wilcoxon"] == pytest.approx(4 / 64)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(6))
    assert out["p_ttest"] == pytest.approx(2 * stats.t.sf(abs(t), 5))


def test_inner_join_on_users_and_order() -> None:
    a = frame([3, 1, 2, 9], [1.0, 0.0, 0.5, 0.7])
    b = frame([1, 2, 3, 7], [0.0, 0.25, 0.5, 0.1])
    out = paired_test(a, b)
    assert out["n"] == 3  # users 1, 2, 3
    assert out["mean_diff"] == pytest.approx((0 + 0.25 + 0.5) / 3)
    with pytest.raises(ValueError, match="share no"):
        paired_test(frame([1], [1.0]), frame([2], [1.0]))
    with pytest.raises(KeyError):
        paired_test(a, b, metric="auc")


def test_identical_and_nan() -> None:
    same = paired_test(frame([1, 2, 3], [0.1, 0.2, 0.3]), frame([1, 2, 3], [0.1, 0.2, 0.3]))
    assert same["p_wilcoxon"] == 1.0 and same["p_ttest"] == 1.0 and same["mean_diff"] == 0
    one = paired_test(frame([1, 2], [0.1, np.nan]), frame([1, 2], [0.2, 0.3]))
    assert one["n"] == 1 and math.isnan(one["p_ttest"])


def test_cases_join_on_user_and_item(split, model) -> None:
    from crossrec.eval import evaluate

    a = evaluate(model, split, n_negatives=3, seed=0, ks=(1,), metrics=("mrr",))
    b = evaluate(model, split, n_negatives=3, seed=1, ks=(1,), metrics=("mrr",))
    assert paired_test(a, b, "mrr")["n"] == len(split.truth("test"))


def test_mean_std() -> None:
    assert mean_std([0.2, 0.4]) == pytest.approx((0.3, math.sqrt(0.02)))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(x) for x in mean_std([]))
    assert format_mean_std([0.2, 0.4]) == "0.3000 ± 0.1414"
    assert format_mean_std([0.2]) == "0.2000"
