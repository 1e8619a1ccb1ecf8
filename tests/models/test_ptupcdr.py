"""PTUPCDR: the contract (it must transfer), attention, bridge shapes, cold/warm factors, mse."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.cross.ptupcdr import PTUPCDR, MetaNetwork
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract

FAST = {"embedding_size": 16, "mf_epochs": 25, "meta_epochs": 25, "batch_size": 256,
        "mf_learning_rate": 0.02, "meta_learning_rate": 0.005}
OPTIONS = FitOptions(target="target", sources=("source",), progress=False)


class TestPTUPCDR(RecommenderContract):
    model_cls = PTUPCDR
    fast_config = FAST
    transfers = True


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    return PTUPCDR(FAST).fit(split.train, OPTIONS)


def test_attention_sums_to_one_and_ignores_padding() -> None:
    torch.manual_seed(0)
    net = MetaNetwork(4, 8)
    items = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    w = net.attention_weights(items, mask)
    assert w.shape == (3, 5)
    torch.testing.assert_close(w.sum(1), torch.tensor([1.0, 1.0, 0.0]))
    assert (w[~mask] == 0).all() and (w[0, :3] > 0).all()
    changed = items.clone()
    changed[0, 3:] = 100.0  # padding content must not matter
    torch.testing.assert_close(net.attention_weights(changed, mask), w)
    torch.testing.assert_close(net(changed, mask), net(items, mask))


def test_bridge_shape() -> None:
    net = MetaNetwork(6, 10)
    bridge = net(torch.randn(4, 3, 6), torch.ones(4, 3, dtype=torch.bool))
    assert bridge.shape == (4, 6, 6)


def test_stages_freeze_and_domains(fitted) -> None:
    stages = fitted.default_stages(("source",), "target")
    assert [s.name for s in stages] == ["source_mf", "target_mf", "meta"]
    assert [s.trainable for s in stages] == [("source_",), ("target_",), ("meta",)]
    assert [s.domains for s in stages] == [("source",), ("target",), ("target",)]
    assert [s.validate for s in stages] == [False, False, True]


def test_cold_users_transferred_warm_users_own(fitted, split) -> None:
    train = split.train
    cold = np.unique(split.truth("test")["user"].to_numpy())[:5]
    warm = train.domain_users("target")[:5]
    users = torch.from_numpy(np.concatenate([cold, warm]).astype(np.int64))
    got = fitted.user_vectors(Query(users), "target")
    history, _, _ = fitted._user_data(train)
    with torch.no_grad():
        transferred = fitted.transfer(fitted.source_user(users), history[users])
        own = fitted.target_user(users)
    torch.testing.assert_close(got[:5], transferred[:5])
    torch.testing.assert_close(got[5:], own[5:])
    assert not torch.allclose(got[5:], transferred[5:])
    everyone = PTUPCDR({**FAST, "transfer_warm": True}).restore(train, OPTIONS, fitted.state())
    torch.testing.assert_close(everyone.user_vectors(Query(users), "target"), transferred)


def test_history_most_recent_source_items(fitted, split) -> None:
    train = split.train
    history, has_source, _ = fitted._user_data(train)
    src = train.domain_items("source")
    assert ((history == -1) | ((history >= src.start) & (history < src.stop))).all()
    inter = train.interactions
    user = int(np.flatnonzero(has_source.numpy())[0])
    mine = inter[(inter["user"] == user) & (inter["domain"] == 0)]
    newest = mine.sort_values("timestamp", ascending=False, kind="stable")["item"].to_numpy()
    n = min(len(newest), fitted.config.max_history)
    np.testing.assert_array_equal(history[user, :n].numpy(), newest[:n])


def test_history_query_folds_source_items(fitted, split) -> None:
    src = split.train.domain_items("source")
    items = [src.start + 3, src.start + 7]
    history = torch.tensor([items + [-1], [-1] + items])  # padding position does not matter
    scores = fitted.score(Query(torch.tensor([-1, -1]), history), "target")
    torch.testing.assert_close(scores[0], scores[1])
    expected = fitted.transfer(fitted.source_item.weight[items].mean(0, keepdim=True),
                               torch.tensor([items + [-1] * (fitted.config.max_history - 2)]))
    tgt = split.train.domain_items("target")
    torch.testing.assert_close(scores[:1], expected @ fitted.target_item.weight[tgt].T)


def test_mse_objective_gives_ratings() -> None:
    from crossrec.eval.ranking import evaluate_ratings

    data = make_two_domain(n_users=150, n_items=(60, 50), n_overlap=120)
    inter = data.interactions.copy()
    rng = np.random.default_rng(0)
    inter["rating"] = rng.integers(1, 6, len(inter)).astype(np.float64)
    split = cold_start_users(data.with_interactions(inter), "source", "target", 0.3, seed=0)
    model = PTUPCDR({**FAST, "objective": "mse", "mf_epochs": 5, "meta_epochs": 3}).fit(
        split.train, OPTIONS)
    result = evaluate_ratings(model, split)
    assert np.isfinite(result.per_user["pred"]).all()
    mae, rmse = result.value("mae", group="cold"), result.value("rmse", group="cold")
    assert 0 < mae <= rmse < np.sqrt(11.0)  # better than predicting 0 (E[r²] = 11)
    # ratings are noise around 3 (variance 2): predictions sit on the training mean, so the
    # error is close to the rating spread, not to predicting 0
    assert abs(result.per_user["pred"].mean() - 3.0) < 0.3
    assert rmse < 1.25 * np.sqrt(2.0)


def test_mse_without_ratings_raises(split) -> None:
    from crossrec.errors import DataError

    with pytest.raises(DataError, match="explicit ratings"):
        PTUPCDR({**FAST, "objective": "mse"}).fit(split.train, OPTIONS)


def test_only_meta_stage_is_validated(split) -> None:
    calls = []
    options = FitOptions(target="target", sources=("source",), progress=False,
                         validate=lambda m: calls.append(1) or float(len(calls) == 1))
    model = PTUPCDR({**FAST, "mf_epochs": 2, "meta_epochs": 4, "patience": 2}).fit(
        split.train, options)
    source_mf, target_mf, meta = model.training_summary.stages
    assert source_mf.best_valid is None and target_mf.best_valid is None
    assert (source_mf.epochs, target_mf.epochs) == (2, 2)
    assert len(calls) == meta.epochs == 3 and meta.best_epoch == 1 and meta.stopped_early
