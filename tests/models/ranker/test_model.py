"""Ranker: the contract, episodes without leakage, a text-only known answer, bundle round trip."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.ranker import Ranker
from crossrec.testing.contract import SOURCE, TARGET, RecommenderContract
from crossrec.testing.synthetic import make_two_domain

FAST = {"candidates": [{"name": "itemknn", "train_on": "all", "n": 30}, {"name": "pop", "n": 30}],
        "n_estimators": 40, "episode_ratio": 0.5, "negatives": 40, "min_child_samples": 5,
        "factors": 8}


class TestRanker(RecommenderContract):
    model_cls = Ranker
    fast_config = FAST
    transfers = True
    min_margin = 0.05
