import numpy as np
import pandas as pd
import pytest

from crossrec.data.builder import DatasetBuilder
from crossrec.data.split import cold_start_users, leave_one_out, predefined, temporal
from crossrec.errors import DataError


def pairs(frame: pd.DataFrame) -> set:
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def test_cold_start_users_protocol(two_domain):
    ds = two_domain
    split = cold_start_users(ds, source="books", target="movies", ratio=0.25, seed=3)
    cold = np.union1d(split.valid["user"], split.test["user"])
    overlap = ds.overlap_users("books", "movies")
    assert len(cold) == round(0.25 * len(overlap)) == 10  # ratio respected
    assert np.isin(cold, overlap).all()
    assert not set(split.valid["user"]) & set(split.test["user"])
    # cold users have NO target interaction in training ...
    train_target = split.train.domain_interactions("movies")
    assert not np.isin(train_target["user"], cold).any()
    # ... all their target interactions are the truth ...
    full_target = ds.domain_interactions("movies")
    assert len(split.valid) + len(split.test) == np.isin(full_target["user"], cold).sum()
    # ... and their source interactions stay in training
    src_full = ds.domain_interactions("books")
    src_train = split.train.domain_interactions("books")
    assert pairs(src_full[np.isin(src_full["user"], cold)]) == \
        pairs(src_train[np.isin(src_train["user"], cold)])
    # no held-out interaction in training
    assert not (pairs(split.valid) | pairs(split.test)) & pairs(split.train.interactions)
    assert (split.user_groups(cold) == "cold").all()
    assert split.describe()["test_cold_users"] == len(np.unique(split.test["user"]))
    assert list(split.test.columns) == ["user", "item", "domain", "rating", "timestamp"]


def test_cold_start_users_is_reproducible_by_seed(two_domain):
    a = cold_start_users(two_domain, "books", "movies", seed=7)
    b = cold_start_users(two_domain, "books", "movies", seed=7)
    c = cold_start_users(two_domain, "books", "movies", seed=8)
    pd.testing.assert_frame_equal(a.test, b.test)
    pd.testing.assert_frame_equal(a.train.interactions, b.train.interactions)
    assert set(a.test["user"]) != set(c.test["user"])


def test_cold_start_users_needs_overlapping_users():
    rows = pd.DataFrame({"user_id": ["a1", "a2", "b1", "b2"], "item_id": ["x", "y", "x", "y"],
                         "domain": ["books", "books", "movies", "movies"]})
    ds = DatasetBuilder().add_interactions(rows).build()
    with pytest.raises(DataError, match="cold_start_users: domains books and 'movies' share 0 "
                                        "users; a cold-start split needs overlapping users"):
        cold_start_users(ds, "books", "movies")


def test_cold_start_users_bad_arguments(two_domain):
    with pytest.raises(DataError, match=r"ratio must be in \(0, 1\), got 1.5"):
        cold_start_users(two_domain, "books", "movies", ratio=1.5)
    with pytest.raises(DataError, match="target 'movies' is also a source"):
        cold_start_users(two_domain, ["books", "movies"], "movies")
    with pytest.raises(DataError, match="unknown domain 'music'"):
        cold_start_users(two_domain, "music", "movies")


def test_leave_one_out_holds_out_the_last_by_timestamp(two_domain):
    ds = two_domain
    split = leave_one_out(ds, "books")
    books = ds.domain_interactions("books")
    last = books.sort_values("timestamp").groupby("user").tail(1)
    assert pairs(split.test) == pairs(last)
    second = books.sort_values("timestamp").groupby("user").nth(-2)
    assert pairs(split.valid) == pairs(second)
    assert len(split.test) == 50  # one per books user
    assert not (pairs(split.valid) | pairs(split.test)) & pairs(split.train.interactions)
    # every held-out interaction is later than the user's training ones in books
    train_books = split.train.domain_interactions("books")
    latest = train_books.groupby("user")["timestamp"].max()
    assert (split.valid.set_index("user")["timestamp"] >= latest.reindex(split.valid["user"])
            .to_numpy()).all()
    # other domains untouched
    assert len(split.train.domain_interactions("movies")) == len(ds.domain_interactions("movies"))


def test_leave_one_out_min_interactions_and_ties():
    rows = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"], "item_id": ["1", "2", "3", "1", "2"],
                         "timestamp": [5, 5, 5, 1, 2]})
    ds = DatasetBuilder().add_interactions(rows, domain="d").build()
    split = leave_one_out(ds, "d", min_interactions=3)
    # ties in time: row order decides (the last row is the test item)
    assert ds.item_ids(split.test["item"].to_numpy()).tolist() == ["3"]
    assert ds.item_ids(split.valid["item"].to_numpy()).tolist() == ["2"]
    assert len(split.train.interactions) == 3  # user b (2 rows) stays in training


def test_temporal_split(two_domain):
    ds = two_domain
    split = temporal(ds, "movies", valid_frac=0.1, test_frac=0.2)
    cut_v, cut_t = split.params["valid_cut"], split.params["test_cut"]
    assert (split.test["timestamp"] > cut_t).all()
    assert ((split.valid["timestamp"] > cut_v) & (split.valid["timestamp"] <= cut_t)).all()
    assert (split.train.interactions["timestamp"] <= cut_v).all()  # no future from any domain
    n_movies = len(ds.domain_interactions("movies"))
    assert abs(len(split.test) - 0.2 * n_movies) <= 0.02 * n_movies
    with pytest.raises(DataError, match="valid_frac and test_frac"):
        temporal(ds, "movies", valid_frac=0.6, test_frac=0.5)


def test_temporal_needs_timestamps():
    rows = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"]})
    ds = DatasetBuilder().add_interactions(rows, domain="d").build()
    with pytest.raises(DataError, match="temporal: domain 'd' has no timestamps"):
        temporal(ds, "d")


def test_predefined_split():
    rows = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["1", "2", "1", "3", "2"],
                         "part": ["train", "test", "train", "valid", "train"]})
    ds = DatasetBuilder().add_interactions(rows, domain="d").build()
    split = predefined(ds, "d")
    assert "part" not in split.train.interactions.columns
    assert len(split.train.interactions) == 3
    assert ds.users.raw(split.test["user"]).tolist() == ["a"]
    assert ds.item_ids(split.valid["item"].to_numpy()).tolist() == ["3"]
    plain = rows.drop(columns="part")
    no_part = DatasetBuilder("plain").add_interactions(plain, domain="d").build()
    with pytest.raises(DataError, match="dataset 'plain' has no predefined split"):
        predefined(no_part, "d")
