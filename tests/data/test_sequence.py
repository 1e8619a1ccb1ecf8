"""User sequences: time order (ties by row order), left padding, truncation to the latest."""

import numpy as np
import pandas as pd

from crossrec.data import DatasetBuilder
from crossrec.data.sequence import PAD, user_sequences


def _data():
    frame = pd.DataFrame({
        "user_id": ["a", "a", "a", "a", "b", "b", "c"],
        "item_id": ["x1", "y1", "x2", "y2", "x1", "y1", "x3"],
        "domain": ["x", "y", "x", "y", "x", "y", "x"],
        "timestamp": [30, 10, 20, 20, 5, 1, 7],
    })
    return DatasetBuilder("seq").add_interactions(frame).build()


def _items(data, user_id: str, seq) -> list[str]:
    u = int(data.users.index(np.array([user_id], dtype=object))[0])
    return [data.items.ids[i].split("\x1f", 1)[1] for i in seq.of(u)]


def test_time_order_with_ties_by_row() -> None:
    data = _data()
    seq = user_sequences(data)
    # a: y1@10, then x2@20 and y2@20 (tie: row order), then x1@30
    assert _items(data, "a", seq) == ["y1", "x2", "y2", "x1"]
    assert _items(data, "b", seq) == ["y1", "x1"]
    assert seq.lengths().sum() == len(data.interactions)
    assert user_sequences(data) is seq  # cached on the dataset


def test_domain_filter() -> None:
    data = _data()
    seq = user_sequences(data, ["x"])
    assert _items(data, "a", seq) == ["x2", "x1"]
    assert _items(data, "b", seq) == ["x1"]


def test_padded_left_and_truncated_to_most_recent() -> None:
    data = _data()
    seq = user_sequences(data)
    a = int(data.users.index(np.array(["a"], dtype=object))[0])
    c = int(data.users.index(np.array(["c"], dtype=object))[0])
    full = seq.of(a)
    out = seq.padded([a, c], 6)
    assert out.dtype == np.int64 and out.shape == (2, 6)
    np.testing.assert_array_equal(out[0], [PAD, PAD, *full])
    np.testing.assert_array_equal(out[1], [PAD] * 5 + list(seq.of(c)))
    short = seq.padded([a], 2)  # the two most recent items, newest last
    np.testing.assert_array_equal(short[0], full[-2:])
    assert seq.padded([], 4).shape == (0, 4)
    assert (seq.padded([a], 0).shape) == (1, 0)


def test_left_pad_and_query_history() -> None:
    import pytest

    from crossrec.data.sequence import left_pad, query_history
    from crossrec.errors import DataError

    out = left_pad(np.array([[3, -1, 4, -1], [-1, -1, -1, -1], [1, 2, 3, 5]]), 3)
    np.testing.assert_array_equal(out, [[PAD, 3, 4], [PAD, PAD, PAD], [2, 3, 5]])
    data = _data()
    x = data.domain_items("x")
    seq = user_sequences(data)
    np.testing.assert_array_equal(query_history(data, np.array([0, 1]), None, 5),
                                  seq.padded([0, 1], 5))
    given = np.array([[x.start, -1, data.domain_items("y").start]])
    # a given history replaces the training one; domains filter it
    np.testing.assert_array_equal(query_history(data, np.array([-1]), given, 2, ["x"]),
                                  [[PAD, x.start]])
    with pytest.raises(DataError, match="anonymous"):
        query_history(data, np.array([-1]), None, 2)
    with pytest.raises(DataError, match="item index"):
        query_history(data, np.array([-1]), np.array([[data.n_items]]), 2)
