"""Feature group ``links`` (opt-in): the item-to-item weights behind an item-item source's score.

An item-item source (EASE, ItemKNN) scores a candidate by summing its weights from the user's
history items; the sum hides *how*: one strong "bought with X" link, or many weak ones, or a
link from the item the user chose last. Per item-item source (a model with ``item_links``)
and (user, candidate) pair, over the user's ``max_history`` most recent items:

- ``<source>:link_max``: the largest weight from one history item;
- ``<source>:link_count``: how many history items have a positive weight to the candidate;
- ``<source>:link_last``: the weight from the most recent history item;
- ``<source>:link_recent``: the recency-weighted mean weight (``decay`` per step back).

NaN for a user without history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.models.base import Recommender

KINDS = ("link_max", "link_count", "link_last", "link_recent")


def has_links(spec: dict[str, Any]) -> bool:
    """Whether a source spec's model exposes item-to-item weights (``item_links``)."""
    from crossrec.models import MODELS

    return hasattr(MODELS[spec["name"]], "item_links")


def link_names(sources: list[str]) -> list[str]:
    return [f"{s}:{k}" for s in sources for k in KINDS]


def link_features(models: list[Recommender], domain: str, items: np.ndarray,
                  starts: np.ndarray, hist: np.ndarray, decay: float) -> list[np.ndarray]:
    """``float32 [P]`` columns in ``link_names`` order.

    Args:
        models: the fitted item-item sources.
        domain: the ranked domain.
        items: ``int64 [P]`` local candidate items, grouped by batch row.
        starts: ``int64 [B + 1]`` bounds of each batch row's pairs.
        hist: ``int64 [B, L]`` most recent global items per user, left-padded with -1.
        decay: recency weight per step back.
    """
    feats = np.full((len(items), len(KINDS) * len(models)), np.nan, dtype=np.float32)
    for r in range(hist.shape[0]):
        a, b = starts[r], starts[r + 1]
        h = hist[r][hist[r] >= 0]
        if a == b or not len(h):
            continue
        w = decay ** np.arange(len(h))[::-1]
        w = w / w.sum()
        for j, model in enumerate(models):
            links = model.item_links(h, domain, items[a:b])  # [L_r, C_r], oldest first
            k = len(KINDS) * j
            feats[a:b, k] = links.max(0)
            feats[a:b, k + 1] = (links > 0).sum(0)
            feats[a:b, k + 2] = links[-1]
            feats[a:b, k + 3] = w @ links
    return list(feats.T)
