"""Pop: the contract, and scores equal to training counts."""

import numpy as np
import torch

from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.pop import Pop
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract


class TestPop(RecommenderContract):
    model_cls = Pop
    uses_history = False
    history_is_exact = True


class TestPopAll(RecommenderContract):
    model_cls = Pop
    fast_config = {"train_on": "all"}
    uses_history = False
    history_is_exact = True


def test_scores_are_training_counts() -> None:
    data = make_two_domain(n_users=60, n_items=(20, 10), n_overlap=40)
    model = Pop().fit(data, FitOptions(target="target", progress=False))
    scores = model.score(Query(torch.tensor([0, 5])), "target")
    counts = np.bincount(data.domain_interactions("target")["item"].to_numpy()
                         - data.domain_items("target").start, minlength=10)
    np.testing.assert_array_equal(scores[0].numpy(), counts)
    np.testing.assert_array_equal(scores[1].numpy(), counts)
