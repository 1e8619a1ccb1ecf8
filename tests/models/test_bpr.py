"""BPR-MF: the contract for both catalogues, negative sampling and stage domains."""

import numpy as np
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
