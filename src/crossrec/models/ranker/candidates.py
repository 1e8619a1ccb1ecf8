"""Candidate sources: several fitted models each nominate their top items; the union is ranked.

A source is any registered model (``{"name": "ease", "train_on": "all", "n": 200}``); ``n`` is
how many unseen items of the ranked domain it nominates per user. Every source also scores
every candidate nominated by the others, so each (user, item) row has all sources' scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crossrec.eval.topk import top_n

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.models.base import FitOptions, Query, Recommender


def source_label(spec: dict[str, Any]) -> str:
    """A source's name in feature names and reports: its ``label``, else the model label."""
    from crossrec.models import model_label

    return model_label({k: v for k, v in spec.items() if k != "n"})


def build_source(spec: dict[str, Any]) -> Recommender:
    """An unfitted model from a source spec (``n`` removed)."""
    from crossrec.models import build_model

    return build_model({k: v for k, v in spec.items() if k != "n"})


_SHARED: dict[tuple, Any] | None = None


@contextmanager
def shared_sources() -> Iterator[None]:
    """Within this block, rankers fitted on the same data object reuse each other's fitted
    *deterministic* sources (same spec, same target and seed) and episodes: an ablation that
    varies the features or drops a source fits each source once per dataset. The fitted
    models (and so their data) are kept alive until the block ends."""
    global _SHARED
    saved, _SHARED = _SHARED, {}
    try:
        yield
    finally:
        _SHARED = saved


def reuse(key: tuple, make: Any) -> Any:
    """``make()``, or its earlier result for ``key`` inside a ``shared_sources`` block."""
    if _SHARED is None:
        return make()
    if key not in _SHARED:
        _SHARED[key] = make()
    return _SHARED[key]


def _lookup(key: tuple) -> Any:
    return _SHARED.get(key) if _SHARED is not None else None


def _store(key: tuple, model: Recommender) -> None:
    if _SHARED is not None and model.deterministic:
        _SHARED[key] = model


def fit_sources(specs: list[dict[str, Any]], train: MultiDomainDataset, options: FitOptions,
                log: Any = None, base: list[Recommender] | None = None) -> list[Recommender]:
    """Fit every source on ``train`` (no validation hook: sources see no valid users).

    ``base``: the same sources fitted on a superset of ``train``'s rows (the ranker's episodes
    are the training split less some rows); a source whose ``fit_subset`` can derive the fit
    from its base (EASE: a low-rank update of its inverse) does, the others fit afresh."""
    import time
    from dataclasses import replace

    opts = replace(options, validate=None, run_dir=None, resume=False)
    models = []
    for spec in specs:
        start = time.perf_counter()
        fit_spec = {k: v for k, v in spec.items() if k not in ("n", "label")}
        key = (id(train), json.dumps(fit_spec, sort_keys=True, default=str), options.target,
               options.sources, options.seed)
        # a fit derived from a base is kept apart from a fresh fit of the same spec: the two
        # agree only up to rounding, and an ablation comparing them must not share one
        model, derived = None, False
        if base is not None:
            model = _lookup(key + ("derived",))
            derived = model is not None
            reused = derived
            if model is None:
                model = base[len(models)].fit_subset(train, opts)
                derived = model is not None
                if derived:
                    _store(key + ("derived",), model)
        if model is None:
            model = _lookup(key)
            reused = model is not None
            if model is None:
                model = build_source(spec).fit(train, opts)
                _store(key, model)
        models.append(model)
        if log is not None:
            log(f"ranker: source {source_label(spec)} "
                + ("reused" if reused else f"{'updated to' if derived else 'fitted on'} "
                   f"{len(train.interactions):,} rows in {time.perf_counter() - start:.1f}s"))
    return models


@dataclass
class Candidates:
    """The union of the sources' nominations for a batch of users in one domain.

    Attributes:
        rows: ``int64 [P]`` batch row of each (user, candidate) pair, sorted.
        items: ``int64 [P]`` local item index (in the domain) of each pair.
        scores: ``float32 [S, P]`` every source's score of each pair.
        zscores: ``float32 [S, P]`` the score standardised over the user's unseen items.
        ranks: ``float32 [S, P]`` 1-based rank in the source's nomination list, NaN outside.
        fallback: ``float32 [B, n]`` the first source's z-scores (seen items -inf): the order
            of the items outside the union.
    """

    rows: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    zscores: np.ndarray
    ranks: np.ndarray
    fallback: torch.Tensor


def sample_items(n: int, size: int) -> np.ndarray:
    """``int64 [min(n, size)]`` a fixed seeded sample of a domain's ``n`` items, sorted: where
    a sampling source's z-scores are taken (the same items for every user and every call)."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(0).choice(n, size, replace=False)).astype(np.int64)


def _standardise(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 1]`` mean and std of each row's non-NaN entries (``s``: ``[B, m]``, seen items
    NaN)."""
    # torch.nanmean, bit for bit, in fewer passes (it was a fifth of a served batch's nominate)
    nan = torch.isnan(s)
    count = (~nan).sum(dim=1, keepdim=True)
    mean = s.masked_fill(nan, 0.0).sum(dim=1, keepdim=True) / count
    dev = (s - mean).pow_(2).masked_fill_(nan, 0.0)
    std = torch.sqrt(dev.sum(dim=1, keepdim=True) / count).clamp_min(1e-8)
    return mean.nan_to_num(0.0), std.nan_to_num(1.0)


def nominate(models: list[Recommender], sizes: list[int], query: Query, domain: str,
             seen: torch.Tensor, z_sample: int = 0) -> Candidates:
    """Score with every source, take each one's top ``sizes[s]`` unseen items, join them.

    Args:
        models: fitted sources.
        sizes: nominations per source.
        query: the users (``[B]``) and optional history.
        domain: the ranked domain.
        seen: ``bool [B, n]`` items the user already has in ``domain`` (never nominated).
        z_sample: 0 = every source scores every item. ``m > 0``: a source after the first
            that can nominate without scoring every item (``top_unseen``; ``score_pairs``
            scores the candidates) does, and its z-scores are taken over ``sample_items(n, m)``.
    """
    b, n = seen.shape
    dense, sampled, tops = {}, {}, []
    fallback = None
    for j, (model, size) in enumerate(zip(models, sizes, strict=True)):
        top = None
        if z_sample and j > 0 and hasattr(model, "top_unseen"):
            top = model.top_unseen(query, domain, seen, min(size, n))
        if top is not None:
            at = torch.from_numpy(sample_items(n, z_sample))
            sampled[j] = _standardise(model.score_items(query, domain, at).masked_fill(
                seen[:, at], float("nan")))
        else:
            s = model.score(query, domain).detach().to("cpu", torch.float32)
            s = s.masked_fill(seen, float("nan"))
            mean, std = _standardise(s)
            z = ((s - mean) / std).nan_to_num(nan=-1e9)
            top = top_n(z.numpy(), min(size, n))
            dense[j] = (s, z)
            if fallback is None:
                fallback = z.masked_fill(seen, float("-inf"))
        # [B, k] flat keys row * n + item of the nominations, best first (ties: lower item)
        tops.append(top + (np.arange(b, dtype=np.int64) * n)[:, None])
    # the union, seen items dropped, in row-major order (row, then item)
    keys = np.unique(np.concatenate([t.ravel() for t in tops]))
    keys = keys[~seen.numpy().ravel()[keys]]
    rows, items = keys // max(n, 1), keys % max(n, 1)
    ranks = np.stack([_ranks(t, keys) for t in tops]) if tops else np.zeros((0, len(keys)))
    r, i = torch.from_numpy(rows), torch.from_numpy(items)
    scores = np.empty((len(models), len(keys)), dtype=np.float32)
    zscores = np.empty_like(scores)
    for j, model in enumerate(models):
        if j in dense:
            scores[j], zscores[j] = dense[j][0][r, i].numpy(), dense[j][1][r, i].numpy()
        else:
            mean, std = sampled[j]
            scores[j] = model.score_pairs(query, domain, rows, items)
            zscores[j] = (scores[j] - mean[r, 0].numpy()) / std[r, 0].numpy()
    return Candidates(rows, items, scores, zscores, ranks.astype(np.float32), fallback)


def _ranks(top: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``float32 [P]`` the 1-based position of each flat key in its row of ``top`` (``[B, k]``
    flat keys, best first), NaN where the row does not hold it."""
    flat = top.ravel()
    order = np.argsort(flat, kind="stable")
    pos = np.minimum(np.searchsorted(flat[order], keys), max(len(flat) - 1, 0))
    if len(flat) == 0:
        return np.full(len(keys), np.nan, dtype=np.float32)
    where = order[pos]
    hit = flat[where] == keys
    return np.where(hit, where % top.shape[1] + 1, np.nan).astype(np.float32)
