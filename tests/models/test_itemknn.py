"""ItemKNN: the contract for both catalogues, and similarities computed by hand."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from crossrec.data import DatasetBuilder
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.itemknn import ItemKNN, item_similarity
from crossrec.testing.contract import RecommenderContract


class TestItemKNNTarget(RecommenderContract):
    model_cls = ItemKNN
    fast_config = {"train_on": "target"}
    scores_every_domain = False
    history_is_exact = True


class TestItemKNNAll(RecommenderContract):
    model_cls = ItemKNN
    fast_config = {"train_on": "all"}
    transfers = True
    history_is_exact = True


# users x items: u0 {0, 1}, u1 {0, 1, 2}, u2 {2}: every item has 2 users
X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=np.float32))


@pytest.mark.parametrize(("shrink", "expected"), [
    (0.0, [[0, 1, 0.5], [1, 0, 0.5], [0.5, 0.5, 0]]),  # |Ui ∩ Uj| / (sqrt 2 * sqrt 2)
    (1.0, [[0, 2 / 3, 1 / 3], [2 / 3, 0, 1 / 3], [1 / 3, 1 / 3, 0]]),  # ... / (2 + 1)
])
def test_similarity_by_hand(shrink: float, expected: list) -> None:
    sim = item_similarity(X, slice(0, 3), neighbors=10, shrink=shrink)
    np.testing.assert_allclose(sim.toarray(), np.array(expected), rtol=1e-6)


def test_similarity_column_block_and_pruning() -> None:
    block = item_similarity(X, slice(1, 3), neighbors=10, shrink=0.0)
    np.testing.assert_allclose(block.toarray(), [[1, 0.5], [0, 0.5], [0.5, 0]], rtol=1e-6)
    top1 = item_similarity(X, slice(0, 3), neighbors=1, shrink=0.0).toarray()
    # item 2 ties between items 0 and 1: the lower column wins
    np.testing.assert_allclose(top1, [[0, 1, 0], [1, 0, 0], [0.5, 0, 0]], rtol=1e-6)


def test_scores_are_history_times_similarity() -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b", "b", "c"],
                          "item_id": ["x", "y", "x", "y", "z", "z"]})
    data = DatasetBuilder("hand").add_interactions(frame, domain="d").build()
    model = ItemKNN(shrink=0.0).fit(data, FitOptions(target="d", progress=False))
    scores = model.score(Query(torch.tensor([0, 2])), "d").numpy()
    # user a: history {x, y} -> [s(x,x)+s(y,x), s(x,y)+s(y,y), s(x,z)+s(y,z)] = [1, 1, 1]
    np.testing.assert_allclose(scores, [[1, 1, 1], [0.5, 0.5, 0]], rtol=1e-6)
