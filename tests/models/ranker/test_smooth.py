"""text_smooth: the first source's z-scores of a candidate's title neighbours, by hand."""

import numpy as np
import pytest

from crossrec.models.ranker.smooth import NAMES, smooth_features


def test_known_answer_weights_seen_and_padding() -> None:
    # one domain starting at global item 10: 4 items, 2 neighbours each
    neighbours = np.array([[11, 12], [10, 13], [13, 10], [12, 11]])
    neighbours = np.concatenate([np.zeros((10, 2), np.int64), neighbours])
    sims = np.concatenate([np.zeros((10, 2), np.float32),
                           np.array([[0.8, 0.2], [0.5, -0.1], [0.9, np.nan], [0.4, 0.4]],
                                    dtype=np.float32)])
    # 2 users; user 1 has seen item 13 (local 3)
    fallback = np.array([[1.0, 2.0, -1.0, 3.0], [0.5, 1.5, 2.5, -np.inf]], dtype=np.float32)
    rows = np.array([0, 0, 1, 1])
    items = np.array([10, 11, 12, 10])
    mean, best, seen = smooth_features(neighbours, sims, fallback, rows, items, 10)
    # user 0, item 10: neighbours 11 (z 2, w .8), 12 (z -1, w .2)
    assert mean[0] == pytest.approx((0.8 * 2 - 0.2) / 1.0)
    assert best[0] == 2.0 and seen[0] == 0.0
    # user 0, item 11: neighbour 13 has a negative cosine: weight 0, still in the max
    assert mean[1] == pytest.approx(1.0) and best[1] == 3.0
    # user 1, item 12: neighbour 13 seen, the second slot is padding
    assert np.isnan(mean[2]) and np.isnan(best[2]) and seen[2] == 1.0
    # user 1, item 10: neither neighbour seen
    assert mean[3] == pytest.approx((0.8 * 1.5 + 0.2 * 2.5) / 1.0) and seen[3] == 0.0
    assert len(NAMES) == 3


def test_group_fits_scores_explains_and_survives_restore(group_fit) -> None:
    from crossrec.models.ranker.explain import _reason
    from crossrec.models.ranker.features import DEFAULT_GROUPS
    from crossrec.testing.contract import TARGET

    assert "text_smooth" not in DEFAULT_GROUPS  # opt-in
    fit = group_fit(["sources", "popularity", "text_smooth"])
    st = fit.model.features.state
    s = fit.split.train.domain_items(TARGET)
    # neighbours stay in their item's domain and are never the item itself
    assert ((st.neighbours[s] >= s.start) & (st.neighbours[s] < s.stop)).all()
    assert (st.neighbours[s] != np.arange(s.start, s.stop)[:, None]).all()
    assert np.isfinite(fit.column("text_smooth:mean")).any()
    fit.assert_restore_scores_the_same()
    assert "titled like" in _reason(fit.model, "text_smooth:mean", s.start, np.array([0]))
