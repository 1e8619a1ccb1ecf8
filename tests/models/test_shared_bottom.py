"""Shared-bottom: the contract (it must transfer), towers per domain, domain weights, dropout."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.errors import DataError
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.itemknn import ItemKNN
from crossrec.models.cross.shared_bottom import SharedBottom
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k

FAST = {"epochs": 20}
OPTIONS = FitOptions(target="target", sources=("source",), progress=False)


class TestSharedBottom(RecommenderContract):
    model_cls = SharedBottom
    fast_config = FAST
    transfers = True
    history_is_exact = True  # mean pooling: the same items give the same user


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    return SharedBottom(FAST).fit(split.train, OPTIONS)


def test_beats_target_only_baseline_and_history_carries_cold_users(fitted, split) -> None:
    target_only = ItemKNN(train_on="target").fit(split.train, OPTIONS)
    before = recall_at_k(fitted, split)
    assert before >= recall_at_k(target_only, split) + 0.2
    # each cold user gets another cold user's (source) history: the transfer must break
    shuffled = SharedBottom(FAST).restore(split.train, OPTIONS, fitted.state())
    cold = torch.from_numpy(np.unique(split.truth("test")["user"].to_numpy()))
    perm = cold[torch.randperm(len(cold), generator=torch.Generator().manual_seed(0))]
    shuffled.history[cold] = fitted.history[perm]
    assert recall_at_k(shuffled, split) < before - 0.15


def test_one_tower_per_domain_scores_each_domain(fitted, split) -> None:
    assert len(fitted.towers) == len(split.train.domains)
    (stage,) = fitted.default_stages(("source",), "target")
    assert stage.domains == () and stage.validate  # every domain at once, epochs on validation
    users = torch.from_numpy(split.train.domain_users("source")[:4].astype(np.int64))
    with torch.no_grad():
        history = fitted.history[users]
        pooled = torch.stack([fitted.item_input(h[h >= 0]).mean(0) for h in history])
        shared = fitted.bottom(pooled)
        for name in ("source", "target"):
            tower = fitted.towers[split.train.info.domain_index(name)]
            torch.testing.assert_close(fitted.user_vectors(Query(users), name), tower(shared))


def test_zero_domain_weight_leaves_that_tower_untrained(split) -> None:
    torch.manual_seed(0)
    model = SharedBottom({**FAST, "epochs": 2, "domain_weights": {"source": 0.0}})
    model.train_data, model.options = split.train, OPTIONS
    torch.manual_seed(OPTIONS.seed)
    model.build(split.train, OPTIONS)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.fit(split.train, OPTIONS)  # fit re-seeds and rebuilds: same initial weights
    source, target = (split.train.info.domain_index(d) for d in ("source", "target"))
    for k, v in model.state_dict().items():
        if k.startswith(f"towers.{source}."):
            torch.testing.assert_close(v, initial[k])
        if k.startswith(f"towers.{target}.") and k.endswith("weight"):
            assert not torch.allclose(v, initial[k])


def test_domain_dropout_hides_the_positives_domain(split) -> None:
    model = SharedBottom({**FAST, "domain_dropout": 0.5, "batch_size": 256})
    model.train_data, model.options = split.train, OPTIONS
    model.build(split.train, OPTIONS)
    (stage,) = model.default_stages(("source",), "target")
    stage.batch_size = 256
    dropped = torch.cat([d for _, d in model.batches(split.train, stage,
                                                     np.random.default_rng(0))])
    assert len(dropped) == len(split.train.interactions)
    assert 0.45 < dropped.float().mean() < 0.55
    none = SharedBottom({**FAST, "domain_dropout": 0.0})
    none.train_data, none.options = split.train, OPTIONS
    none.build(split.train, OPTIONS)
    assert not any(d.any() for _, d in none.batches(split.train, stage,
                                                    np.random.default_rng(0)))


def test_user_embedding_inputs(split) -> None:
    for user_input in ("embedding", "both"):
        model = SharedBottom({**FAST, "epochs": 2, "user_input": user_input}).fit(
            split.train, OPTIONS)
        assert model.user_embedding is not None
        scores = model.score(Query(torch.tensor([-1, 0]), torch.tensor([[0, -1], [0, -1]])),
                             "target")
        assert torch.isfinite(scores).all()


def test_unknown_domain_weight_raises(split) -> None:
    with pytest.raises(DataError, match="unknown domains"):
        SharedBottom({**FAST, "domain_weights": {"books": 2.0}}).fit(split.train, OPTIONS)
