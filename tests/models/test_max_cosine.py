"""The max-pooled text score's neighbour index: exact top-k without scoring every item."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrec.eval.topk import top_n
from crossrec.models.baselines.max_cosine import NeighbourIndex, max_cosine, pair_cosines


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> torch.Tensor:
    v = torch.from_numpy(rng.standard_normal((n, dim)).astype(np.float32))
    return torch.nn.functional.normalize(v, dim=1)


def _reference(vectors, block, hist, seen, k):  # noqa: ANN001, ANN202
    """Score every item, then the ranker's stable top-k over the unseen ones."""
    full = max_cosine(vectors, hist, vectors[block]).masked_fill(seen, float("-inf"))
    return top_n(full.nan_to_num(neginf=-1e9).numpy(), k)


@pytest.mark.parametrize("seed", range(4))
def test_top_unseen_equals_scoring_every_item(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = _unit(rng, 300)
    block = slice(100, 300)  # the ranked domain: 200 items
    b, length, k = 12, 6, 10
    hist = torch.from_numpy(rng.integers(0, 300, (b, length)))
    hist[0, :] = -1  # no history: every item scores 0, the lowest items first
    hist[1, :4] = -1  # a short history, left-padded
    seen = torch.from_numpy(rng.random((b, 200)) < 0.1)
    seen[2, :] = torch.from_numpy(rng.random(200) < 0.8)  # most items seen: the exact fallback
    index = NeighbourIndex(vectors, block, k + 8)
    got = index.top_unseen(vectors, block, hist, seen, k)
    np.testing.assert_array_equal(got, _reference(vectors, block, hist, seen, k))
    assert not seen.numpy()[np.arange(b)[:, None], got][3:].any()


def test_index_holds_each_items_nearest_in_the_domain() -> None:
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 50)
    index = NeighbourIndex(vectors, slice(20, 50), 5, chunk=7)
    sims = (vectors @ vectors[20:50].T).numpy()
    np.testing.assert_array_equal(index.ids.numpy(), np.argsort(-sims, axis=1)[:, :5])
    np.testing.assert_allclose(index.sims.numpy(), -np.sort(-sims, axis=1)[:, :5], atol=1e-6)
    assert index.size == 5 and NeighbourIndex(vectors, slice(20, 50), 99).size == 30


def test_pair_cosines_equal_the_full_scores() -> None:
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 120)
    hist = torch.from_numpy(rng.integers(-1, 120, (5, 7)))
    hist[4, :] = -1
    full = max_cosine(vectors, hist, vectors[40:120]).numpy()  # [5, 80]
    rows = np.repeat(np.arange(5), 9)
    items = rng.integers(0, 80, len(rows))
    got = pair_cosines(vectors, hist, rows, items + 40)
    np.testing.assert_allclose(got, full[rows, items], atol=1e-6)
    assert (got[rows == 4] == 0).all()


def test_worth_building_bounds_the_product() -> None:
    assert NeighbourIndex.worth_building(40_000, 20_000)
    assert not NeighbourIndex.worth_building(2_000_000, 1_000_000)
