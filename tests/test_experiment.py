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
