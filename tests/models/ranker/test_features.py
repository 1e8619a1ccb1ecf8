"""Ranker features: the serving-side caches give the floats the uncached formulas give."""

import numpy as np
import pytest
import torch

from crossrec.data.sequence import PAD
from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.text_zero_shot import query_histories
from crossrec.models.cross.text2cf import apply_ridge
from crossrec.models.ranker import Ranker
from crossrec.models.ranker.features import _profiles, _segment_dots
from crossrec.testing.contract import SOURCE, TARGET
from crossrec.testing.synthetic import make_two_domain

FAST = {"candidates": [{"name": "itemknn", "train_on": "all", "n": 30}, {"name": "pop", "n": 30}],
        "n_estimators": 20, "episode_ratio": 0.5, "negatives": 40, "min_child_samples": 5,
        "factors": 8}


@pytest.fixture(scope="module")
def fitted():
    split = cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)
    options = FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)
    return Ranker(FAST).fit(split.train, options)


def _uncached(model: Ranker, query: Query) -> dict[str, np.ndarray]:
    """``text_map`` and ``text2cf`` columns as computed before the caches: the item side
    mapped per request, the user side gathered per pair."""
    train, fb = model.train_data, model.features
    st = fb.state
    cands, _ = model._candidates(train, query, TARGET)
    hist = query_histories(train, query, model.config.max_history)
    history = model._history(train, query)
    di = train.info.domain_index(TARGET)
    gitems, rows = cands.items + train.domain_items(TARGET).start, cands.rows
    cand = st.vectors[gitems]
    valid = hist != PAD
    dom = np.where(valid, train.item_domain[np.maximum(hist, 0)], -1)
    col = np.full(len(rows), np.nan, dtype=np.float32)
    outside = _profiles(st.vectors, hist, valid & (dom != di), fb.decay)
    has = np.abs(outside).sum(1) > 0
    mapped = apply_ridge(outside, st.text_maps[TARGET])
    mapped /= np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
    ok = has[rows]
    col[ok] = np.einsum("pd,pd->p", mapped[rows[ok]], cand[ok])
    user = np.asarray(history @ st.cf, dtype=np.float32)
    return {"text_map": col,
            "text2cf:mapped": np.einsum("pk,pk->p", user[rows], apply_ridge(cand, st.cf_map)),
            "text2cf:svd": np.einsum("pk,pk->p", user[rows], st.cf[gitems])}


@pytest.mark.parametrize("users", [list(range(16)), [3]])
def test_cached_text_features_equal_the_uncached_formulas(fitted, users) -> None:
    query = Query(torch.as_tensor(users))
    names = fitted.features.names(fitted.train_data)
    _, x = fitted._candidates(fitted.train_data, query, TARGET)
    want = _uncached(fitted, query)
    assert np.isfinite(want["text_map"]).any()
    for name, col in want.items():
        if name == "text2cf:mapped":  # BLAS may round the last bit by the product's row count
            np.testing.assert_allclose(x[:, names.index(name)], col, rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(x[:, names.index(name)], col)


def test_mapped_items_are_computed_once_and_reset_by_a_refit(fitted) -> None:
    st = fitted.features.state
    first = st.mapped_items()
    assert st.mapped_items() is first
    np.testing.assert_array_equal(first[5:40], apply_ridge(st.vectors[5:40], st.cf_map))
    restored = Ranker(FAST).restore(fitted.train_data, fitted.options, fitted.state())
    assert restored.features.state.cf_mapped is None


def test_segment_dots_equal_the_gathered_einsum() -> None:
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 300):
        rows = np.sort(rng.integers(0, 5, size))
        a = rng.standard_normal((size, 33)).astype(np.float32)
        vecs = rng.standard_normal((5, 33)).astype(np.float32)
        starts = np.searchsorted(rows, np.arange(6))
        np.testing.assert_array_equal(_segment_dots(a, vecs, starts),
                                      np.einsum("pd,pd->p", vecs[rows], a))
        some = _segment_dots(a, vecs, starts, np.array([1, 3]))
        keep = np.isin(rows, [1, 3])
        assert np.isnan(some[~keep]).all()
        np.testing.assert_array_equal(some[keep], np.einsum("pd,pd->p", vecs[rows[keep]],
                                                            a[keep]))
