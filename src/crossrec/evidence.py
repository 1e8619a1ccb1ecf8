"""Evidence for a recommendation: model-agnostic, the user's history items that co-occur with it
("people who had h also had r", computed on a bundle's training data only); and the model's own
reasons (``signals``) for a batch of users."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.models.base import Query, Recommender


@dataclass(frozen=True)
class Evidence:
    """A history item that supports a recommendation, with its co-occurrence weight."""

    domain: str
    item_id: str
    weight: float


def _binary_columns(matrix: Any, train: MultiDomainDataset) -> Any:
    """``matrix`` as a binary CSC (cached on ``train`` per matrix object)."""
    key = ("bundle_binary_csc", id(matrix))
    if key not in train._cache:
        binary = matrix.tocsc(copy=True)
        binary.data[:] = 1.0
        train._cache[key] = binary
    return train._cache[key]


def explain_items(matrix: Any, history: np.ndarray, items: np.ndarray,
                  train: MultiDomainDataset, n: int) -> list[list[Evidence]]:
    """For each recommended item, the history items that co-occur with it most.

    The weight is the cosine of the two items' training user sets,
    ``|U_h ∩ U_r| / sqrt(|U_h| |U_r|)`` on the binary user x item matrix of every domain: model
    agnostic ("people who had h also had r"), computed on the bundle's training data only.

    Args:
        matrix: binary CSR ``[n_users, n_items]`` training interactions (all domains).
        history: ``int64[L]`` global item indices of the user's evidence.
        items: ``int64[K]`` global item indices recommended.
        train: the training dataset (ids and domains of items).
        n: history items kept per recommended item (weight > 0 only).

    Returns:
        ``K`` lists of at most ``n`` Evidence, highest weight first.
    """
    return explain_batch(matrix, [history], [items], train, n)[0]


def explain_batch(matrix: Any, histories: Sequence[np.ndarray], items: Sequence[np.ndarray],
                  train: MultiDomainDataset, n: int) -> list[list[list[Evidence]]]:
    """``explain_items`` of several users at once: one co-occurrence product over the union
    of their history items and recommended items instead of one per user.

    The weights are the same floats as the one-user call (the co-occurrence counts and column
    sizes are integers, exact in any order; the cosine is the same float32 element-wise
    arithmetic).

    Args:
        matrix: binary CSR ``[n_users, n_items]`` training interactions (all domains).
        histories: per user, ``int64[L_b]`` global item indices of their evidence.
        items: per user, ``int64[K_b]`` global item indices recommended.
        train: the training dataset (ids and domains of items).
        n: history items kept per recommended item (weight > 0 only).

    Returns:
        Per user, ``K_b`` lists of at most ``n`` Evidence, highest weight first.
    """
    if len(histories) != len(items):
        raise ValueError(f"{len(histories)} histories for {len(items)} item lists")
    histories = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    items = [np.asarray(r, dtype=np.int64).reshape(-1) for r in items]
    live = [b for b in range(len(items)) if len(histories[b]) and len(items[b])]
    out: list[list[list[Evidence]]] = [[[] for _ in r] for r in items]
    if not live:
        return out
    cols = _binary_columns(matrix, train)
    uh, pos_h = np.unique(np.concatenate([histories[b] for b in live]), return_inverse=True)
    ur, pos_r = np.unique(np.concatenate([items[b] for b in live]), return_inverse=True)
    h, r = cols[:, uh], cols[:, ur]
    co = (h.T @ r).toarray()  # [H, R] co-occurrence counts of the union
    norm_h = np.sqrt(np.asarray(h.sum(axis=0)).ravel())
    norm_r = np.sqrt(np.asarray(r.sum(axis=0)).ravel())
    ids = train.item_ids(uh)
    domains = np.asarray(train.domains, dtype=object)[train.item_domain[uh]]
    ends_h = np.cumsum([len(histories[b]) for b in live])
    ends_r = np.cumsum([len(items[b]) for b in live])
    for b, ph, pr in zip(live, np.split(pos_h, ends_h[:-1]), np.split(pos_r, ends_r[:-1]),
                         strict=True):
        sim = co[np.ix_(ph, pr)] / np.maximum(np.outer(norm_h[ph], norm_r[pr]), 1e-12)  # [L, K]
        order = np.argsort(-sim, axis=0, kind="stable")[:n]  # [min(n, L), K]
        top = np.take_along_axis(sim, order, axis=0)
        for j in range(len(pr)):
            out[b][j] = [Evidence(str(domains[ph[o]]), str(ids[ph[o]]), float(w))
                         for o, w in zip(order[:, j].tolist(), top[:, j].tolist(), strict=True)
                         if w > 0]
    return out


def model_signals(model: Recommender, queries: Sequence[Query], domain: str,
                  items: Sequence[np.ndarray], n: int) -> list[list[Any]]:
    """``model.signals(query, domain, items, n)`` of each one-user query (``items``: local
    ``int64[K_b]`` each); a ranker's in one LightGBM pass over the batch
    (``ranker.explain.batch_signals``: the same signals)."""
    from crossrec.models.ranker.model import Ranker

    if isinstance(model, Ranker) and type(model).signals is Ranker.signals:
        from crossrec.models.ranker.explain import batch_signals

        return batch_signals(model, queries, domain, items, n)
    return [model.signals(q, domain, it, n) for q, it in zip(queries, items, strict=True)]
