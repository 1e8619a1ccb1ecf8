"""Why the ranker placed an item: its largest LightGBM contributions, in words.

Each feature's contribution is LightGBM's exact per-row SHAP value (``pred_contrib``); the
positive ones, largest first, are turned into a reason a user can read: "ranked high by
ease(all)", "similar title to 'X' in arts", "learned cross-domain text match", ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossrec.models.base import Query
    from crossrec.models.ranker.model import Ranker


@dataclass
class Signal:
    """One reason: the feature, its contribution to the ranker's score, and a sentence."""

    feature: str
    weight: float
    reason: str


def _title(model: Ranker, item: int) -> str:
    text = model.train_data.item_text[item] or model.train_data.item_ids([item])[0]
    return text if len(text) <= 60 else text[:57] + "..."


def _reason(model: Ranker, feature: str, item: int, history: np.ndarray) -> str:
    """A sentence for ``feature`` of global item ``item`` given the user's ``history``."""
    train = model.train_data
    head, _, tail = feature.partition(":")
    if head in model.source_names:
        return f"ranked high by {head}"
    if head == "pop":
        return {"recent": "popular recently"}.get(tail, "popular in its domain")
    if head in ("history", "domain"):
        return "fits how much history you have in each domain"
    vectors = model.features.state.vectors
    if head == "text" and vectors is not None and len(history):
        domain = tail.partition(":")[0]
        pool = history if domain in ("last", "profile", "density") else history[
            train.item_domain[history] == train.info.domain_index(domain)]
        if tail == "last":
            pool = history[-1:]
        if tail == "density":
            return "its title sits among many similar items"
        if len(pool):
            best = pool[int(np.argmax(vectors[pool] @ vectors[item]))]
            where = train.domains[train.item_domain[best]]
            return f"similar title to '{_title(model, int(best))}' in {where}"
    if head == "text_map":
        return "learned cross-domain text match with your history in other domains"
    if head == "text2cf":
        return "its title predicts people with your history choose it"
    return feature


def signals(model: Ranker, query: Query, domain: str, items: np.ndarray, n: int
            ) -> list[list[Signal]]:
    """The ``n`` strongest positive signals of each item for one query row.

    Args:
        model: a fitted ranker.
        query: one user (``users`` ``[1]``, optional ``history`` ``[1, L]``).
        domain: the ranked domain.
        items: ``int64 [K]`` local item indices (in ``domain``).
        n: signals kept per item.

    Returns:
        ``K`` lists (empty for an item outside the candidate union).
    """
    from crossrec.models.baselines.text_zero_shot import query_histories

    train = model._check_fitted()
    cand_items, x = model.user_rows(query, domain)
    names = model.features.names(train)
    hist = query_histories(train, query, model.config.max_history)[0]
    hist = hist[hist >= 0]
    start = train.domain_items(domain).start
    where = {int(i): p for p, i in enumerate(cand_items)}
    rows = [where.get(int(i), -1) for i in items]
    found = [r for r in rows if r >= 0]
    contrib = (model.booster.predict(x[found], pred_contrib=True)[:, :-1] if found
               else np.zeros((0, len(names))))
    out: list[list[Signal]] = []
    j = 0
    for item, r in zip(items, rows, strict=True):
        if r < 0:
            out.append([])
            continue
        c = contrib[j]
        j += 1
        order = [f for f in np.argsort(-c, kind="stable")[:n] if c[f] > 0]
        out.append([Signal(names[f], float(c[f]), _reason(model, names[f], int(item) + start,
                                                           hist)) for f in order])
    return out
