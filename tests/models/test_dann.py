"""DANN: the contract (it must transfer), both views, the transfer and the alignment paths."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.errors import DataError
from crossrec.models.alignment import mmd
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.itemknn import ItemKNN
from crossrec.models.cross.dann import DANN
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k

FAST = {"epochs": 20, "alignment": "mmd", "alignment_weight": 0.01}
OPTIONS = FitOptions(target="target", sources=("source",), progress=False)


class TestDANN(RecommenderContract):
    model_cls = DANN
    fast_config = FAST
    transfers = True
    scores_every_domain = False
    history_is_exact = True  # the same items give the same user


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    return DANN(FAST).fit(split.train, OPTIONS)


def _cold(split) -> np.ndarray:
    return np.unique(split.truth("test")["user"].to_numpy())


def test_beats_target_only_baseline_on_cold_users(fitted, split) -> None:
    target_only = ItemKNN(train_on="target").fit(split.train, OPTIONS)
    assert recall_at_k(fitted, split) >= recall_at_k(target_only, split) + 0.2
    adversarial = DANN({**FAST, "alignment": "adversarial", "alignment_weight": 0.1,
                        "objective": "softmax"}).fit(split.train, OPTIONS)
    assert adversarial.aligner.classifier is not None
    assert recall_at_k(adversarial, split) >= recall_at_k(target_only, split) + 0.2


def test_cold_users_are_carried_by_their_source_history(fitted, split) -> None:
    """Giving each cold user another cold user's source history must break the transfer."""
    before = recall_at_k(fitted, split)
    shuffled = DANN(FAST).restore(split.train, OPTIONS, fitted.state())
    cold = torch.from_numpy(_cold(split))
    perm = cold[torch.randperm(len(cold), generator=torch.Generator().manual_seed(0))]
    shuffled.source_history[cold] = fitted.source_history[perm]
    after = recall_at_k(shuffled, split)
    assert after < before - 0.15, (before, after)


def test_single_target_stage_validated(fitted) -> None:
    (stage,) = fitted.default_stages(("source",), "target")
    assert stage.name == "train" and stage.domains == ("target",) and stage.validate
    assert stage.trainable == ()  # encoder, embeddings and the domain classifier all train


def test_warm_users_use_target_history_cold_users_source(fitted, split) -> None:
    train = split.train
    cold = torch.from_numpy(_cold(split)[:5])
    warm = torch.from_numpy(train.domain_users("target")[:5].astype(np.int64))
    users = torch.cat([cold, warm])
    got = fitted.user_vectors(Query(users))
    with torch.no_grad():
        z_src, n_src = fitted.represent(fitted.source_history[users])
        z_tgt, n_tgt = fitted.represent(fitted.target_history[users])
    assert (n_tgt[:5] == 0).all() and (n_src[:5] > 0).all() and (n_tgt[5:] > 0).all()
    torch.testing.assert_close(got[:5], z_src[:5])
    torch.testing.assert_close(got[5:], z_tgt[5:])


def test_history_query_matches_training_history(fitted, split) -> None:
    """A cold user's source items as ``Query.history`` (any padding, mixed order with nothing
    else) score like the user; adding a target item switches to the target view."""
    user = int(_cold(split)[0])
    items = fitted.source_history[user]
    items = items[items >= 0]
    padded = torch.cat([torch.tensor([-1, -1]), items]).unsqueeze(0)
    by_user = fitted.score(Query(torch.tensor([user])), "target")
    torch.testing.assert_close(fitted.score(Query(torch.tensor([-1]), padded), "target"),
                               by_user)
    tgt = split.train.domain_items("target").start
    warm = torch.cat([items, torch.tensor([tgt])]).unsqueeze(0)
    expected = fitted.represent(torch.tensor([[tgt]]))[0]
    torch.testing.assert_close(fitted.user_vectors(Query(torch.tensor([-1]), warm)), expected)


def test_positive_left_out_of_target_view() -> None:
    from crossrec.models.history import masked_mean

    table = torch.nn.Embedding(10, 2)
    history = torch.tensor([[1, 2, 3], [-1, 4, -1], [-1, -1, 5]])
    mean, counts = masked_mean(table, history, drop=torch.tensor([2, 7, 5]))
    assert counts.tolist() == [2, 1, 0]
    with torch.no_grad():
        torch.testing.assert_close(mean[0], table.weight[[1, 3]].mean(0))
        torch.testing.assert_close(mean[1], table.weight[4])
        torch.testing.assert_close(mean[2], torch.zeros(2))


def test_select_history_keeps_last_items_of_domains() -> None:
    from crossrec.models.history import select_history

    item_domain = torch.tensor([0, 0, 0, 1, 1, 0])
    history = torch.tensor([[0, 3, 1, 4, 2, -1], [-1, -1, 3, -1, -1, 4], [5, -1, -1, -1, -1, -1]])
    out = select_history(history, item_domain, torch.tensor([0]), max_len=2)
    assert out.tolist() == [[1, 2], [-1, -1], [-1, 5]]
    out = select_history(history, item_domain, torch.tensor([0, 1]), max_len=3)
    assert out.tolist() == [[1, 4, 2], [-1, 3, 4], [-1, -1, 5]]


def test_alignment_reduces_the_distribution_gap(split) -> None:
    """MMD between source-derived and target-derived representations is smaller when the
    alignment term trains (fails if the alignment loss were skipped)."""
    gaps = {}
    for kind in ("none", "mmd"):
        model = DANN({**FAST, "epochs": 10, "alignment": kind, "alignment_weight": 1.0}).fit(
            split.train, OPTIONS)
        with torch.no_grad():
            src = model.source_history[(model.source_history[:, -1] >= 0)]
            tgt = model.target_history[(model.target_history[:, -1] >= 0)]
            z_src, z_tgt = model.represent(src)[0], model.represent(tgt)[0]
        gaps[kind] = float(mmd(z_src, z_tgt, model.config.mmd_bandwidths))
    assert gaps["mmd"] < 0.5 * gaps["none"], gaps


def test_scoring_a_source_domain_or_without_sources_raises(fitted, split) -> None:
    with pytest.raises(DataError, match="cannot score 'source'"):
        fitted.score(Query(torch.tensor([0])), "source")
    only_target = FitOptions(target="target", sources=("target",), progress=False)
    with pytest.raises(DataError, match="source domains other than the target"):
        DANN(FAST).fit(split.train, only_target)
