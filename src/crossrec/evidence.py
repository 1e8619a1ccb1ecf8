"""Model-agnostic evidence for a recommendation: the user's history items that co-occur with it
("people who had h also had r"), computed on a bundle's training data only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset


@dataclass(frozen=True)
class Evidence:
    """A history item that supports a recommendation, with its co-occurrence weight."""

    domain: str
    item_id: str
    weight: float


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
    if len(history) == 0 or len(items) == 0:
        return [[] for _ in items]
    key = ("bundle_binary_csc", id(matrix))
    if key not in train._cache:
        binary = matrix.tocsc(copy=True)
        binary.data[:] = 1.0
        train._cache[key] = binary
    cols = train._cache[key]
    h, r = cols[:, history], cols[:, items]
    co = (h.T @ r).toarray()  # [L, K]
    norm_h = np.sqrt(np.asarray(h.sum(axis=0)).ravel())
    norm_r = np.sqrt(np.asarray(r.sum(axis=0)).ravel())
    sim = co / np.maximum(np.outer(norm_h, norm_r), 1e-12)
    ids = train.item_ids(history)
    domains = np.asarray(train.domains, dtype=object)[train.item_domain[history]]
    out = []
    for j in range(len(items)):
        order = np.argsort(-sim[:, j], kind="stable")[:n]
        out.append([Evidence(str(domains[o]), str(ids[o]), float(sim[o, j]))
                    for o in order if sim[o, j] > 0])
    return out
