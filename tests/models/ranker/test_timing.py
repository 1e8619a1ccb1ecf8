"""time features: counts per quantile time bucket around the user's latest action, by hand."""

import numpy as np
import pandas as pd
import pytest

from crossrec.models.ranker.timing import ItemTimes, item_times, time_features, user_last_times


class _Data:
    """The two attributes ``item_times`` / ``user_last_times`` read."""

    def __init__(self, users, items, ts, n_users, n_items) -> None:
        self.interactions = pd.DataFrame({"user": users, "item": items, "timestamp": ts})
        self.n_users, self.n_items, self._cache = n_users, n_items, {}


def test_known_answer_buckets_counts_and_ages() -> None:
    # 8 interactions at times 0..7; 4 buckets of 2 interactions each: edges 1.75, 3.5, 5.25
    data = _Data(users=[0, 0, 1, 1, 2, 2, 2, 2], items=[0, 0, 1, 0, 1, 1, 2, 2],
                 ts=[0, 1, 2, 3, 4, 5, 6, 7], n_users=4, n_items=4)
    times = item_times(data, n_buckets=4)
    assert times.counts.shape == (4, 4)
    np.testing.assert_array_equal(times.counts[0], [2, 1, 0, 0])
    np.testing.assert_array_equal(times.counts[1], [0, 1, 2, 0])
    np.testing.assert_array_equal(times.counts[2], [0, 0, 0, 2])
    assert np.isnan(times.first[3])
    last = user_last_times(data)
    np.testing.assert_array_equal(last[:3], [1, 3, 7])
    assert np.isnan(last[3])
    # user 1 (time 3, bucket 1) and an unknown user, candidates 0, 1 and 2
    rows = np.array([0, 0, 0, 1])
    gitems = np.array([0, 1, 2, 0])
    bucket, nearby, share, item_age, user_age = time_features(
        times, np.array([3.0, np.nan]), rows, gitems)
    assert bucket[:3] == pytest.approx(np.log1p([1, 1, 0]))
    assert nearby[:3] == pytest.approx(np.log1p([3, 3, 0]))
    assert share[:3] == pytest.approx([1 / 3, 1 / 3, 0])
    assert item_age[:3] == pytest.approx([3 / 7, 1 / 7, -3 / 7])
    assert user_age[0] == pytest.approx(4 / 7)
    assert all(np.isnan(c[3]) for c in (bucket, nearby, share, item_age, user_age))
    again = ItemTimes.from_state(times.state())
    np.testing.assert_array_equal(again.counts, times.counts)


def test_group_fits_scores_explains_and_survives_restore(group_fit) -> None:
    from crossrec.models.ranker.explain import _reason
    from crossrec.models.ranker.features import DEFAULT_GROUPS

    assert "time" not in DEFAULT_GROUPS  # opt-in
    fit = group_fit(["sources", "popularity", "time"])
    assert np.isfinite(fit.column("time:item_age")).all()
    fit.assert_restore_scores_the_same()
    assert "time" in _reason(fit.model, "time:bucket", 0, np.array([1]))
