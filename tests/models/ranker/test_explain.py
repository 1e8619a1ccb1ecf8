"""Ranker explanations: path attributions (the serving default) against exact TreeSHAP."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.ranker import Ranker
from crossrec.models.ranker.explain import PathTable, path_contributions, signals
from crossrec.testing.contract import SOURCE, TARGET
from crossrec.testing.synthetic import make_two_domain

FAST = {"candidates": [{"name": "itemknn", "train_on": "all", "n": 30}, {"name": "pop", "n": 30}],
        "n_estimators": 40, "episode_ratio": 0.5, "negatives": 40, "min_child_samples": 5,
        "factors": 8, "n_boosters": 3}


@pytest.fixture(scope="module")
def fitted():
    split = cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)
    options = FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)
    model = Ranker(FAST).fit(split.train, options)
    users = torch.arange(12)
    x = model._candidates(split.train, Query(users), TARGET)[1]
    return model, x


def test_path_contributions_sum_to_the_score_with_shaps_expected_value(fitted) -> None:
    model, x = fitted
    path = path_contributions(model.booster, x)
    exact = model.booster.predict(x, pred_contrib=True)
    assert path.shape == exact.shape == (len(x), x.shape[1] + 1)
    np.testing.assert_allclose(path.sum(1), model.booster.predict(x), rtol=0, atol=1e-9)
    np.testing.assert_allclose(path[:, -1], exact[:, -1], rtol=0, atol=1e-12)
    # the features a row's paths never split on get nothing (as in SHAP)
    used = np.zeros(x.shape[1], bool)
    for b in model.booster.boosters:
        used |= b.feature_importance("split") > 0
    assert not path[:, :-1][:, ~used].any()


def test_path_table_of_one_leaf_trees() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3))
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 100},
                        lgb.Dataset(x, np.full(50, 2.0)), num_boost_round=3)
    table = PathTable(booster)
    c = table.contributions(booster.predict(x, pred_leaf=True).reshape(50, -1))
    np.testing.assert_allclose(c.sum(1), booster.predict(x), atol=1e-12)
    assert not c[:, :-1].any()


def test_signals_path_by_default_exact_on_request(fitted) -> None:
    model, _ = fitted
    user = Query(torch.arange(3, 4))
    top = torch.topk(model.score(user, TARGET)[0], 5).indices.numpy()
    cand, x = model.user_rows(user, TARGET)
    rows = [int(np.flatnonzero(cand == i)[0]) for i in top]
    names = model.features.names(model.train_data)
    for exact, contrib in ((False, path_contributions(model.booster, x[rows])),
                           (True, model.booster.predict(x[rows], pred_contrib=True))):
        got = signals(model, user, TARGET, top, 3, exact=exact)
        for per_item, c in zip(got, contrib[:, :-1], strict=True):
            want = [f for f in np.argsort(-c, kind="stable")[:3] if c[f] > 0]
            assert [s.feature for s in per_item] == [names[f] for f in want]
            np.testing.assert_allclose([s.weight for s in per_item], c[want])
    assert model.signals(user, TARGET, top, 3) == signals(model, user, TARGET, top, 3)


def test_path_tables_are_built_once_per_ensemble(fitted) -> None:
    model, x = fitted
    from crossrec.models.ranker.explain import path_tables

    assert path_tables(model.booster) is path_tables(model.booster)
    assert len(path_tables(model.booster)) == 3


def test_merged_trees_give_every_boosters_leaves_in_one_pass(fitted) -> None:
    from crossrec.models.ranker.learn import merged_trees

    model, x = fitted
    boosters = model.booster.boosters
    merged = merged_trees(boosters)
    each = np.concatenate([b.predict(x, pred_leaf=True) for b in boosters], axis=1)
    np.testing.assert_array_equal(merged.predict(x, pred_leaf=True), each)
    assert merged_trees(boosters[:1]) is None
    # the attributions do not depend on how the leaves were found
    together = path_contributions(model.booster, x)  # builds and keeps the merged booster
    saved = model.booster._merged_trees
    assert saved is not None
    try:
        model.booster._merged_trees = None  # one pred_leaf call per booster
        apart = path_contributions(model.booster, x)
    finally:
        model.booster._merged_trees = saved
    np.testing.assert_array_equal(together, apart)


def test_path_contributions_of_a_row_do_not_depend_on_the_other_rows(fitted) -> None:
    model, x = fitted
    together = path_contributions(model.booster, x)
    for a in range(0, len(x), 37):
        np.testing.assert_array_equal(path_contributions(model.booster, x[a:a + 37]),
                                      together[a:a + 37])
    np.testing.assert_array_equal(path_contributions(model.booster, x[5:6]), together[5:6])


@pytest.mark.parametrize("exact", [False, True])
def test_batch_signals_equal_one_call_per_user(fitted, exact) -> None:
    from crossrec.models.ranker.explain import batch_signals

    model, _ = fitted
    users = torch.arange(6)
    scores = model.score(Query(users), TARGET)  # leaves the batch for user_rows
    tops = [torch.topk(scores[u], 6).indices.numpy() for u in range(len(users))]
    tops[2] = np.concatenate([tops[2], [tops[2][0]]])  # a repeated item
    queries = [Query(users[u:u + 1]) for u in range(len(users))]
    # a user with a request history: its rows are computed, not read back
    queries.append(Query(torch.tensor([-1]), torch.tensor([[0, 1, 2]])))
    tops.append(np.arange(4))
    got = batch_signals(model, queries, TARGET, tops, 3, exact=exact)
    want = [signals(model, q, TARGET, t, 3, exact=exact) for q, t in zip(queries, tops,
                                                                      strict=True)]
    assert got == want  # same features, same float weights, same sentences
    assert sum(len(s) for per_user in got for s in per_user) > 0
    assert batch_signals(model, [], TARGET, [], 3) == []


def test_a_text_source_is_explained_by_the_closest_history_title() -> None:
    from crossrec.models.ranker.explain import _reason

    split = cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)
    options = FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)
    spec = {**FAST, "n_boosters": 1, "candidates": [
        {"name": "pop", "n": 30},
        {"name": "text_zero_shot", "label": "titles", "popularity_weight": 0.0, "n": 30}]}
    model = Ranker(spec).fit(split.train, options)
    train = split.train
    history = np.flatnonzero(train.interactions["user"].to_numpy() == 0)
    history = train.interactions["item"].to_numpy()[history]
    item = int(train.domain_items(TARGET).start)
    vectors = model.features.state.vectors
    closest = history[int(np.argmax(vectors[history] @ vectors[item]))]
    said = _reason(model, "titles:rank", item, history)
    assert said.startswith("similar title to '") and train.domains[
        train.item_domain[closest]] in said
    assert _reason(model, "pop:rank", item, history) == "ranked high by pop"
