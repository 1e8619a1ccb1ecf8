"""Compiled trees: the same scores as LightGBM, a cache keyed by the model, LightGBM as the
fallback, and a ranker that ranks identically either way."""

import pickle

import numpy as np
import pytest
import torch

from crossrec.models.base import Query
from crossrec.models.ranker import Ranker, compiled
from crossrec.models.ranker.learn import Ensemble
from crossrec.testing.contract import TARGET

from .conftest import GroupFit

needs_lleaves = pytest.mark.skipif(not compiled.available(), reason="lleaves not installed")


def _ensemble(n_boosters: int, seed: int = 0) -> tuple[Ensemble, np.ndarray]:
    """Boosters on random rows with NaNs in every column (missing values take the learned
    default direction), and rows to predict: ``float32 [400, 12]``."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 12)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * x[:, 2] > 1.0)
         & (rng.random(2000) < 0.8)).astype(np.float32)
    boosters = [lgb.train({"objective": "lambdarank", "num_leaves": 15, "verbose": -1,
                           "num_threads": 1, "seed": seed + k, "bagging_fraction": 0.8,
                           "bagging_freq": 1, "min_child_samples": 5},
                          lgb.Dataset(x, y, group=np.full(40, 50)), num_boost_round=25)
                for k in range(n_boosters)]
    rows = rng.normal(size=(400, 12)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return Ensemble(boosters), rows


@needs_lleaves
@pytest.mark.parametrize("n_boosters", [1, 3])
def test_compiled_trees_score_like_lightgbm(n_boosters, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))
    ensemble, rows = _ensemble(n_boosters)
    trees = compiled.compile_trees(ensemble.boosters)
    assert trees is not None
    want = ensemble.predict(rows, num_threads=1)
    got = trees.predict(rows)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.array_equal(np.argsort(-got, kind="stable"), np.argsort(-want, kind="stable"))
    assert trees.predict(rows[:0]).shape == (0,)


@needs_lleaves
def test_compiled_trees_are_cached_by_model_and_reloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))
    first, rows = _ensemble(2, seed=0)
    compiled.compile_trees(first.boosters)
    cached = sorted((tmp_path / "trees").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".o"  # no temporary file left behind
    again = compiled.compile_trees(first.boosters)  # loaded from the cache
    np.testing.assert_allclose(again.predict(rows), first.predict(rows), rtol=0, atol=1e-12)
    other, _ = _ensemble(2, seed=5)
    compiled.compile_trees(other.boosters)  # another model: another file, not the cached one
    assert len(list((tmp_path / "trees").iterdir())) == 2


def test_without_lleaves_the_ranker_predicts_with_lightgbm(monkeypatch) -> None:
    monkeypatch.setattr(compiled, "available", lambda: False)
    ensemble, rows = _ensemble(1)
    assert compiled.compile_trees(ensemble.boosters) is None
    fit = GroupFit(["sources", "popularity", "history"])
    before = fit.model.score(Query(fit.users), TARGET)
    assert fit.model._trees is False
    torch.testing.assert_close(before, Ranker({**fit.spec, "compile_trees": False}).restore(
        fit.split.train, fit.options, fit.model.state()).score(Query(fit.users), TARGET))


@needs_lleaves
def test_ranker_ranks_the_same_with_compiled_trees(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))
    fit = GroupFit(["sources", "popularity", "history"])
    state = fit.model.state()
    plain = Ranker({**fit.spec, "compile_trees": False}).restore(fit.split.train, fit.options,
                                                                 state)
    fast = Ranker(fit.spec).restore(fit.split.train, fit.options, state)
    a = plain.score(Query(fit.users), TARGET)
    b = fast.score(Query(fit.users), TARGET)
    assert plain._trees is False and isinstance(fast._trees, compiled.CompiledTrees)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert torch.equal(torch.topk(a, 10).indices, torch.topk(b, 10).indices)
    # pickled (Ray's object store) without the native code, compiled again on arrival
    copy = pickle.loads(pickle.dumps(fast))
    assert copy._trees is None
    torch.testing.assert_close(copy.score(Query(fit.users), TARGET), b)


@needs_lleaves
def test_the_cache_keeps_the_most_recently_used_files(tmp_path, monkeypatch) -> None:
    import os

    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))
    monkeypatch.setattr(compiled, "KEEP", 2)
    folder = tmp_path / "trees"
    folder.mkdir()
    for k, name in enumerate(["old.o", "used.o"]):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (1000 + k, 1000 + k))
    ensemble, _ = _ensemble(1)
    compiled.compile_trees(ensemble.boosters)
    kept = sorted(f.name for f in folder.iterdir())
    assert len(kept) == 2 and "used.o" in kept and "old.o" not in kept
