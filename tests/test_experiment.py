"""Experiment wiring: splits from configs, seed handling, aggregation, paired tests."""

import pytest

from crossrec.config import load_config
from crossrec.errors import ConfigError, DataError
from crossrec.experiment import benchmark, load_dataset, make_split, paired_against_best
from crossrec.testing import make_two_domain


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic"
    make_two_domain(seed=5).save(path)
    return path


def config(prepared, split: dict, models: list[dict], seeds=(0, 1)):
    return load_config(base={
        "name": "t", "data": {"prepared": str(prepared)}, "split": split,
        "models": models, "train": {"seeds": list(seeds)}, "eval": {"ks": [10]},
    })


def test_seed_independent_split_counts_each_user_once(prepared):
    cfg = config(prepared, {"kind": "leave_one_out", "target": "target"},
                 [{"name": "pop"}, {"name": "itemknn", "train_on": "all"}])
    result = benchmark(cfg, progress=False, log=lambda *_: None)
    n_users = int(result.rows.query("group == 'all' and metric == 'ndcg'")["n_users"].iloc[0])
    tests = paired_against_best(result, "ndcg@10")
    assert len(tests) == 1 and int(tests["n"].iloc[0]) == n_users
    # deterministic models on the same split: identical per seed, so std is exactly 0
    assert (result.rows["std"] == 0).all()
    assert set(result.rows["seeds"]) == {2}


def test_cold_start_split_follows_the_seed(prepared):
    cfg = config(prepared, {"kind": "cold_start_users", "source": ["source"],
                            "target": "target", "ratio": 0.3}, [{"name": "pop"}])
    ds = load_dataset(cfg.data)
    a, b = make_split(ds, cfg.split, 0), make_split(ds, cfg.split, 1)
    assert set(a.test["user"]) != set(b.test["user"])
    assert set(make_split(ds, cfg.split, 0).test["user"]) == set(a.test["user"])


def test_missing_data_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_DATA", str(tmp_path))
    cfg = load_config(base={"data": {"format": "arts_office", "path": "amazon-arts-office"},
                            "split": {"kind": "predefined", "target": "office"},
                            "model": {"name": "pop"}})
    with pytest.raises(DataError, match="TingJShen/URLLM"):
        load_dataset(cfg.data)
    cfg = load_config(base={"data": {"format": "tabular"},
                            "split": {"kind": "predefined", "target": "office"},
                            "model": {"name": "pop"}})
    with pytest.raises(ConfigError, match="data.path is empty"):
        load_dataset(cfg.data)


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """Two domains with ratings 3 + U V^T (rank 2, every user rates every item)."""
    import numpy as np
    import pandas as pd

    from crossrec.data.builder import DatasetBuilder

    rng = np.random.default_rng(0)
    users = rng.normal(size=(50, 2))
    rows = []
    for domain, n in (("source", 25), ("target", 20)):
        ratings = 3.0 + users @ rng.normal(size=(n, 2)).T
        rows += [(f"u{u}", f"{domain}{i}", domain, ratings[u, i], u * n + i)
                 for u in range(len(users)) for i in range(n)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "rating", "timestamp"])
    path = tmp_path_factory.mktemp("data") / "rated"
    DatasetBuilder("rated").add_interactions(frame).build().save(path)
    return path


def test_rating_benchmark_minimises_the_error(rated):
    from crossrec.experiment import paired_cross_vs_baseline

    fit = {"objective": "mse", "embedding_size": 8, "epochs": 60, "learning_rate": 2e-2,
           "weight_decay": 0.0, "batch_size": 1024, "patience": 60}
    cfg = load_config(base={
        "data": {"prepared": str(rated)},
        "split": {"kind": "cold_start_users", "source": ["source"], "target": "target",
                  "ratio": 0.3},
        "models": [{"name": "cmf", "label": "mf(target)", "train_on": "target", **fit},
                   {"name": "cmf", "label": "cmf", **fit}],
        "train": {"seeds": [0], "early_stopping": "rmse"},
        "eval": {"metrics": ["mae", "rmse"]},
    })
    result = benchmark(cfg, progress=False, log=lambda *_: None)
    assert result.protocol == "ratings" and result.transfer == {"cmf"}
    cold = result.rows.query("group == 'cold'").set_index(["model", "metric"])["mean"]
    assert cold[("cmf", "rmse")] < 0.5 * cold[("mf(target)", "rmse")]
    best = paired_against_best(result, "rmse", "cold")  # lower is better: cmf is the best
    assert list(best["best"]) == ["cmf"] and best["mean_diff"].iloc[0] < 0
    cross = paired_cross_vs_baseline(result, "rmse", "cold")
    assert (cross["best"].iloc[0], cross["other"].iloc[0]) == ("cmf", "mf(target)")


def test_rating_and_ranking_metrics_do_not_mix(rated):
    base = {"data": {"prepared": str(rated)}, "model": {"name": "pop"},
            "split": {"kind": "leave_one_out", "target": "target"}}
    cfg = load_config(base={**base, "eval": {"metrics": ["rmse", "ndcg"]}})
    with pytest.raises(ConfigError, match="cannot be mixed"):
        benchmark(cfg, progress=False, log=lambda *_: None)
    cfg = load_config(base={**base, "eval": {"metrics": ["rmse"]}})
    with pytest.raises(ConfigError, match="train.early_stopping='ndcg@10'"):
        benchmark(cfg, progress=False, log=lambda *_: None)


def test_resumed_benchmark_reads_finished_runs_back(prepared, tmp_path, monkeypatch):
    import crossrec.experiment as experiment

    cfg = config(prepared, {"kind": "cold_start_users", "source": ["source"],
                            "target": "target", "ratio": 0.3},
                 [{"name": "pop"}, {"name": "bpr", "epochs": 2, "embedding_size": 8}], seeds=(0, 1))
    first = benchmark(cfg, progress=False, log=lambda *_: None, runs=tmp_path / "runs")
    assert len(list((tmp_path / "runs").iterdir())) == 4  # 2 models x 2 seeds

    def no_fit(*_a, **_k):
        raise AssertionError("a finished run was fitted again")

    monkeypatch.setattr(experiment, "fit_and_evaluate", no_fit)
    again = benchmark(cfg, progress=False, log=lambda *_: None, runs=tmp_path / "runs")
    cols = ["model", "group", "metric", "k", "mean", "std"]
    assert again.rows[cols].equals(first.rows[cols])
    for key, frame in first.per_user.items():
        assert again.per_user[key].equals(frame)
    # another seed is a new run: fitted, not read back
    more = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seeds": [0, 1, 2]})})
    with pytest.raises(AssertionError, match="fitted again"):
        benchmark(more, progress=False, log=lambda *_: None, runs=tmp_path / "runs")


def test_resume_key_ignores_the_other_models_but_not_the_run_inputs(prepared):
    from crossrec.eval.runlog import run_key

    split = {"kind": "cold_start_users", "source": ["source"], "target": "target", "ratio": 0.3}
    pop, bpr = {"name": "pop"}, {"name": "bpr", "epochs": 2}
    one = config(prepared, split, [pop]).model_dump()
    two = config(prepared, split, [pop, bpr], seeds=(0, 1, 2)).model_dump()
    assert run_key(one, pop, 0) == run_key(two, pop, 0)  # a model added, seeds changed
    assert run_key(one, pop, 0) != run_key(one, pop, 1)
    assert run_key(two, bpr, 0) != run_key(two, {**bpr, "epochs": 3}, 0)
    other_split = config(prepared, {**split, "ratio": 0.4}, [pop]).model_dump()
    assert run_key(one, pop, 0) != run_key(other_split, pop, 0)
