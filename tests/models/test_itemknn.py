"""ItemKNN: the contract for both catalogues, and similarities computed by hand."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from crossrec.data import DatasetBuilder
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.itemknn import ItemKNN, item_similarity
from crossrec.models.baselines.rp3beta import RP3Beta
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


class TestRP3BetaAll(RecommenderContract):
    model_cls = RP3Beta
    fast_config = {"train_on": "all"}
    transfers = True
    history_is_exact = True


def test_rp3beta_walk_by_hand() -> None:
    # users: u0 {0, 1} (|I| = 2), u1 {0, 1, 2} (3), u2 {2} (1); every item has 2 users
    alpha, beta = 1.0, 0.5
    w = {0: 2.0 ** -alpha, 1: 3.0 ** -alpha, 2: 1.0}
    pop = np.array([2.0, 2.0, 2.0])
    # sum over shared users u of (|U_i| |I_u|)^-alpha / |U_j|^beta, diagonal zero
    ref = np.zeros((3, 3))
    users = {0: [0, 1], 1: [0, 1, 2], 2: [2]}
    for u, items in users.items():
        for i in items:
            for j in items:
                if i != j:
                    ref[i, j] += pop[i] ** -alpha * w[u] / pop[j] ** beta
    sim = item_similarity(X, slice(0, 3), neighbors=10, shrink=0.0, user_power=alpha,
                          row_power=alpha, column_power=beta)
    np.testing.assert_allclose(sim.toarray(), ref, rtol=1e-6)


def test_rp3beta_damps_popular_items() -> None:
    # item 0 is bought by all five users, item 1 by u0 and u1, item 2 by u2 and u3
    m = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1], [1, 0, 0]],
                               dtype=np.float32))
    kw = {"neighbors": 10, "shrink": 0.0, "user_power": 1.0, "row_power": 1.0}
    plain = item_similarity(m, slice(0, 3), column_power=0.0, **kw).toarray()
    damped = item_similarity(m, slice(0, 3), column_power=1.0, **kw).toarray()
    # from item 1 the plain walk reaches the popular item 0 (two shared users) ...
    np.testing.assert_allclose(plain[1, 0], 2 * (1 / 2) * (1 / 2), rtol=1e-6)
    # ... and beta = 1 divides that by its 5 users, while item 2's walk to 0 keeps its ratio
    np.testing.assert_allclose(damped[1, 0], plain[1, 0] / 5, rtol=1e-6)
    np.testing.assert_allclose(damped[0, 1], plain[0, 1] / 2, rtol=1e-6)


def test_rp3beta_registered_with_its_settings() -> None:
    from crossrec.models import build_model

    model = build_model({"name": "rp3beta", "alpha": 0.8, "beta": 0.3, "train_on": "all"})
    assert isinstance(model, RP3Beta)
    assert model._terms() == {"shrink": 0.0, "user_power": 0.8, "row_power": 0.8,
                              "column_power": 0.3}
