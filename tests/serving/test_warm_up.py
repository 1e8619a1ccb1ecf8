"""Warm-up at bundle preparation: the first request pays no lazy set-up, answers unchanged."""

from __future__ import annotations

import pytest

from crossrec.bundle import Bundle
from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions
from crossrec.models.ranker import Ranker
from crossrec.serving.reload import Served
from crossrec.testing.contract import SOURCE, TARGET
from crossrec.testing.synthetic import make_two_domain

FAST = {"candidates": [{"name": "itemknn", "train_on": "all", "n": 30}, {"name": "pop", "n": 30}],
        "n_estimators": 20, "episode_ratio": 0.5, "negatives": 40, "min_child_samples": 5,
        "factors": 8, "n_boosters": 2}


@pytest.fixture(scope="module")
def ranker_path(tmp_path_factory):  # noqa: ANN201
    split = cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)
    options = FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)
    model = Ranker(FAST).fit(split.train, options)
    spec = {"name": "ranker", **model.config.model_dump()}
    return Bundle(model, split.train, {"model": spec, "target": TARGET, "sources": [SOURCE],
                                       "seed": 0}).save(tmp_path_factory.mktemp("warm") / "b")


@pytest.fixture()
def ranker_bundle(ranker_path) -> Bundle:
    return Bundle.load(ranker_path)


def _answers(bundle: Bundle, users: list[str]) -> list[tuple]:
    return [(r.item_ids, r.scores, r.because, r.signals)
            for r in bundle.recommend(users, TARGET, 5, explain=2)]


def test_prepare_builds_the_rankers_explanation_tables_and_item_maps(ranker_bundle) -> None:
    model = ranker_bundle.model
    assert getattr(model.booster, "_path_tables", None) is None
    assert model.features.state.cf_mapped is None
    Served.prepare(ranker_bundle)
    assert len(model.booster._path_tables) == 2
    assert model.booster._merged_trees is not None
    assert model.features.state.cf_mapped is not None


def test_answers_do_not_depend_on_the_warm_up(ranker_bundle, ranker_path) -> None:
    users = [str(u) for u in ranker_bundle.train.users.ids[:6]]
    assert ranker_bundle.warm_up() > 0.0
    assert _answers(ranker_bundle, users) == _answers(Bundle.load(ranker_path), users)

