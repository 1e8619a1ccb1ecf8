"""Text2CF: the contract, the ridge map against numpy, cold items scored through their text."""

import numpy as np
import torch

from crossrec.data.split import cold_start_items
from crossrec.models.base import FitOptions, Query
from crossrec.models.cross.text2cf import Text2CF, apply_ridge, ridge
from crossrec.testing.contract import RecommenderContract
from crossrec.testing.synthetic import make_two_domain


class TestText2CF(RecommenderContract):
    model_cls = Text2CF
    fast_config = {"factors": 4, "cold_scale": 1.0}
    transfers = True
    history_is_exact = True


def test_ridge_matches_lstsq() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 3))
    w = ridge(x, y, l2=1e-9)
    ref, *_ = np.linalg.lstsq(np.hstack([x, np.ones((200, 1))]), y, rcond=None)
    np.testing.assert_allclose(w, ref, atol=1e-4)
    np.testing.assert_allclose(apply_ridge(x, w), np.hstack([x, np.ones((200, 1))]) @ ref,
                               atol=1e-4)


def test_cold_items_get_scores_from_text() -> None:
    """Held-out items have no interaction; their theme words put them in their cluster's
    collaborative region, so a user's own cluster's cold items outscore the others'."""
    data = make_two_domain(seed=3)
    split = cold_start_items(data, "target", 0.3, seed=0)
    model = Text2CF(factors=8, cold_scale=1.0).fit(
        split.train, FitOptions(target="target", sources=("source",), progress=False))
    truth = split.truth("test")
    users = np.unique(truth["user"].to_numpy())[:40]
    scores = model.score(Query(torch.from_numpy(users.astype(np.int64))), "target")
    start = split.train.domain_items("target").start
    held = np.unique(split.truth("test")["item"].to_numpy()) - start
    rng = np.random.default_rng(0)
    hits = chance = 0.0
    for r, u in enumerate(users):
        mine = set(truth["item"].to_numpy()[truth["user"].to_numpy() == u] - start)
        order = held[np.argsort(-scores[r, held].numpy(), kind="stable")]
        hits += len(mine & set(order[:5].tolist())) / min(5, len(mine))
        chance += len(mine & set(rng.permutation(held)[:5].tolist())) / min(5, len(mine))
    assert hits > 1.5 * chance, (hits, chance)
