"""Sharded evaluation: the merged shards equal single-process evaluation exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from eval_toy import FixedScores

from crossrec.data.split import Split, cold_start_users
from crossrec.eval.ranking import evaluate
from crossrec.eval.shard import merge_results, mix64, shard_of, stream
from crossrec.testing import make_two_domain


@pytest.fixture(scope="module")
def split() -> Split:
    data = make_two_domain(n_users=200, n_items=(50, 40), n_overlap=150, seed=1)
    return cold_start_users(data, "source", "target", 0.4, seed=0)


@pytest.fixture(scope="module")
def model(split: Split) -> FixedScores:
    n_dom = split.train.info.n_domain_items("target")
    rng = np.random.default_rng(4)
    # coarse scores: many ties, so the tie rule is exercised too
    return FixedScores({"target": rng.integers(0, 6, (split.train.n_users, n_dom))})


def _same(a, b) -> None:  # noqa: ANN001
    pd.testing.assert_frame_equal(a.per_user, b.per_user, check_exact=True)
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    assert a.params == b.params and a.protocol == b.protocol


@pytest.mark.parametrize("n", [1, 3, 7])
@pytest.mark.parametrize("n_negatives", [None, 5])
def test_merged_shards_equal_single_process(split: Split, model: FixedScores, n: int,
                                            n_negatives: int | None) -> None:
    kw = dict(ks=(5, 10), metrics=("recall", "ndcg", "hr", "mrr"), n_negatives=n_negatives,
              seed=3, batch_size=16)
    whole = evaluate(model, split, **kw)
    parts = [evaluate(model, split, shard=(i, n), **kw) for i in reversed(range(n))]
    assert sum(len(p.per_user) for p in parts) == len(whole.per_user)
    users = [set(p.per_user["user"]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(users) for b in users[i + 1:])  # disjoint
    _same(merge_results(parts), whole)
    if n_negatives is not None:  # several truth cases per user: the case key is not the user
        assert whole.per_user.groupby("user").size().max() > 1


def test_full_ranking_with_auc_and_an_empty_shard(split: Split, model: FixedScores) -> None:
    users = np.unique(split.truth("test", "target")["user"].to_numpy())[:3]
    kw = dict(ks=(10,), metrics=("ndcg", "auc"), users=users)
    parts = [evaluate(model, split, shard=(i, 8), **kw) for i in range(8)]
    assert any(len(p.per_user) == 0 for p in parts)  # 3 users in 8 shards
    _same(merge_results(parts), evaluate(model, split, **kw))


def test_sampled_draws_depend_on_seed_and_case_only(split: Split, model: FixedScores) -> None:
    kw = dict(ks=(5,), metrics=("mrr",), n_negatives=10)
    whole = evaluate(model, split, seed=0, **kw).per_user
    some = np.unique(whole["user"])[::3]
    subset = evaluate(model, split, seed=0, users=some, **kw).per_user
    pd.testing.assert_frame_equal(subset, whole[whole["user"].isin(some)].reset_index(drop=True))
    other = evaluate(model, split, seed=1, **kw).per_user
    assert not other["mrr"].equals(whole["mrr"])


def test_partition_is_stable_and_balanced() -> None:
    users = np.arange(10_000)
    shards = shard_of(users, 4)
    np.testing.assert_array_equal(shards[123:456], shard_of(users[123:456], 4))
    assert np.bincount(shards, minlength=4).min() > 2300  # about 2500 each
    assert mix64(np.array([1, 2]), 3).dtype == np.uint64
    draws = stream(mix64(np.arange(1000), 7)[:, None], np.arange(100)) % np.uint64(10)
    counts = np.bincount(draws.ravel().astype(np.int64), minlength=10)
    assert counts.min() > 9_600 and counts.max() < 10_400  # uniform: 10,000 each


def test_merge_refuses_mismatched_parts(split: Split, model: FixedScores) -> None:
    a = evaluate(model, split, shard=(0, 2))
    b = evaluate(model, split, shard=(1, 2), ks=(5,))
    with pytest.raises(ValueError, match="not the same evaluation"):
        merge_results([a, b])
    with pytest.raises(ValueError, match="each of shards"):
        merge_results([a])
    with pytest.raises(ValueError, match="shard=\\(i, n\\)"):
        merge_results([evaluate(model, split)])
    with pytest.raises(ValueError, match="0 <= i < n"):
        evaluate(model, split, shard=(2, 2))
