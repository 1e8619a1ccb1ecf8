"""few_shot: n target interactions per truth user move to training; the same users and truth
at every n up to the pool; the rest of the split untouched."""

import numpy as np
import pandas as pd
import pydantic
import pytest

from crossrec.config import ColdStartUsersSplit, LeaveOneOutSplit
from crossrec.data.split import cold_start_users, few_shot, leave_one_out
from crossrec.errors import DataError
from crossrec.experiment import make_split
from crossrec.testing import make_two_domain


def pairs(frame: pd.DataFrame) -> set:
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


@pytest.fixture(scope="module")
def base():
    return cold_start_users(make_two_domain(seed=2), "source", "target", 0.3, seed=1)


def first_rows(frame: pd.DataFrame, n: int) -> set:
    """(user, item) of each user's first n rows, by timestamp then row order."""
    f = frame.assign(_row=np.arange(len(frame))).sort_values(["user", "timestamp", "_row"],
                                                             kind="mergesort")
    return pairs(f[f.groupby("user").cumcount() < n])


def test_zero_shots_keep_the_split(base):
    same = few_shot(base, 0)
    assert same.train.interactions.equals(base.train.interactions)
    assert pairs(same.valid) == pairs(base.valid) and pairs(same.test) == pairs(base.test)


@pytest.mark.parametrize("n", [1, 4, 10])
def test_n_shots_move_the_earliest_rows_and_keep_the_truth(base, n):
    pool = 10  # the synthetic users have 8-16 target rows
    split = few_shot(base, n, pool)
    ref = few_shot(base, 0, pool)  # the same users and truth at every n <= pool
    assert pairs(split.test) == pairs(ref.test) and pairs(split.valid) == pairs(ref.valid)
    truth = pd.concat([base.truth("valid"), base.truth("test")])
    sizes = truth.groupby("user").size()
    kept = sizes.index[sizes > pool].to_numpy()
    assert set(split.test["user"]) | set(split.valid["user"]) == set(kept)
    assert len(kept) < len(sizes)  # some users have too few rows and leave the truth
    eligible = truth[truth["user"].isin(kept)]
    added = pairs(split.train.interactions) - pairs(base.train.interactions)
    assert added == first_rows(eligible, n)
    assert len(split.train.interactions) == len(base.train.interactions) + n * len(kept)
    dropped = first_rows(eligible, pool)  # the pool rows are never truth
    assert not dropped & (pairs(split.valid) | pairs(split.test))
    assert not added & (pairs(split.valid) | pairs(split.test))
    assert (split.user_groups(kept) == "warm").all()  # they have target history now
    assert split.params["n_shots"] == n and split.params["few_shot_test_users"] > 0


def test_few_shot_needs_cold_truth_users_and_a_sane_pool(base):
    with pytest.raises(DataError, match="n_shots <= shot_pool"):
        few_shot(base, 3, 2)
    warm = leave_one_out(make_two_domain(seed=2), "target")
    with pytest.raises(DataError, match="cold truth users"):
        few_shot(warm, 1)


def test_split_config_asks_for_few_shot():
    ds = make_two_domain(seed=2)
    cfg = ColdStartUsersSplit(target="target", source=["source"], ratio=0.3, n_shots=2,
                              shot_pool=3)
    split = make_split(ds, cfg, seed=1)
    assert split.params["n_shots"] == 2 and split.params["shot_pool"] == 3
    with pytest.raises(pydantic.ValidationError, match="n_shots"):  # no cold truth users
        LeaveOneOutSplit(target="target", n_shots=1)
