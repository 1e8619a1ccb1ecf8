"""Candidate selection: the exact top-n equals the full stable sort it replaced, ties included."""

import numpy as np
import pytest
import torch

from crossrec.eval.topk import top_n


def _full_sort(z: np.ndarray, k: int) -> np.ndarray:
    """The selection ``nominate`` made before: torch's stable descending sort, first k."""
    return torch.sort(torch.from_numpy(z), dim=1, descending=True, stable=True
                      ).indices[:, :k].numpy()


@pytest.mark.parametrize("seed", range(6))
def test_top_n_equals_the_stable_full_sort_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b, n = int(rng.integers(1, 20)), int(rng.integers(50, 3000))
    levels = int(rng.integers(1, 40))  # few distinct values: ties everywhere, at the cut too
    z = rng.integers(-levels, levels + 1, size=(b, n)).astype(np.float32) / 4
    z[rng.random((b, n)) < 0.3] = -1e9  # the value nominate gives seen items
    z[rng.random((b, n)) < 0.05] = -0.0  # compares equal to 0.0
    z[0] = 0.0  # a row that is all one value
    for k in (1, 2, 7, 100, n // 5, n // 4, n // 2, n - 1, n, n + 5):
        got = top_n(z, k)
        np.testing.assert_array_equal(got, _full_sort(z, min(k, n)), err_msg=f"k={k}")
        assert got.dtype == np.int64


def test_top_n_on_continuous_scores_and_extremes() -> None:
    rng = np.random.default_rng(7)
    z = rng.standard_normal((16, 19757)).astype(np.float32)
    z[:, :50] = np.finfo(np.float32).max  # what nan_to_num makes of +inf
    z[3, 100:300] = z[3, 100]  # a long tie straddling the cut
    for k in (100, 200):
        np.testing.assert_array_equal(top_n(z, k), _full_sort(z, k))


def test_top_n_empty() -> None:
    assert top_n(np.zeros((0, 10), np.float32), 3).shape == (0, 3)
    assert top_n(np.zeros((2, 10), np.float32), 0).shape == (2, 0)


def _nominate_before(models, sizes, query, domain, seen):
    """``nominate`` as it was before the selection and union were rewritten (full sorts,
    dense rank maps): the reference the new one must equal exactly."""
    b, n = seen.shape
    mask = torch.zeros(b, n, dtype=torch.bool)
    all_scores, all_z, all_rank = [], [], []
    fallback = None
    for model, size in zip(models, sizes, strict=True):
        s = model.score(query, domain).detach().to("cpu", torch.float32)
        s = s.masked_fill(seen, float("nan"))
        mean = torch.nanmean(s, dim=1, keepdim=True)
        std = torch.sqrt(torch.nanmean((s - mean) ** 2, dim=1, keepdim=True)).clamp_min(1e-8)
        z = ((s - mean) / std).nan_to_num(nan=-1e9)
        k = min(size, n)
        top = torch.sort(z, dim=1, descending=True, stable=True).indices[:, :k]
        rank = torch.full((b, n), float("nan"))
        rank.scatter_(1, top, torch.arange(1, k + 1, dtype=torch.float32).expand(b, k))
        rank = rank.masked_fill(seen, float("nan"))
        mask.scatter_(1, top, True)
        all_scores.append(s)
        all_z.append(z)
        all_rank.append(rank)
        if fallback is None:
            fallback = z.masked_fill(seen, float("-inf"))
    mask &= ~seen
    rows, items = torch.nonzero(mask, as_tuple=True)
    stack = lambda xs: torch.stack([x[rows, items] for x in xs]).numpy()  # noqa: E731
    return rows.numpy().astype(np.int64), items.numpy().astype(np.int64), stack(all_scores), \
        stack(all_z), stack(all_rank), fallback


class _Fixed:
    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores

    def score(self, query, domain):  # noqa: ANN001, ANN201
        return self.scores


@pytest.mark.parametrize("seed", range(5))
def test_nominate_equals_the_full_sort_version(seed: int) -> None:
    from crossrec.models.base import Query
    from crossrec.models.ranker.candidates import nominate

    rng = np.random.default_rng(seed)
    b, n = int(rng.integers(1, 12)), int(rng.integers(30, 800))
    seen = rng.random((b, n)) < rng.uniform(0, 0.5)
    seen[0, :] = rng.random(n) < 0.97  # a user who has seen nearly everything
    seen = torch.from_numpy(seen)
    models, sizes = [], []
    for kind in ("ties", "continuous", "constant", "counts"):
        if kind == "ties":
            s = rng.integers(0, 4, size=(b, n)).astype(np.float32)
        elif kind == "continuous":
            s = rng.standard_normal((b, n)).astype(np.float32)
        elif kind == "constant":
            s = np.ones((b, n), np.float32)
        else:
            s = np.tile(rng.poisson(0.3, n).astype(np.float32), (b, 1))
        models.append(_Fixed(torch.from_numpy(s)))
        sizes.append(int(rng.integers(1, n + 10)))
    query = Query(torch.arange(b))
    got = nominate(models, sizes, query, "d", seen)
    rows, items, scores, z, ranks, fallback = _nominate_before(models, sizes, query, "d", seen)
    np.testing.assert_array_equal(got.rows, rows)
    np.testing.assert_array_equal(got.items, items)
    for a, e in ((got.scores, scores), (got.zscores, z), (got.ranks, ranks)):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)  # NaN where NaN, bit for bit elsewhere
    torch.testing.assert_close(got.fallback, fallback, rtol=0, atol=0)


def test_shared_sources_keep_derived_and_fresh_fits_apart() -> None:
    """Inside one ablation block, a source derived from a base (EASE's low-rank update) and a
    fresh fit of the same spec on the same rows are different models, each reused by its kind."""
    import pandas as pd

    from crossrec.data import DatasetBuilder
    from crossrec.models.base import FitOptions
    from crossrec.models.ranker.candidates import fit_sources, shared_sources

    rng = np.random.default_rng(5)
    rows = [(f"u{u}", f"i{j}") for u in range(80) for j in range(40) if rng.random() < 0.15]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    full = DatasetBuilder("s").add_interactions(frame, domain="d").build()
    inter = full.interactions
    sub = full.with_interactions(inter[inter["user"] >= 3])  # three users lose every row
    opts = FitOptions(target="d", progress=False)
    specs = [{"name": "ease", "l2": 3.0, "n": 10}]
    with shared_sources():
        base = fit_sources(specs, full, opts)
        fresh = fit_sources(specs, sub, opts)
        derived = fit_sources(specs, sub, opts, base=base)
        assert derived[0] is not fresh[0]
        assert fit_sources(specs, sub, opts, base=base)[0] is derived[0]
        assert fit_sources(specs, sub, opts)[0] is fresh[0]


class _Sampling(_Fixed):
    """A source that can nominate without a full score (``top_unseen``) from fixed scores."""

    def top_unseen(self, query, domain, seen, k):  # noqa: ANN001, ANN201
        z = self.scores.masked_fill(seen, float("-inf")).nan_to_num(neginf=-1e9)
        return top_n(z.numpy(), k)

    def score_items(self, query, domain, items):  # noqa: ANN001, ANN201
        return self.scores[:, items]

    def score_pairs(self, query, domain, rows, items):  # noqa: ANN001, ANN201
        return self.scores[rows, items].numpy()


def test_z_sample_standardises_a_sampling_source_over_the_sample_only() -> None:
    from crossrec.models.base import Query
    from crossrec.models.ranker.candidates import nominate, sample_items

    rng = np.random.default_rng(11)
    b, n = 6, 400
    seen = torch.from_numpy(rng.random((b, n)) < 0.2)
    first = _Fixed(torch.from_numpy(rng.standard_normal((b, n)).astype(np.float32)))
    text = torch.from_numpy(rng.standard_normal((b, n)).astype(np.float32))
    query = Query(torch.arange(b))
    dense = nominate([first, _Fixed(text)], [20, 15], query, "d", seen)
    # a sample as large as the domain: the same z-scores as scoring every item
    whole = nominate([first, _Sampling(text)], [20, 15], query, "d", seen, z_sample=n)
    for name in ("rows", "items", "scores", "ranks"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(dense, name))
    np.testing.assert_allclose(whole.zscores, dense.zscores, rtol=1e-5, atol=1e-5)
    # a sample of 50: the same candidates and scores, z over the sampled unseen items
    part = nominate([first, _Sampling(text)], [20, 15], query, "d", seen, z_sample=50)
    np.testing.assert_array_equal(part.items, dense.items)
    np.testing.assert_array_equal(part.scores, dense.scores)
    at = sample_items(n, 50)
    assert len(at) == 50 and np.array_equal(at, sample_items(n, 50))
    for r in range(b):
        s = text[r, at].numpy()[~seen[r, at].numpy()]
        want = (text[r].numpy()[part.items[part.rows == r]] - s.mean()) / s.std()
        np.testing.assert_allclose(part.zscores[1][part.rows == r], want, rtol=1e-4, atol=1e-5)
    # the first source is never sampled: it orders the items outside the union
    only = nominate([_Sampling(text)], [15], query, "d", seen, z_sample=50)
    np.testing.assert_allclose(only.zscores, nominate([_Fixed(text)], [15], query, "d",
                                                      seen).zscores, atol=0)


@pytest.mark.parametrize("shape", [(16, 20000), (3, 7), (1, 1)])
def test_standardise_is_nanmean_bit_for_bit(shape) -> None:
    from crossrec.models.ranker.candidates import _standardise

    g = torch.Generator().manual_seed(sum(shape))
    s = torch.randn(shape, generator=g) * 3 + 1
    s[torch.rand(shape, generator=g) < 0.2] = float("nan")
    s[0] = float("nan")  # a row with nothing unseen: mean 0, std 1
    mean, std = _standardise(s)
    want = torch.nanmean(s, dim=1, keepdim=True)
    want_std = torch.sqrt(torch.nanmean((s - want) ** 2, dim=1, keepdim=True)).clamp_min(1e-8)
    assert torch.equal(mean, want.nan_to_num(0.0))
    assert torch.equal(std, want_std.nan_to_num(1.0))
