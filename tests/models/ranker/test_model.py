"""Ranker: the contract, episodes without leakage, a text-only known answer, explanations."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.ranker import Ranker
from crossrec.testing.contract import SOURCE, TARGET, RecommenderContract
from crossrec.testing.synthetic import make_two_domain

FAST = {"candidates": [{"name": "itemknn", "train_on": "all", "n": 30}, {"name": "pop", "n": 30}],
        "n_estimators": 40, "episode_ratio": 0.5, "negatives": 40, "min_child_samples": 5,
        "factors": 8}


class TestRanker(RecommenderContract):
    model_cls = Ranker
    fast_config = FAST
    transfers = True
    min_margin = 0.05


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)


def _options() -> FitOptions:
    return FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)


def test_no_truth_reaches_episodes_or_their_sources(split, monkeypatch) -> None:
    """Every dataset a source is fitted on, and every episode label, is training data; the
    episode fit never holds the episode labels; valid/test truth appears nowhere."""
    import crossrec.models.ranker.model as ranker_model

    seen: list = []
    real = ranker_model.fit_sources

    def spy(specs, train, options, log=None, base=None):
        seen.append(train)
        models = real(specs, train, options, log, base=base)
        assert all(m.train_data is train for m in models)  # an updated EASE included
        return models

    episodes: list = []
    real_episodes = ranker_model.make_episodes

    def spy_episodes(*args, **kwargs):
        episodes.append(real_episodes(*args, **kwargs))
        return episodes[-1]

    from crossrec.models.baselines.ease import EASE

    updated: list = []
    real_subset = EASE.fit_subset

    def spy_subset(self, train, options):
        updated.append(real_subset(self, train, options))
        return updated[-1]

    monkeypatch.setattr(ranker_model, "fit_sources", spy)
    monkeypatch.setattr(ranker_model, "make_episodes", spy_episodes)
    monkeypatch.setattr(EASE, "fit_subset", spy_subset)
    # with an EASE source, whose episode fit is an update of its full fit (the hidden rows
    # taken out of its inverse; tests/models/test_ease.py checks it equals a fresh fit)
    Ranker({**FAST, "episode_ratio": 0.1, "update_sources": True, "candidates": [
        *FAST["candidates"], {"name": "ease", "train_on": "all", "n": 30}]}).fit(
        split.train, _options())
    assert len(updated) == 1 and updated[0] is not None and updated[0].train_data is not None
    key = lambda f: set(zip(f["user"].tolist(), f["item"].tolist(), strict=True))  # noqa: E731
    truth = key(split.valid) | key(split.test)
    train = key(split.train.interactions)
    (ep,) = episodes
    labels = key(ep.labels)
    assert labels and labels <= train and not labels & truth
    assert len(seen) == 2 and seen[0] is split.train and seen[1] is ep.train  # full first
    for data in seen:
        assert not key(data.interactions) & truth
    assert not key(seen[1].interactions) & labels


def test_text_alone_separates_the_right_items(split) -> None:
    """The only source is popularity (nothing personal): only the text features can tell a
    cold user's cluster from their source titles, so the ranker with text must win clearly."""
    from crossrec.testing.contract import recall_at_k

    base = {**FAST, "candidates": [{"name": "pop", "n": 100}]}
    with_text = Ranker(base).fit(split.train, _options())
    without = Ranker({**base, "features": ["sources", "popularity", "history"]}).fit(
        split.train, _options())
    r_text, r_none = recall_at_k(with_text, split), recall_at_k(without, split)
    assert r_text >= r_none + 0.15, (r_text, r_none)


def test_signals_name_features_and_reasons(split) -> None:
    model = Ranker(FAST).fit(split.train, _options())
    user = torch.from_numpy(np.unique(split.truth("test")["user"].to_numpy())[:1])
    top = torch.topk(model.score(Query(user), TARGET)[0], 5).indices.numpy()
    reasons = model.signals(Query(user), TARGET, top, n=3)
    assert len(reasons) == 5 and any(reasons)
    names = set(model.features.names(split.train))
    for per_item in reasons:
        assert len(per_item) <= 3
        assert all(s.feature in names and s.weight > 0 and s.reason for s in per_item)
        assert [s.weight for s in per_item] == sorted((s.weight for s in per_item),
                                                       reverse=True)
    texts = [s.reason for r in reasons for s in r]
    assert any(t.startswith(("ranked high by", "similar title", "popular")) for t in texts)
    imp = model.importance()
    assert abs(sum(imp.values()) - 1.0) < 1e-6 and set(imp) == names


def test_bundle_recommend_carries_the_rankers_signals(split, tmp_path) -> None:
    """Serving's only inference path explains a ranker's items with its own reasons, and the
    HTTP answer carries them."""
    from fastapi.testclient import TestClient

    from crossrec.bundle import Bundle
    from crossrec.serving.app import create_app
    from crossrec.serving.auth import KeyRing, digest
    from crossrec.serving.settings import ServeSettings

    model = Ranker(FAST).fit(split.train, _options())
    spec = {"name": "ranker", **model.config.model_dump()}
    path = Bundle(model, split.train, {"model": spec, "target": TARGET, "sources": [SOURCE],
                                       "seed": 0}).save(tmp_path / "bundle")
    bundle = Bundle.load(path)
    user = str(split.train.users.raw([int(split.truth("test")["user"].iloc[0])])[0])
    (rec,) = bundle.recommend([user], TARGET, 5, explain=2)
    assert rec.strategy == "model" and rec.basis == "source_only"
    assert len(rec.signals) == 5 and any(rec.signals)
    assert all(len(s) <= 2 for s in rec.signals)
    app = create_app(bundle, ServeSettings(events=str(tmp_path / "e.sqlite")),
                     keys=KeyRing([digest("k" * 32)]))
    with TestClient(app) as client:
        r = client.post("/recommend", json={"user_id": user, "domain": TARGET, "k": 5,
                                            "explain": True}, headers={"X-API-Key": "k" * 32})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert any(item["signals"] for item in items)
    assert all(s["reason"] for item in items for s in item["signals"] or [])


def test_source_weight_chosen_on_validation_and_kept_by_restore(split) -> None:
    from crossrec.config import EvalConfig
    from crossrec.eval.run import validation_hook

    hook = validation_hook(split, EvalConfig(), "ndcg@10")
    options = FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False,
                         validate=hook)
    model = Ranker(FAST).fit(split.train, options)
    curve = model.report["source_weight_curve"]
    assert set(curve) == {str(float(w)) for w in model.config.source_weight_grid}
    assert model.source_weight == max(model.config.source_weight_grid,
                                       key=lambda w: (curve[str(float(w))], -w))
    assert model._memo is None  # no memo left behind for serving
    restored = Ranker(FAST).restore(split.train, options, model.state())
    users = torch.arange(10)
    torch.testing.assert_close(restored.score(Query(users), TARGET),
                               model.score(Query(users), TARGET))


def test_restore_refuses_a_booster_built_for_other_features(split) -> None:
    from crossrec.errors import DataError

    model = Ranker({**FAST, "features": ["sources", "popularity"]}).fit(split.train, _options())
    with pytest.raises(DataError, match="features.*retrain"):
        Ranker({**FAST, "features": ["sources"]}).restore(split.train, _options(),
                                                          model.state())


def test_bagged_boosters_average_and_survive_restore(split) -> None:
    model = Ranker({**FAST, "n_boosters": 3}).fit(split.train, _options())
    assert len(model.booster.boosters) == 3
    users = torch.arange(12)
    x = model._candidates(split.train, Query(users), TARGET)[1]
    each = [b.predict(x) for b in model.booster.boosters]
    np.testing.assert_allclose(model.booster.predict(x), np.mean(each, axis=0))
    assert not np.allclose(each[0], each[1])  # different rows, features and seeds
    restored = Ranker({**FAST, "n_boosters": 3}).restore(split.train, _options(), model.state())
    torch.testing.assert_close(restored.score(Query(users), TARGET),
                               model.score(Query(users), TARGET))
    assert len(model.signals(Query(users[:1]), TARGET, np.arange(3))) == 3


def test_objective_reaches_lightgbm_and_unknown_ones_are_refused(split) -> None:
    from pydantic import ValidationError

    from crossrec.models.ranker.config import RankerConfig

    with pytest.raises(ValidationError, match="objective"):
        RankerConfig(objective="regression")
    model = Ranker({**FAST, "objective": "rank_xendcg"}).fit(split.train, _options())
    booster = model.booster.boosters[0]
    assert booster.params["objective"] == "rank_xendcg"
    default = Ranker(FAST).fit(split.train, _options())
    assert default.booster.boosters[0].params["objective"] == "lambdarank"
    users = Query(torch.arange(12))
    assert not torch.equal(model.score(users, TARGET), default.score(users, TARGET))


def test_mixed_objective_alternates_over_the_bagged_boosters(split) -> None:
    from pydantic import ValidationError

    from crossrec.models.ranker.config import RankerConfig

    with pytest.raises(ValidationError, match="n_boosters"):
        RankerConfig(objective="mixed", n_boosters=1)
    model = Ranker({**FAST, "objective": "mixed", "n_boosters": 3}).fit(split.train,
                                                                       _options())
    assert [b.params["objective"] for b in model.booster.boosters] == [
        "lambdarank", "rank_xendcg", "lambdarank"]


def test_signals_read_the_scored_batch_back_identically(split) -> None:
    model = Ranker(FAST).fit(split.train, _options())
    users = torch.arange(8)
    model.score(Query(users), TARGET)  # leaves the batch for signals()
    cached = model.user_rows(Query(users[3:4]), TARGET)
    model._last = None
    fresh = model.user_rows(Query(users[3:4]), TARGET)
    np.testing.assert_array_equal(cached[0], fresh[0])
    np.testing.assert_allclose(cached[1], fresh[1], rtol=1e-4, atol=1e-5)  # batch vs one-row BLAS


def test_episode_folds_hide_disjoint_users_and_pool_their_rows(split) -> None:
    from crossrec.models.ranker.episodes import make_episodes

    folds = [make_episodes(split.train, "cold_users", TARGET, ratio=0.3, seed=0, fold=f)
             for f in range(3)]
    users = [set(ep.labels["user"].tolist()) for ep in folds]
    assert all(users) and not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert users[0] == set(make_episodes(split.train, "cold_users", TARGET, ratio=0.3,
                                         seed=0).labels["user"].tolist())
    one = Ranker(FAST).fit(split.train, _options())
    two = Ranker({**FAST, "episode_folds": 2}).fit(split.train, _options())
    assert two.report["episode_users"] > 1.5 * one.report["episode_users"]


def test_episode_folds_must_fit_in_the_pool() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="episode_folds"):
        Ranker({**FAST, "episode_folds": 4, "episode_ratio": 0.3})


def test_text_tower_group_fits_scores_and_survives_restore(split) -> None:
    from crossrec.models.ranker.features import DEFAULT_GROUPS

    assert "text_tower" not in DEFAULT_GROUPS  # opt-in
    spec = {**FAST, "features": [*DEFAULT_GROUPS, "text_tower"]}
    model = Ranker(spec).fit(split.train, _options())
    assert TARGET in model.features.state.towers
    names = model.features.names(split.train)
    users = torch.arange(12)
    x = model._candidates(split.train, Query(users), TARGET)[1]
    col = x[:, names.index("text_tower")]
    assert np.isfinite(col).any() and np.nanmax(np.abs(col)) <= 1.0 + 1e-5
    restored = Ranker(spec).restore(split.train, _options(), model.state())
    torch.testing.assert_close(restored.score(Query(users), TARGET),
                               model.score(Query(users), TARGET))
    from crossrec.models.ranker.explain import _reason

    assert "two-tower" in _reason(model, "text_tower:cz", 0, np.array([1]))


def test_z_sample_changes_only_the_text_sources_z_scores(split) -> None:
    """With ``z_sample`` the max-pooled text source nominates from its nearest-title index and
    is standardised over a sample: the same candidates, the same features but its ``:z``."""
    spec = {**FAST, "candidates": [
        {"name": "itemknn", "train_on": "all", "n": 30},
        {"name": "text_zero_shot", "label": "text", "pooling": "max", "popularity_weight": 0.0,
         "n": 20}]}
    exact = Ranker(spec).fit(split.train, _options())
    sampled = Ranker({**spec, "z_sample": 25}).restore(split.train, _options(), exact.state())
    query = Query(torch.arange(30))
    a, xa = exact._candidates(split.train, query, TARGET)
    b, xb = sampled._candidates(split.train, query, TARGET)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    names = exact.features.names(split.train)
    differ = [n for j, n in enumerate(names)
              if not np.allclose(xa[:, j], xb[:, j], atol=1e-5, equal_nan=True)]
    assert differ == ["text:z"], differ
    assert torch.isfinite(sampled.score(query, TARGET)).all()
