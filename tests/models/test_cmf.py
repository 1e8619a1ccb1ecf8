"""CMF: the contract, a low-rank rating matrix recovered, cold users shaped by the source."""

import numpy as np
import pandas as pd
import pytest
import torch

from crossrec.data.builder import DatasetBuilder
from crossrec.data.split import cold_start_users
from crossrec.errors import DataError
from crossrec.eval.ranking import evaluate_ratings
from crossrec.models.base import FitOptions, Query
from crossrec.models.cross.cmf import CMF
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract

FAST = {"embedding_size": 32, "epochs": 15, "batch_size": 512, "learning_rate": 2e-2}


class TestCMF(RecommenderContract):
    model_cls = CMF
    fast_config = FAST
    transfers = True


def _low_rank(seed: int = 0, n_users: int = 60, n_items: tuple[int, int] = (30, 25),
              rank: int = 2):
    """Two domains with ratings ``3 + U V^T`` (every user rates every item)."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank))
    rows = []
    for domain, n in zip(("source", "target"), n_items, strict=True):
        items = rng.normal(size=(n, rank))
        ratings = 3.0 + users @ items.T
        for u in range(n_users):
            for i in range(n):
                rows.append((f"u{u}", f"{domain}{i}", domain, ratings[u, i], u * n + i))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "rating", "timestamp"])
    return frame


def _build(frame: pd.DataFrame):
    return DatasetBuilder("lowrank").add_interactions(frame).build()


def test_mse_recovers_low_rank_ratings() -> None:
    data = _build(_low_rank())
    split = cold_start_users(data, "source", "target", 0.3, seed=0)
    options = FitOptions(target="target", sources=("source",), progress=False)
    model = CMF(objective="mse", embedding_size=8, epochs=300, learning_rate=2e-2,
                weight_decay=0.0, batch_size=1024).fit(split.train, options)
    inter = split.train.interactions
    preds = []
    for domain in split.train.domains:
        part = inter[inter["domain"] == split.train.info.domain_index(domain)]
        scores = model.score(Query(torch.from_numpy(part["user"].to_numpy(np.int64))), domain)
        local = part["item"].to_numpy() - split.train.domain_items(domain).start
        preds.append(scores[torch.arange(len(part)), torch.from_numpy(local)].numpy()
                     - part["rating"].to_numpy())
    train_rmse = float(np.sqrt(np.mean(np.concatenate(preds) ** 2)))
    assert train_rmse < 0.1, train_rmse
    result = evaluate_ratings(model, split)
    rating_std = float(split.truth("test")["rating"].std())
    rmse = result.value("rmse")
    assert np.isclose(rmse, np.sqrt(result.per_user["mse"].mean()))
    assert rmse < 0.5 * rating_std, (rmse, rating_std)  # cold users: transfer via shared U


def test_mse_needs_ratings() -> None:
    data = make_two_domain(n_users=40, n_items=(20, 20), n_overlap=30)
    if data.interactions["rating"].notna().any():
        pytest.skip("synthetic data has ratings")
    options = FitOptions(target="target", sources=("source",), progress=False)
    with pytest.raises(DataError, match="explicit ratings"):
        CMF(objective="mse", epochs=1).fit(data, options)


def test_cold_users_trained_by_source_only() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    options = FitOptions(target="target", sources=("source",), progress=False)
    model = CMF(**{**FAST, "epochs": 5})
    model.train_data, model.options = split.train, options
    torch.manual_seed(0)
    model.build(split.train, options)
    before = model.user_embedding.weight.detach().clone()
    model = CMF(**{**FAST, "epochs": 5, "domain_weights": {"source": 0.0}}).fit(
        split.train, options)
    cold = np.unique(split.truth("test")["user"].to_numpy())
    # with a zero source weight, nothing but the (zero-weighted) source moves cold users
    np.testing.assert_allclose(model.user_embedding.weight[cold].detach().numpy(),
                               before[cold].numpy(), atol=1e-6)


def test_target_only_mf_gives_cold_users_the_item_baseline() -> None:
    data = _build(_low_rank(seed=1))
    split = cold_start_users(data, "source", "target", 0.3, seed=0)
    options = FitOptions(target="target", sources=("source",), progress=False)
    fit = dict(objective="mse", embedding_size=8, epochs=150, learning_rate=2e-2,
               weight_decay=0.0, batch_size=1024)
    target_only = CMF(train_on="target", **fit).fit(split.train, options)
    cold = np.unique(split.truth("test")["user"].to_numpy())
    scores = target_only.score(Query(torch.from_numpy(cold)), "target")
    items = split.train.domain_items("target")
    baseline = (target_only.item_bias.weight[items, 0]
                + target_only.domain_mean[split.train.info.domain_index("target")])
    # no target history, no signal: every cold user gets the item baseline b_i + mu
    torch.testing.assert_close(scores, baseline.expand_as(scores))
    with pytest.raises(DataError, match="train_on='target'"):
        target_only.score(Query(torch.from_numpy(cold)), "source")
    # the shared user space carries the source over: far lower error for the same cold users
    collective = CMF(**fit).fit(split.train, options)
    rmse_target = evaluate_ratings(target_only, split).value("rmse", group="cold")
    rmse_all = evaluate_ratings(collective, split).value("rmse", group="cold")
    assert rmse_all < 0.5 * rmse_target, (rmse_all, rmse_target)
