"""Feature group ``text_smooth``: the first source's opinion of a candidate's title neighbours.

Co-occurrence is thin for a tail item, but its nearest titles in the same domain (its ``k``
text neighbours) often have interactions: if the first source (EASE in the shipped configs)
ranks the user's unseen neighbours of a candidate high, the candidate is likely relevant too,
even when its own collaborative score says little. Per (user, candidate) pair:

- ``text_smooth:mean``: the neighbours' per-user z-scores of the first source (over the user's
  unseen items), weighted by their positive title cosine; NaN when every neighbour is seen;
- ``text_smooth:max``: the largest of those z-scores;
- ``text_smooth:seen``: the share of the neighbours the user already has (few-shot and next-
  item users: "you bought items with titles like this one").
"""

from __future__ import annotations

import numpy as np
import torch

NAMES = ("text_smooth:mean", "text_smooth:max", "text_smooth:seen")


def smooth_features(neighbours: np.ndarray, sims: np.ndarray, fallback: np.ndarray,
                    rows: np.ndarray, items: np.ndarray, start: int) -> list[np.ndarray]:
    """The three ``float32 [P]`` columns of ``NAMES``.

    Args:
        neighbours: ``int64 [n_items, k]`` each item's nearest same-domain titles (global).
        sims: ``float32 [n_items, k]`` their cosines; NaN pads the rows of a domain with
            fewer than ``k + 1`` items.
        fallback: ``float32 [B, n]`` the first source's z-scores in the ranked domain, the
            user's seen items ``-inf`` (``Candidates.fallback``).
        rows: ``int64 [P]`` batch row of each pair.
        items: ``int64 [P]`` global item of each pair.
        start: the ranked domain's first global item.
    """
    if neighbours.shape[1] == 0 or len(rows) == 0:
        return [np.full(len(rows), np.nan, dtype=np.float32) for _ in NAMES]
    nb = neighbours[items] - start  # [P, k] local
    z = fallback[rows[:, None], nb].astype(np.float64)  # [P, k]
    cos = sims[items].astype(np.float64)
    real = ~np.isnan(cos)  # not padding
    seen = np.isneginf(z) & real
    unseen = real & ~seen
    w = np.where(unseen, np.maximum(np.nan_to_num(cos), 0.0), 0.0)
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, (w * np.where(unseen, z, 0.0)).sum(1) / total, np.nan)
        share = seen.sum(1) / real.sum(1)
    best = np.where(unseen.any(1), np.where(unseen, z, -np.inf).max(1), np.nan)
    return [mean.astype(np.float32), best.astype(np.float32), share.astype(np.float32)]


def text_neighbours(vectors: np.ndarray, k: int = 10, block: int = 2048
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows by cosine: ``(int64 [n, k] indices, float32
    [n, k] cosines)``, nearest first."""
    v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    n = len(v)
    k = max(min(k, n - 1), 0)
    idx_out = np.zeros((n, k), dtype=np.int64)
    sim_out = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return idx_out, sim_out
    for start in range(0, n, block):
        sims = v[start:start + block] @ v.T
        idx = torch.arange(start, min(n, start + block))
        sims[idx - start, idx] = -2.0
        top = torch.topk(sims, k, dim=1)
        sim_out[start:start + len(idx)] = top.values.numpy()
        idx_out[start:start + len(idx)] = top.indices.numpy()
    return idx_out, sim_out
