"""Max-pooled text scores: an item's largest cosine to one of a user's history items.

``max_cosine`` scores a block of items for a batch of users (``[U, n]`` cosines of the batch's
distinct history items, then a max per user). ``NeighbourIndex`` answers the top ``k`` of those
scores without scoring every item: each item's ``K`` nearest items of the ranked domain are
precomputed once (``K >= k``), and a user's top ``k`` unseen items are the top ``k`` of the
union of their history items' lists. That is exact: if item ``c`` is in the user's true top
``k`` and ``h`` is the history item with the largest cosine to ``c``, every item ahead of ``c``
in ``h``'s list scores above ``c`` for this user, so at most ``k - 1`` unseen items (plus the
user's seen items in that list) are ahead of it, and ``c`` is in ``h``'s list while
``k + seen(h's list) <= K``. A user for whom that bound fails for one history item, or who has
no history, is scored over every item instead.
"""

from __future__ import annotations

import numpy as np
import torch

from crossrec.eval.topk import top_n

PAD = -1
MAX_PRODUCTS = 4e9  # largest n_items x n_domain_items the index is built for (~30 s, 1 core)


@torch.no_grad()
def max_cosine(vectors: torch.Tensor, hist: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` each item of ``block`` (``[n, dim]`` unit vectors)'s largest cosine to one of
    the row's history items (``hist``: ``int64 [B, L]`` global, ``-1`` pads); 0 for an empty
    history."""
    out = torch.zeros((len(hist), block.shape[0]))
    for a in range(0, len(hist), 256):  # the cosines of the chunk's distinct history items
        h = hist[a:a + 256]
        distinct, where = torch.unique(h.clamp(min=0), return_inverse=True)
        sims = vectors[distinct] @ block.T  # [U, n]: unit vectors, dot = cosine
        for r in range(len(h)):
            rows = where[r][h[r] >= 0]
            if len(rows):
                out[a + r] = sims.index_select(0, rows).amax(dim=0)
    return out


@torch.no_grad()
def pair_cosines(vectors: torch.Tensor, hist: torch.Tensor, rows: np.ndarray,
                 items: np.ndarray) -> np.ndarray:
    """``float32 [P]`` the max-pooled score of each (batch row, global item) pair, one small
    ``[C_r, L_r]`` product per row (``rows`` sorted)."""
    out = np.zeros(len(rows), dtype=np.float32)
    starts = np.searchsorted(rows, np.arange(len(hist) + 1))
    for r in range(len(hist)):
        a, b = starts[r], starts[r + 1]
        h = hist[r][hist[r] >= 0]
        if a == b or not len(h):
            continue
        sims = vectors[torch.from_numpy(items[a:b])] @ vectors[h].T  # [C_r, L_r]
        out[a:b] = sims.amax(dim=1).numpy()
    return out


class NeighbourIndex:
    """Each item's ``K`` nearest items of one domain (by cosine), for exact max-pooled top-k.

    Attributes:
        ids: ``int64 [n_items, K]`` local indices (in the domain) of each item's neighbours,
            nearest first.
        sims: ``float32 [n_items, K]`` their cosines.
    """

    def __init__(self, vectors: torch.Tensor, block: slice, size: int,
                 chunk: int = 2048) -> None:
        """Build from every item's vector (``[n_items, dim]`` unit) to the domain's
        ``vectors[block]``; ``size`` = K (at most the domain's item count)."""
        keys = vectors[block]
        size = min(size, keys.shape[0])
        self.ids = torch.empty((vectors.shape[0], size), dtype=torch.int64)
        self.sims = torch.empty((vectors.shape[0], size))
        for a in range(0, vectors.shape[0], chunk):
            top = torch.topk(vectors[a:a + chunk] @ keys.T, size, dim=1)
            self.sims[a:a + chunk], self.ids[a:a + chunk] = top.values, top.indices

    @property
    def size(self) -> int:
        return self.ids.shape[1]

    @staticmethod
    def worth_building(n_items: int, n_domain: int) -> bool:
        """Whether the all-items x domain product is small enough to build once."""
        return float(n_items) * n_domain <= MAX_PRODUCTS

    def top_unseen(self, vectors: torch.Tensor, block: slice, hist: torch.Tensor,
                   seen: torch.Tensor, k: int) -> np.ndarray:
        """``int64 [B, k]`` each row's ``k`` best unseen items of the domain by max-pooled
        cosine, in the order of ``candidates.top_n`` over the full scores (ties: lower item).

        Args:
            vectors: ``[n_items, dim]`` the unit vectors the index was built from.
            block: the domain's global item slice.
            hist: ``int64 [B, L]`` global history items, ``-1`` pads.
            seen: ``bool [B, n]`` the items never nominated.
            k: items per row (at most ``K``).
        """
        b, n = seen.shape
        k = min(k, n)
        valid = hist >= 0  # [B, L]
        nb = self.ids[hist.clamp(min=0)]  # [B, L, K] local items
        nb_seen = seen.gather(1, nb.reshape(b, -1)).reshape(nb.shape)  # [B, L, K]
        # the bound of the module docstring, per history item; padding never fails it
        ok = ((k + nb_seen.sum(dim=2)) <= self.size) | ~valid
        exact = ok.all(dim=1) & valid.any(dim=1)
        dense = torch.full((b, n), float("-inf"))
        sims = self.sims[hist.clamp(min=0)].masked_fill(~valid[:, :, None] | nb_seen,
                                                        float("-inf"))
        dense.scatter_reduce_(1, nb.reshape(b, -1), sims.reshape(b, -1), "amax")
        slow = torch.nonzero(~exact).reshape(-1)
        if len(slow):  # the full product for the rows the bound does not cover
            full = max_cosine(vectors, hist[slow], vectors[block])
            dense[slow] = full.masked_fill(seen[slow], float("-inf"))
        z = dense.nan_to_num(neginf=-1e9).numpy()
        return top_n(z, k)
