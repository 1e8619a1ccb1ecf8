"""BPR-MF: the contract for both catalogues, negative sampling and stage domains."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Stage
from crossrec.models.baselines.bpr import BPR
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract


class TestBPRTarget(RecommenderContract):
    model_cls = BPR
    fast_config = {"train_on": "target"}  # defaults: 60 Adam steps here
    scores_every_domain = False


class TestBPRAll(RecommenderContract):
    model_cls = BPR
    fast_config = {"train_on": "all"}
    transfers = True


def _model_and_data(train_on: str):
    data = make_two_domain(n_users=80, n_items=(60, 50), n_overlap=60)
    model = BPR(train_on=train_on, n_negatives=3)
    options = FitOptions(target="target", sources=("source",), progress=False)
    model.train_data, model.options = data, options
    model.build(data, options)
    return model, data


def test_negatives_same_domain_and_not_positive() -> None:
    model, data = _model_and_data("all")
    rng = np.random.default_rng(0)
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    neg = model.sampler.sample(data, users, items, model.config.n_negatives, rng)
    assert neg.shape == (len(users), 3)
    assert (data.item_domain[neg] == data.item_domain[items][:, None]).all()
    positives = set(zip(users.tolist(), items.tolist(), strict=True))
    clashes = sum((u, j) in positives for u, row in zip(users, neg, strict=True) for j in row)
    assert clashes == 0


def test_stages_follow_train_on() -> None:
    for train_on, domains in (("target", {1}), ("all", {0, 1})):
        model, data = _model_and_data(train_on)
        (stage,) = model.default_stages(("source",), "target")
        assert isinstance(stage, Stage)
        seen = set()
        for batch in model.batches(data, stage, np.random.default_rng(0)):
            seen |= set(data.item_domain[batch.items.numpy()].tolist())
        assert seen == domains


def test_target_only_leaves_cold_users_at_init() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    options = FitOptions(target="target", sources=("source",), progress=False)
    model = BPR(train_on="target", epochs=2)
    model.train_data, model.options = split.train, options
    torch.manual_seed(options.seed)  # as fit() does before build()
    model.build(split.train, options)
    before = model.user_embedding.weight.detach().clone()
    model = BPR(train_on="target", epochs=2).fit(split.train, options)
    cold = np.unique(split.truth("test")["user"].to_numpy())
    np.testing.assert_array_equal(model.user_embedding.weight[cold].detach().numpy(),
                                  before[cold].numpy())


class TestBPRSparse(RecommenderContract):
    """Row-sparse gradients and lazy Adam (``sparse_updates``): the same contract."""

    model_cls = BPR
    fast_config = {"train_on": "all", "sparse_updates": True}
    transfers = True


class TestBPRBiasCatalogue(RecommenderContract):
    """Item bias and negatives from the whole catalogue (Rendle's and Cornac's BPR)."""

    model_cls = BPR
    fast_config = {"train_on": "all", "item_bias": True, "negatives": "catalogue"}
    transfers = True


class TestBPRSGD(RecommenderContract):
    """Plain SGD with hand-written gradients, at Cornac's settings."""

    model_cls = BPR
    fast_config = {"train_on": "all", "optimizer": "sgd", "learning_rate": 0.05,
                   "weight_decay": 5e-4, "init_std": 0.01, "item_bias": True,
                   "negatives": "catalogue"}
    transfers = True


class TestBPRSGDTarget(RecommenderContract):
    model_cls = BPR
    fast_config = {"train_on": "target", "optimizer": "sgd", "learning_rate": 0.05}
    scores_every_domain = False


def test_catalogue_negatives_span_the_catalogue_and_avoid_positives() -> None:
    from crossrec.models.baselines.bpr import CatalogueSampler

    data = make_two_domain(n_users=80, n_items=(60, 50), n_overlap=60)
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    for span in (slice(0, data.n_items), data.domain_items("target")):
        neg = CatalogueSampler(span).sample(data, users, items, 4, np.random.default_rng(0))
        assert neg.min() >= span.start and neg.max() < span.stop
        assert len(np.unique(data.item_domain[neg])) == len(np.unique(data.item_domain[
            np.arange(span.start, span.stop)]))
        positives = set(zip(users.tolist(), items.tolist(), strict=True))
        assert not any((u, j) in positives for u, row in zip(users, neg, strict=True)
                       for j in row)


@pytest.mark.parametrize(("bias", "k", "wd"), [(False, 1, 1e-3), (True, 3, 1e-3), (True, 1, 0.0)])
def test_sgd_step_is_the_gradient_of_the_loss(bias: bool, k: int, wd: float) -> None:
    """The hand-written update equals ``-lr * len(batch) * grad(loss)`` from autograd."""
    from crossrec.models.factor import FactorBatch

    data = make_two_domain(n_users=40, n_items=(30, 20), n_overlap=30)
    model = BPR(train_on="all", item_bias=bias, n_negatives=k, weight_decay=wd,
                optimizer="sgd")
    options = FitOptions(target="target", sources=("source",), progress=False)
    model.train_data, model.options = data, options
    torch.manual_seed(0)
    model.build(data, options)
    if bias:
        torch.nn.init.normal_(model.item_bias.weight, std=0.1)
    g = torch.Generator().manual_seed(1)
    b = 8
    users = torch.randperm(data.n_users, generator=g)[:b]  # no repeated rows: exact
    perm = torch.randperm(data.n_items, generator=g)
    pos, neg = perm[:b], perm[b : b + b * k].view(b, k)
    batch = FactorBatch(users, pos, torch.ones(b), negatives=neg)
    model.zero_grad()
    (model.loss(batch, "train") * b).backward()
    expected = {name: p.detach() - 0.1 * p.grad for name, p in model.named_parameters()}
    model.sgd_step(users, pos, neg, 0.1)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-5, atol=1e-6)


def test_sgd_early_stopping_keeps_the_best_epoch() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    values = iter([0.1, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    kept = {}

    def validate(model: BPR) -> float:
        value = next(values)
        if value == 0.3:
            kept["weights"] = model.item_embedding.weight.detach().clone()
        return value

    options = FitOptions(target="target", sources=("source",), progress=False,
                         validate=validate)
    model = BPR(train_on="all", optimizer="sgd", epochs=8, patience=2).fit(split.train, options)
    (stage,) = model.training_summary.stages
    assert (stage.epochs, stage.best_epoch, stage.best_valid, stage.stopped_early) == \
        (4, 2, 0.3, True)
    torch.testing.assert_close(model.item_embedding.weight.detach(), kept["weights"])
