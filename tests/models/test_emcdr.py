"""EMCDR: the contract, a known linear map recovered, cold users mapped and warm users kept."""

import numpy as np
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.cross.emcdr import EMCDR
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract
from crossrec.training.trainer import Trainer

FAST = {"embedding_size": 32, "epochs": 10, "batch_size": 512, "learning_rate": 3e-2,
        "mapping_epochs": 20, "mapping_learning_rate": 1e-2, "mapping_batch_size": 1024}
OPTIONS = FitOptions(target="target", sources=("source",), progress=False)


class TestEMCDR(RecommenderContract):
    model_cls = EMCDR
    fast_config = FAST
    transfers = True


def _built(**config) -> tuple[EMCDR, object]:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    model = EMCDR(**config)
    model.train_data, model.options = split.train, OPTIONS
    torch.manual_seed(0)
    model.build(split.train, OPTIONS)
    return model, split


def test_stages_are_typed_and_scoped() -> None:
    model, split = _built(**FAST)
    stages = model.default_stages(("source",), "target")
    assert [s.name for s in stages] == ["source_mf", "target_mf", "mapping"]
    assert stages[0].domains == ("source",) and stages[0].trainable == ("source_",)
    assert stages[1].domains == ("target",) and stages[1].trainable == ("target_",)
    assert stages[2].trainable == ("mapping",)
    assert not stages[0].validate and not stages[1].validate and stages[2].validate
    rng = np.random.default_rng(0)
    for stage, domain in zip(stages[:2], (0, 1), strict=True):
        items = np.concatenate([b.items.numpy() for b in model.batches(split.train, stage, rng)])
        assert set(split.train.item_domain[items].tolist()) == {domain}
    users = np.concatenate([b.numpy() for b in model.batches(split.train, stages[2], rng)])
    overlap = split.train.overlap_users("source", "target")
    np.testing.assert_array_equal(np.sort(users), overlap)


def test_linear_mapping_recovers_known_map() -> None:
    d = 8
    model, split = _built(embedding_size=d, mapping="linear")
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(d, d, generator=gen) / d**0.5
    with torch.no_grad():
        model.source_user.weight.copy_(torch.randn(split.train.n_users, d, generator=gen))
        model.target_user.weight.copy_(model.source_user.weight @ a.T)
    before = model.target_user.weight.detach().clone()
    (stage,) = [s for s in model.default_stages(("source",), "target") if s.name == "mapping"]
    stage.epochs, stage.learning_rate, stage.batch_size = 150, 5e-2, 1024
    Trainer(OPTIONS).fit(model, split.train, [stage])
    torch.testing.assert_close(model.mapping.weight.detach(), a, atol=2e-2, rtol=0)
    torch.testing.assert_close(model.mapping.bias.detach(), torch.zeros(d), atol=2e-2, rtol=0)
    torch.testing.assert_close(model.target_user.weight.detach(), before)  # frozen


def test_cold_users_mapped_warm_users_kept() -> None:
    train = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0).train
    model = EMCDR(**FAST).fit(train, OPTIONS)
    warm = torch.from_numpy(train.domain_users("target")[:10].astype(np.int64))
    cold_np = np.setdiff1d(train.domain_users("source"), train.domain_users("target"))[:10]
    cold = torch.from_numpy(cold_np.astype(np.int64))
    with torch.no_grad():
        torch.testing.assert_close(model.target_vectors(Query(warm)), model.target_user(warm))
        torch.testing.assert_close(model.target_vectors(Query(cold)),
                                   model.mapping(model.source_user(cold)))
        # a history with target items folds in target factors; source-only is mapped
        tgt = train.domain_items("target")
        src = train.domain_items("source")
        hist = torch.tensor([[tgt.start, tgt.start + 1], [src.start, -1]])
        vec = model.target_vectors(Query(torch.tensor([-1, -1]), hist))
        torch.testing.assert_close(vec[0], model.target_item.weight[tgt.start : tgt.start + 2]
                                   .mean(0))
        torch.testing.assert_close(vec[1], model.mapping(model.source_item.weight[src.start]))


def test_shrinkage_blends_own_and_mapped_factor_by_target_count() -> None:
    """(n * own + k * f(src)) / (n + k) for a user with n target rows and a source history."""
    train = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0).train
    model = EMCDR(**FAST).fit(train, OPTIONS)
    both = train.overlap_users("source", "target")[:10]
    users = torch.from_numpy(both.astype(np.int64))
    n = torch.from_numpy(train.user_items("target").getnnz(axis=1)[both].astype(np.float32))
    assert (n > 0).all()
    with torch.no_grad():
        own, mapped = model.target_user(users), model.mapping(model.source_user(users))
        model.shrink.fill_(3.0)
        expected = (n[:, None] * own + 3.0 * mapped) / (n[:, None] + 3.0)
        torch.testing.assert_close(model.target_vectors(Query(users)), expected)
        # a folded-in history: n = its target items, the source mean through the mapping
        tgt, src = train.domain_items("target"), train.domain_items("source")
        hist = torch.tensor([[tgt.start, src.start]])
        vec = model.target_vectors(Query(torch.tensor([-1]), hist))[0]
        blend = (model.target_item.weight[tgt.start]
                 + 3.0 * model.mapping(model.source_item.weight[src.start])) / 4.0
        torch.testing.assert_close(vec, blend)
        model.shrink.fill_(0.0)  # the paper: own factor as soon as n > 0
        torch.testing.assert_close(model.target_vectors(Query(users)), own)


def test_shrinkage_is_chosen_on_validation() -> None:
    """With several k the validation callback picks one; ties go to the smaller k."""
    train = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0).train
    seen: list[float] = []

    def validate(model: EMCDR) -> float:
        seen.append(float(model.shrink))
        return -abs(float(model.shrink) - 5.0)  # best at k = 5

    options = FitOptions(target="target", sources=("source",), progress=False,
                         validate=validate)
    model = EMCDR(**FAST, shrinkage=[0.0, 5.0, 20.0]).fit(train, options)
    assert float(model.shrink) == 5.0 and model.fit_report["shrinkage"] == 5.0
    assert {0.0, 5.0, 20.0} <= set(seen)
