"""The one evaluation entry point: the eval config picks the protocol, results unchanged."""

from __future__ import annotations

import pandas as pd
import pytest
from eval_toy import toy_split

from crossrec.config import EvalConfig
from crossrec.errors import ConfigError
from crossrec.eval.next_item import evaluate_next_item
from crossrec.eval.ranking import evaluate, evaluate_ratings
from crossrec.eval.run import protocol, run, validation_hook


def same(a, b) -> None:  # noqa: ANN001
    pd.testing.assert_frame_equal(a.summary, b.summary)
    pd.testing.assert_frame_equal(a.per_user, b.per_user)
    assert a.protocol == b.protocol


def test_full_ranking(model, split):
    cfg = EvalConfig(ks=[1, 3], metrics=["recall", "ndcg", "mrr"])
    assert protocol(cfg) == "ranking"
    for part in ("valid", "test"):
        same(run(model, split, cfg, part=part),
             evaluate(model, split, part=part, ks=(1, 3), metrics=("recall", "ndcg", "mrr")))


def test_sampled_ranking_follows_the_seed(model, split):
    cfg = EvalConfig(ks=[2], metrics=["hr"], n_negatives=2)
    for seed in (0, 3):
        same(run(model, split, cfg, seed=seed),
             evaluate(model, split, ks=(2,), metrics=("hr",), n_negatives=2, seed=seed))


def test_rating_metrics(model):
    split = toy_split(ratings=True)
    cfg = EvalConfig(metrics=["mae", "rmse"])
    assert protocol(cfg, "rmse") == "ratings"
    same(run(model, split, cfg, part="test"), evaluate_ratings(model, split, part="test"))


def test_next_item(model, split):
    model.fit(split.train, None)
    cfg = EvalConfig(protocol="next_item", candidates="all", ks=[1, 5], metrics=["hr", "mrr"])
    assert protocol(cfg) == "next_item"
    same(run(model, split, cfg, part="test"),
         evaluate_next_item(model, split, part="test", candidates="all", ks=(1, 5),
                            metrics=("hr", "mrr")))


def test_one_metric_at_one_k(model, split):
    cfg = EvalConfig()
    res = run(model, split, cfg, metric="ndcg@3")
    assert set(res.summary["metric"]) == {"ndcg"} and set(res.summary["k"].dropna()) == {3}
    uncut = run(model, split, cfg, metric="mrr")  # no @k: cut at 10, the uncut mrr is read
    assert set(uncut.summary["metric"]) == {"mrr"}


def test_validation_hook_is_higher_better(model, split):
    hook = validation_hook(split, EvalConfig(), "ndcg@3")
    assert hook(model) == evaluate(model, split, part="valid", ks=(3,),
                                   metrics=("ndcg",)).value("ndcg", 3)
    rated = toy_split(ratings=True)
    hook = validation_hook(rated, EvalConfig(metrics=["rmse"]), "rmse")
    rmse = evaluate_ratings(model, rated, part="valid").value("rmse")
    assert rmse > 0 and hook(model) == -rmse
    model.fit(split.train, None)
    nxt = EvalConfig(protocol="next_item", candidates="domain")
    hook = validation_hook(split, nxt, "hr@2")
    assert hook(model) == evaluate_next_item(model, split, part="valid", ks=(2,),
                                             metrics=("hr",)).value("hr", 2)


def test_config_errors(model, split):
    with pytest.raises(ConfigError, match="cannot be mixed"):
        protocol(EvalConfig(metrics=["rmse", "ndcg"]))
    with pytest.raises(ConfigError, match="train.early_stopping='ndcg@10'"):
        validation_hook(split, EvalConfig(metrics=["rmse"]), "ndcg@10")
    with pytest.raises(ConfigError, match="train.early_stopping='rmse'"):
        protocol(EvalConfig(), "rmse")
    with pytest.raises(ConfigError, match="candidates = \"domain\""):
        run(model, split, EvalConfig(protocol="next_item", n_negatives=5, candidates="all"))
    with pytest.raises(ConfigError, match="--workers"):
        run(model, toy_split(ratings=True), EvalConfig(metrics=["rmse"]), workers=2)
    with pytest.raises(ConfigError, match="--workers"):
        run(model, split, EvalConfig(protocol="next_item"), workers=2)
