"""Shared set-up of the ranker's opt-in feature-group tests: fit a small ranker with some
groups on the synthetic cold-start split, and check a restore scores identically."""

from typing import Any

import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.ranker import Ranker
from crossrec.testing.contract import SOURCE, TARGET
from crossrec.testing.synthetic import make_two_domain

GROUP_SPEC = {"candidates": [{"name": "itemknn", "train_on": "all", "n": 30},
                             {"name": "pop", "n": 30}],
              "n_estimators": 20, "episode_ratio": 0.5, "negatives": 40, "min_child_samples": 5,
              "factors": 8}


class GroupFit:
    """A ranker fitted with ``features``; ``x`` are the feature rows of users 0-11."""

    def __init__(self, features: list[str]) -> None:
        self.split = cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)
        self.options = FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)
        self.spec: dict[str, Any] = {**GROUP_SPEC, "features": features}
        self.model = Ranker(self.spec).fit(self.split.train, self.options)
        self.names = self.model.features.names(self.split.train)
        self.users = torch.arange(12)
        self.x = self.model._candidates(self.split.train, Query(self.users), TARGET)[1]

    def column(self, name: str) -> Any:
        return self.x[:, self.names.index(name)]

    def assert_restore_scores_the_same(self) -> None:
        restored = Ranker(self.spec).restore(self.split.train, self.options, self.model.state())
        torch.testing.assert_close(restored.score(Query(self.users), TARGET),
                                   self.model.score(Query(self.users), TARGET))


@pytest.fixture(scope="module")
def group_fit():
    """``group_fit(features)``: a ``GroupFit``."""
    return GroupFit
