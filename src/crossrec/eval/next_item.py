"""Next-item evaluation: every held-out interaction is one prediction, full ranking.

The protocol of cross-domain sequential recommendation papers (e.g. C2DSR, URLLM): a user's
history predicts each held-out item *separately*. Several truth rows of one user (the Arts and
the Office target of the URLLM Arts-Office split) share the user's history, and one truth item
is never part of the history of another: each is ranked on its own, the others stay
candidates (and count as misses when ranked above it).

Candidates are either the items of the truth item's domain (``"domain"``) or every item of
every domain (``"all"``: the model's per-domain scores concatenated, so a model must put its
domains on one scale); ``"both"`` reports ``"all"`` under the plain metric names and
``"domain"`` as ``<metric>_domain`` (``ndcg_domain@10``), from one fitted model. Items known
from training (and, at test time, the user's valid items)
are masked, except the truth item of the case itself.

Metrics per case (one truth item): ``hr@k`` (= recall@k), ``ndcg@k``, ``mrr@k``, ``precision@k``
and ``mrr`` without a cut-off (reciprocal rank among all candidates; equal scores: lower item
index first, as in the top-k).

Sampled (``n_negatives`` = N, labelled ``sampled-N``; ``candidates = "domain"`` only): each
truth item is ranked against N distinct negatives of its own domain, none of them in the user's
history (training items, and the valid items at test time) nor the truth item itself — the
protocol of most cross-domain sequential papers (e.g. N = 999, HR/NDCG@1/5/10 per domain). The
draws depend on ``(seed, user, item)`` alone (``sampled_negatives``), so every model of a
benchmark sees the same negatives; equal scores count against the truth item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from crossrec.data.split import Split
from crossrec.errors import DataError
from crossrec.eval import metrics as M
from crossrec.eval.ranking import _batches, _model_device
from crossrec.eval.result import EvalResult, summarize
from crossrec.eval.sampled import known_items, sampled_negatives
from crossrec.eval.topk import top_indices
from crossrec.models.base import Query, Recommender

Candidates = Literal["domain", "all", "both"]
DOMAIN_SUFFIX = "_domain"
NEXT_ITEM_METRICS = (*M.RANK_METRICS, "mrr")


def protocol_label(candidates: str) -> str:
    """``"next-item/all"`` or ``"next-item/domain"``: the ``EvalResult.protocol`` string."""
    return f"next-item/{candidates}"


def _scores(model: Recommender, users: np.ndarray, domains: Sequence[str]) -> Tensor:
    """``[U, sum n_items(d)]`` float32 scores of ``domains`` side by side (a fresh tensor)."""
    query = Query(users=torch.as_tensor(users, dtype=torch.int64).to(_model_device(model)))
    parts = []
    with torch.no_grad():
        for d in domains:
            s = model.score(query, d).detach().float().cpu()
            n = model._check_fitted().info.n_domain_items(d)
            if s.shape != (len(users), n):
                raise ValueError(f"{type(model).__name__}.score returned shape {tuple(s.shape)};"
                                 f" expected [{len(users)}, {n}] for domain {d!r}")
            parts.append(s)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0].clone()


def _rank_block(model: Recommender, split: Split, part: str, domains: Sequence[str],
                items: slice, users: np.ndarray, truth: np.ndarray, ks: list[int],
                metrics: list[str], batch_size: int, progress: bool) -> dict[str, np.ndarray]:
    """Metrics of the cases ``(users[c], truth[c])`` ranked among ``items`` (global slice)."""
    known = known_items(split, part, items)
    local = truth - items.start
    n = items.stop - items.start
    length = min(ks[-1], n)
    out: list[dict[str, np.ndarray]] = []
    for sl in _batches(len(users), batch_size, progress, "ranking next items"):
        uniq, inv = np.unique(users[sl], return_inverse=True)
        scores = _scores(model, uniq, domains)[torch.as_tensor(inv)]  # [C, n], a copy
        t = torch.as_tensor(local[sl])
        rows = known[users[sl]].tocoo()
        r, c = torch.as_tensor(rows.row, dtype=torch.int64), torch.as_tensor(rows.col,
                                                                               dtype=torch.int64)
        other = c != t[r]  # the case's own truth item stays rankable
        scores[r[other], c[other]] = -torch.inf
        top = top_indices(scores, length)
        hits = top == t[:, None]
        cols = M.rank_metrics(hits, np.ones(len(t), np.int64), ks, metrics)
        if "mrr" in metrics:
            own = scores.gather(1, t[:, None])
            ahead = (scores > own) | ((scores == own)
                                      & (torch.arange(n)[None, :] < t[:, None]))
            cols["mrr"] = (1.0 / (1.0 + ahead.sum(1).double())).numpy()
        out.append(cols)
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def evaluate_next_item(
    model: Recommender,
    split: Split,
    *,
    part: str = "test",
    candidates: Candidates = "domain",
    ks: Sequence[int] = (1, 5, 10, 20),
    metrics: Sequence[str] = ("hr", "ndcg", "mrr"),
    batch_size: int = 512,
    progress: bool = False,
    n_negatives: int | None = None,
    seed: int = 0,
) -> EvalResult:
    """Rank each truth row of ``part`` (any domain) on its own, from the user's history.

    Args:
        model: a fitted recommender.
        split: its truth frames may hold several domains (e.g. ``split.predefined``).
        part: ``"valid"`` or ``"test"``.
        candidates: ``"domain"`` = the items of the truth item's domain; ``"all"`` = every
            item of every domain; ``"both"`` = "all" plus "domain" as ``<metric>_domain``.
        ks: cut-offs.
        metrics: among ``recall, precision, hr, ndcg, mrr`` (``mrr`` gives ``mrr@k`` and
            the uncut ``mrr``).
        batch_size: cases per block; memory is about ``batch_size x n_candidates`` floats.
        progress: show a progress bar.
        n_negatives: None / 0 = full ranking; N = the truth item against N distinct
            negatives of its own domain (``candidates`` must be ``"domain"``).
        seed: seed of the negative draws (sampled only).

    Returns:
        EvalResult with protocol ``next-item/<candidates>`` (``sampled-N`` when sampled), one
        row per case (``user``, ``item``, ``domain`` of the truth item, ``group`` = cold/warm
        in that domain, ``n_truth`` = 1, metrics).

    Raises:
        DataError: no truth in ``part``; ValueError: bad arguments.
    """
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', not {part!r}")
    if candidates not in ("domain", "all", "both"):
        raise ValueError(f"candidates must be 'domain', 'all' or 'both', not {candidates!r}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    unknown = [m for m in metrics if m not in NEXT_ITEM_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} for next-item evaluation; known: "
                         f"{', '.join(NEXT_ITEM_METRICS)}")
    metrics = list(dict.fromkeys(metrics))
    if n_negatives and candidates != "domain":
        raise ValueError(f"sampled next-item evaluation draws negatives from the truth item's "
                         f"own domain: candidates must be 'domain', not {candidates!r}")
    train = split.train
    frame = split.valid if part == "valid" else split.test
    if len(frame) == 0:
        raise DataError(f"no {part} truth to evaluate")
    users = frame["user"].to_numpy(np.int64)
    items = frame["item"].to_numpy(np.int64)
    domain_code = frame["domain"].to_numpy(np.int64)
    order = np.lexsort((items, users))
    users, items, domain_code = users[order], items[order], domain_code[order]
    columns: dict[str, np.ndarray] = {}
    groups = np.empty(len(users), dtype=object)
    blocks = []  # (domains scored, global candidate items, cases, column suffix)
    if candidates in ("all", "both"):
        blocks.append((tuple(train.domains), slice(0, train.n_items), np.arange(len(users)), ""))
    if candidates in ("domain", "both"):
        suffix = DOMAIN_SUFFIX if candidates == "both" else ""
        blocks += [((d,), train.domain_items(d), np.flatnonzero(domain_code == i), suffix)
                   for i, d in enumerate(train.domains)]
    for domains, span, sel, suffix in blocks:
        if len(sel) == 0:
            continue
        if n_negatives:
            vals = _sampled_block(model, split, part, domains[0], users[sel], items[sel], ks,
                                  metrics, batch_size, int(n_negatives), seed)
        else:
            vals = _rank_block(model, split, part, domains, span, users[sel], items[sel], ks,
                               metrics, batch_size, progress)
        for k, v in vals.items():
            name, at, cut = k.partition("@")
            columns.setdefault(name + suffix + at + cut, np.full(len(users), np.nan))[sel] = v
    for i, d in enumerate(train.domains):
        sel = domain_code == i
        if sel.any():
            groups[sel] = split.user_groups(users[sel], d)
    per_case = pd.DataFrame({"user": users, "item": items,
                             "domain": np.asarray(train.domains, dtype=object)[domain_code],
                             "group": groups, "n_truth": np.ones(len(users), np.int64),
                             **columns})
    params = {"ks": ks, "metrics": metrics, "batch_size": batch_size, "candidates": candidates,
              "n_cases": len(users)}
    label = protocol_label(candidates)
    if n_negatives:
        params.update(n_negatives=int(n_negatives), seed=seed)
        label = f"sampled-{int(n_negatives)}"
    return EvalResult(label, "all" if candidates == "all" else "per-case",
                      part, per_case, summarize(per_case), params)


def _sampled_block(model: Recommender, split: Split, part: str, domain: str,
                   users: np.ndarray, truth: np.ndarray, ks: list[int], metrics: list[str],
                   batch_size: int, n: int, seed: int) -> dict[str, np.ndarray]:
    """Metrics of the cases ``(users[c], truth[c])`` of ``domain``, each ranked against its
    ``n`` sampled negatives (``sampled_negatives``); ties count against the truth."""
    drawn = sampled_negatives(split, part, n, seed)
    key = pd.MultiIndex.from_arrays([drawn["user"].to_numpy(), drawn["item"].to_numpy()])
    rows = key.get_indexer(pd.MultiIndex.from_arrays([users, truth]))
    negatives = np.stack(drawn["negatives"].to_numpy())[rows]  # [C, n] global items
    offset = split.train.domain_items(domain).start
    cand = torch.as_tensor(np.concatenate([truth[:, None], negatives], axis=1) - offset)
    ranks = []
    for sl in _batches(len(users), batch_size, False, ""):
        uniq, inv = np.unique(users[sl], return_inverse=True)
        scores = _scores(model, uniq, (domain,))
        c = scores[torch.as_tensor(inv)[:, None], cand[sl]]  # [b, n + 1]
        if torch.isnan(c).any():
            raise ValueError("the model's scores contain NaN")
        ranks.append((1 + (c[:, 1:] >= c[:, :1]).sum(1)).numpy())
    return M.sampled_metrics(np.concatenate(ranks), n + 1, ks, metrics)
