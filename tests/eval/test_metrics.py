"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crossrec.eval import metrics as M

L2, L3, L4, L5 = (math.log2(x) for x in (2, 3, 4, 5))


def test_hand_ranked_list() -> None:
    hits = torch.tensor([[False, True, False, True, False]])
    n = torch.tensor([3])
    assert M.recall_at_k(hits, n, 5).item() == pytest.approx(2 / 3)
    assert M.precision_at_k(hits, n, 5).item() == pytest.approx(2 / 5)
    assert M.hit_rate_at_k(hits, n, 5).item() == 1.0
    idcg = 1 + 1 / L3 + 1 / L4
    assert M.ndcg_at_k(hits, n, 5).item() == pytest.approx((1 / L3 + 1 / L5) / idcg)
    assert M.mrr_at_k(hits, n, 5).item() == pytest.approx(0.5)
    # cut-off 1: nothing found yet
    for f in (M.recall_at_k, M.precision_at_k, M.hit_rate_at_k, M.ndcg_at_k, M.mrr_at_k):
        assert f(hits, n, 1).item() == 0.0
    # cut-off 2: IDCG over min(n_truth, k) = 2 positions
    assert M.ndcg_at_k(hits, n, 2).item() == pytest.approx((1 / L3) / (1 + 1 / L3))
    assert M.recall_at_k(hits, n, 2).item() == pytest.approx(1 / 3)


def test_several_users_and_numpy_input() -> None:
    hits = np.array([[True, False, False], [False, False, True], [False, False, False]])
    n = np.array([1, 2, 4])
    out = M.rank_metrics(hits, n, ks=[3], metrics=["ndcg", "mrr", "hr", "recall"])
    np.testing.assert_allclose(out["ndcg@3"], [1.0, (1 / L4) / (1 + 1 / L3), 0.0])
    np.testing.assert_allclose(out["mrr@3"], [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(out["hr@3"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(out["recall@3"], [1.0, 0.5, 0.0])
    assert list(out) == ["ndcg@3", "mrr@3", "hr@3", "recall@3"]


def test_empty_truth_is_nan_not_zero() -> None:
    hits = torch.tensor([[True, False], [False, False]])
    n = torch.tensor([1, 0])
    for name, f in (("recall", M.recall_at_k), ("ndcg", M.ndcg_at_k), ("mrr", M.mrr_at_k),
                    ("hr", M.hit_rate_at_k), ("precision", M.precision_at_k)):
        v = f(hits, n, 2)
        assert v[0].item() > 0, name
        assert math.isnan(v[1].item()), name


def test_k_larger_than_list() -> None:
    hits = torch.tensor([[True, False, True]])  # a domain of 3 items, k = 10
    n = torch.tensor([2])
    assert M.recall_at_k(hits, n, 10).item() == 1.0
    assert M.precision_at_k(hits, n, 10).item() == pytest.approx(0.2)  # still divided by k
    assert M.ndcg_at_k(hits, n, 10).item() == pytest.approx((1 + 1 / L4) / (1 + 1 / L3))
    assert M.mrr_at_k(hits, n, 10).item() == 1.0
    assert M.hit_rate_at_k(torch.zeros(1, 0, dtype=torch.bool), n, 10).item() == 0.0
    assert M.mrr_at_k(torch.zeros(1, 0, dtype=torch.bool), n, 10).item() == 0.0


def test_more_truth_than_k_gives_perfect_ndcg() -> None:
    hits = torch.tensor([[True, True]])
    assert M.ndcg_at_k(hits, torch.tensor([5]), 2).item() == pytest.approx(1.0)
    assert M.recall_at_k(hits, torch.tensor([5]), 2).item() == pytest.approx(0.4)


def test_bad_k() -> None:
    with pytest.raises(ValueError):
        M.ndcg_at_k(torch.tensor([[True]]), torch.tensor([1]), 0)


def test_auc_hand_values() -> None:
    assert M.auc(torch.tensor([[3.0, 2, 1, 0]]), torch.tensor([[False, True, False, False]])
                 ).item() == pytest.approx(2 / 3)
    # ties count one half
    assert M.auc(torch.tensor([[1.0, 1, 0]]), torch.tensor([[True, False, False]])
                 ).item() == pytest.approx(0.75)
    # an excluded (e.g. training) item is no negative
    scores, truth = torch.tensor([[3.0, 2, 1, 0]]), torch.tensor([[False, True, False, False]])
    excl = torch.tensor([[True, False, False, False]])
    assert M.auc(scores, truth, excl).item() == 1.0
    # no negative / no positive: undefined
    assert math.isnan(M.auc(torch.tensor([[1.0, 0]]), torch.tensor([[True, True]])).item())
    assert math.isnan(M.auc(torch.tensor([[1.0, 0]]), torch.tensor([[False, False]])).item())


def test_auc_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 15)).astype(np.float32)  # many ties
    truth = rng.random((20, 15)) < 0.2
    excl = (rng.random((20, 15)) < 0.2) & ~truth
    got = M.auc(scores, truth, excl).numpy()
    for b in range(20):
        pos = scores[b][truth[b]]
        neg = scores[b][~truth[b] & ~excl[b]]
        if len(pos) == 0 or len(neg) == 0:
            assert math.isnan(got[b])
            continue
        wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
        assert got[b] == pytest.approx(wins / (len(pos) * len(neg)))


def test_sampled_metrics() -> None:
    out = M.sampled_metrics(np.array([1, 3, 11]), 100, ks=[10], metrics=["hr", "ndcg", "mrr"])
    np.testing.assert_allclose(out["hr@10"], [1, 1, 0])
    np.testing.assert_allclose(out["ndcg@10"], [1, 0.5, 0])
    np.testing.assert_allclose(out["mrr@10"], [1, 1 / 3, 0])
    np.testing.assert_allclose(out["mrr"], [1, 1 / 3, 1 / 11])


def test_mae_rmse() -> None:
    assert M.mae([1, 2, 3], [1, 3, 5]) == pytest.approx(1.0)
    assert M.rmse(np.array([1, 2, 3]), torch.tensor([1, 3, 5])) == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(M.mae([], []))
    with pytest.raises(ValueError):
        M.rmse([1, 2], [1])
