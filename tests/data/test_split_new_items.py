"""cold_start_items and new_domain: no leakage, sizes, determinism, config hook."""

import numpy as np
import pytest

from crossrec.config import ColdStartItemsSplit, NewDomainSplit
from crossrec.data.split import cold_start_items, new_domain
from crossrec.errors import DataError
from crossrec.experiment import make_split
from crossrec.testing import make_two_domain


@pytest.fixture(scope="module")
def data():
    return make_two_domain()


def test_cold_start_items_holds_out_items_with_all_their_interactions(data) -> None:
    split = cold_start_items(data, "target", 0.2, seed=0)
    target = data.domain_items("target")
    inter = data.interactions
    active = np.unique(inter["item"][inter["domain"] == 1])
    valid_items = np.unique(split.valid["item"])
    test_items = np.unique(split.test["item"])
    assert len(valid_items) + len(test_items) == round(0.2 * len(active))
    assert len(np.intersect1d(valid_items, test_items)) == 0
    held = np.concatenate([valid_items, test_items])
    assert ((held >= target.start) & (held < target.stop)).all()
    train_items = split.train.interactions["item"].to_numpy()
    assert not np.isin(train_items, held).any()  # no interaction of a held-out item in train
    # every interaction of a held-out item is in the truth, and nothing else is lost
    held_rows = np.isin(inter["item"].to_numpy(), held)
    assert held_rows.sum() == len(split.valid) + len(split.test)
    assert len(split.train.interactions) == len(inter) - held_rows.sum()
    assert split.train.n_items == data.n_items  # ranked among all items of the domain
    assert split.describe()["held_out_items"] == len(held)


def test_cold_start_items_is_seeded(data) -> None:
    a, b = cold_start_items(data, "target", seed=3), cold_start_items(data, "target", seed=3)
    c = cold_start_items(data, "target", seed=4)
    assert a.test.equals(b.test) and a.valid.equals(b.valid)
    assert not np.array_equal(np.unique(a.test["item"]), np.unique(c.test["item"]))


def test_new_domain_has_no_target_interaction_in_training(data) -> None:
    split = new_domain(data, "target", valid_share=0.25, seed=0)
    train = split.train.interactions
    assert (train["domain"] == 0).all() and len(split.train.domain_users("target")) == 0
    inter = data.interactions
    assert len(train) == (inter["domain"] == 0).sum()  # the source is kept whole
    overlap = data.overlap_users("source", "target")
    valid_users, test_users = np.unique(split.valid["user"]), np.unique(split.test["user"])
    assert len(np.intersect1d(valid_users, test_users)) == 0
    np.testing.assert_array_equal(np.union1d(valid_users, test_users), overlap)
    assert len(valid_users) == round(0.25 * len(overlap))
    # truth = every target interaction of the scored users
    mine = np.isin(inter["user"], overlap) & (inter["domain"] == 1)
    assert len(split.valid) + len(split.test) == mine.sum()
    assert set(split.user_groups(test_users)) == {"cold"}
    again = new_domain(data, "target", valid_share=0.25, seed=0)
    assert again.test.equals(split.test)


def test_bad_arguments_name_the_field(data) -> None:
    with pytest.raises(DataError, match="ratio"):
        cold_start_items(data, "target", 1.5)
    with pytest.raises(DataError, match="valid_share"):
        new_domain(data, "target", valid_share=0.0)
    with pytest.raises(DataError, match="source"):
        new_domain(data, "target", "target")
    with pytest.raises(DataError):
        cold_start_items(data, "no-such-domain")


def test_make_split_hooks(data) -> None:
    items = make_split(data, ColdStartItemsSplit(target="target"), seed=1)
    assert items.name.startswith("cold_start_items")
    assert items.params["seed"] == 1
    fixed = NewDomainSplit(target="target", valid_share=0.3, seed_follows_run=False)
    new = make_split(data, fixed, seed=5)
    assert new.name == "new_domain" and new.params["seed"] == 0
    assert new.params["sources"] == ["source"]
