"""Transition model: the contract, counts by hand, and the sequential known answer."""

import numpy as np
import pandas as pd
import torch

from crossrec.data import DatasetBuilder
from crossrec.eval.next_item import evaluate_next_item
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.pop import Pop
from crossrec.models.baselines.transition import Transition, transition_matrix
from crossrec.testing.contract import RecommenderContract
from crossrec.testing.sequential import last_item_split, make_chain


class TestTransition(RecommenderContract):
    model_cls = Transition
    transfers = True  # interleaved source/target sequences link the domains


def test_counts_by_hand() -> None:
    # user 0: 0 1 2; user 1: 2 0 (no pair across users)
    indptr, items = np.array([0, 3, 5]), np.array([0, 1, 2, 2, 0])
    c = transition_matrix(indptr, items, 3, window=2, gap_decay=0.5, backward=0.25).toarray()
    expected = np.zeros((3, 3))
    for a, b, w in [(0, 1, 1), (1, 2, 1), (0, 2, 0.5), (2, 0, 1)]:
        expected[a, b] += w
        expected[b, a] += 0.25 * w
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(c, expected, rtol=1e-6)


def test_scores_recency_weighted() -> None:
    frame = pd.DataFrame({"user_id": ["u", "u", "v", "v"], "item_id": ["x", "y", "y", "z"],
                          "timestamp": [1, 2, 1, 2]})
    data = DatasetBuilder("t").add_interactions(frame, domain="d").build()
    model = Transition(window=1, backward=0.0, alpha=0.0, beta=0.0, shrink=0.0,
                       history_decay=0.5, pop_weight=0.0).fit(data, FitOptions(target="d"))
    x, y, z = data.item_index("d", ["x", "y", "z"])
    scores = model.score(Query(torch.tensor([-1]), torch.tensor([[y, x]])), "d")[0]
    # latest x (weight 1) -> y; older y (weight 0.5) -> z
    assert scores[y] == 1.0 and scores[z] == 0.5 and scores[x] == 0.0


def test_next_item_known_answer() -> None:
    split = last_item_split(make_chain())
    options = FitOptions(target="b", progress=False)
    # the sequential setting: forward transitions only, the latest item weighs most
    model = Transition(window=2, gap_decay=0.5, backward=0.0, history_decay=0.5)
    ours = evaluate_next_item(model.fit(split.train, options), split, candidates="all",
                              ks=(1, 10), metrics=("hr",))
    pop = evaluate_next_item(Pop().fit(split.train, options), split, candidates="all",
                             ks=(1, 10), metrics=("hr",))
    assert ours.value("hr@1") >= 0.9
    assert ours.value("hr@10") >= pop.value("hr@10") + 0.5
