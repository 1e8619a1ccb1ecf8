import numpy as np
import pytest

from crossrec.data.vocab import Vocabulary
from crossrec.errors import DataError


def test_index_raw_round_trip():
    v = Vocabulary(["u7", "u3", "u9"], name="user_id")
    idx = v.index(["u9", "u7", "u3", "u9"])
    assert idx.dtype == np.int32
    assert idx.tolist() == [2, 0, 1, 2]
    assert v.raw(idx).tolist() == ["u9", "u7", "u3", "u9"]
    assert len(v) == 3 and "u3" in v and "u4" not in v


def test_ids_become_strings():
    v = Vocabulary(np.array([10, 20]))
    assert v.ids.tolist() == ["10", "20"]
    assert v.index(["20"]).tolist() == [1]


def test_unknown_id_raises_with_the_id_and_count():
    v = Vocabulary(["a", "b"], name="user_id")
    with pytest.raises(DataError, match=r"unknown user_id 'zz' \(2 unknown in all\)"):
        v.index(["a", "zz", "yy"])


def test_unknown_ids_ignored_give_minus_one():
    v = Vocabulary(["a", "b"])
    assert v.index(["b", "zz"], missing="ignore").tolist() == [1, -1]


def test_few_ids_lookup_agrees_with_the_bulk_path():
    from crossrec.data.vocab import FEW_IDS

    v = Vocabulary([f"u{i}" for i in range(100)] + ["12"])
    ids = ["u5", "nope", "u99", "12", 12, ""] * 6  # more than FEW_IDS: get_indexer
    bulk = v.index(ids, missing="ignore")
    few = np.concatenate([v.index(ids[i:i + 3], missing="ignore") for i in range(0, 36, 3)])
    assert len(ids) > FEW_IDS >= 3
    assert bulk.dtype == few.dtype == np.int32
    assert few.tolist() == bulk.tolist() == [5, -1, 99, 100, 100, -1] * 6
    with pytest.raises(DataError, match="unknown id 'nope'"):
        v.index(["u1", "nope"])


def test_duplicate_ids_rejected():
    with pytest.raises(DataError, match="vocabulary 'item': duplicate id 'x'"):
        Vocabulary(["x", "y", "x"], name="item")


def test_save_load_and_json(tmp_path):
    v = Vocabulary(["b", "a", "c"], name="user_id")
    v.save(tmp_path / "v.parquet")
    w = Vocabulary.load(tmp_path / "v.parquet", name="user_id")
    assert v == w and w.ids.tolist() == ["b", "a", "c"]
    assert v.to_json() == '["b", "a", "c"]'
    assert v != Vocabulary(["a", "b", "c"])


def test_empty_vocabulary():
    v = Vocabulary([])
    assert len(v) == 0
    assert v.index([], missing="raise").tolist() == []
