"""Item metadata features of the ranker (group ``meta``): category words and brand.

Where the item table has ``categories`` and/or ``brand`` (any reader; Amazon's category paths,
MovieLens genres, a tabular file's columns), every item gets a TF-IDF row over its category
words and its brand (the whole brand string is one token): rare words and brands weigh most,
"office products" almost nothing. Per (user, candidate) pair and per domain of the user's
history, the features are the candidate's largest cosine to one history item and its cosine
to the recency-weighted history profile, plus, where items have a brand, the share of the
user's history items of the candidate's brand. The tokens come from the catalogue alone (no
interactions), so the same matrix serves episodes, the full fit and requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from crossrec.data import MultiDomainDataset

_WORD = re.compile(r"[^\W_]{2,}")


@dataclass
class ItemMeta:
    """Attributes:
    tokens: ``float32 [n_items, T]`` CSR, L2-normalised TF-IDF rows (zero rows: no metadata).
    brand: ``int64 [n_items]`` brand code, -1 unknown; None when no item has a brand.
    """

    tokens: sp.csr_matrix
    brand: np.ndarray | None

    def state(self) -> dict[str, np.ndarray]:
        t = self.tokens
        out = {"meta.data": t.data, "meta.indices": t.indices.astype(np.int64),
               "meta.indptr": t.indptr.astype(np.int64),
               "meta.shape": np.array(t.shape, dtype=np.int64)}
        if self.brand is not None:
            out["meta.brand"] = self.brand
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ItemMeta | None:
        if "meta.data" not in state:
            return None
        shape = tuple(int(x) for x in np.asarray(state["meta.shape"]))
        tokens = sp.csr_matrix((np.asarray(state["meta.data"]), np.asarray(state["meta.indices"]),
                                np.asarray(state["meta.indptr"])), shape=shape)
        brand = np.asarray(state["meta.brand"]) if "meta.brand" in state else None
        return cls(tokens, brand)


def _texts(train: MultiDomainDataset, column: str) -> list[str] | None:
    attrs = train.item_attrs
    if attrs is None or column not in attrs.columns:
        return None
    values = attrs[column].fillna("").astype(str).str.strip().str.lower().tolist()
    return values if any(values) else None


def item_meta(train: MultiDomainDataset) -> ItemMeta | None:
    """The items' token matrix, or None when the data has neither categories nor brand."""
    cats, brands = _texts(train, "categories"), _texts(train, "brand")
    if cats is None and brands is None:
        return None
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    brand = None
    if brands is not None:
        codes: dict[str, int] = {}
        brand = np.array([codes.setdefault(b, len(codes)) if b else -1 for b in brands],
                         dtype=np.int64)
    for i in range(train.n_items):
        words = set(_WORD.findall(cats[i])) if cats is not None else set()
        if brands is not None and brands[i]:
            words.add("\x1fbrand:" + brands[i])
        for w in sorted(words):  # a fixed column order (set order follows the hash seed)
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    n = train.n_items
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                      shape=(n, max(len(vocab), 1)))
    df = np.bincount(cols, minlength=x.shape[1]).astype(np.float64)
    has = max(int((np.diff(x.indptr) > 0).sum()), 1)
    idf = np.log((1.0 + has) / (1.0 + df)) + 1.0
    x = sp.csr_matrix(x @ sp.diags(idf.astype(np.float32)))
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    x = sp.csr_matrix(sp.diags((1.0 / np.maximum(norm, 1e-12)).astype(np.float32)) @ x)
    x.sort_indices()
    return ItemMeta(x.astype(np.float32), brand)


def meta_names(domains: tuple[str, ...], meta: ItemMeta | None) -> list[str]:
    """Column names of the ``meta`` group (none without metadata)."""
    if meta is None:
        return []
    out = [f"meta:{d}:{k}" for d in domains for k in ("max", "profile")]
    return out + (["meta:brand"] if meta.brand is not None else [])


def meta_features(meta: ItemMeta | None, gitems: np.ndarray, starts: np.ndarray,
                  hist: np.ndarray, dom: np.ndarray, n_domains: int, decay: float
                  ) -> list[np.ndarray]:
    """``float32 [P]`` columns in ``meta_names`` order.

    Args:
        gitems: ``int64 [P]`` global candidate items, grouped by batch row.
        starts: ``int64 [B + 1]`` bounds of each batch row's pairs.
        hist: ``int64 [B, L]`` most recent global items per user, left-padded with -1.
        dom: ``int [B, L]`` domain index of each history item, -1 on padding.
    """
    if meta is None:
        return []
    n_cols = 2 * n_domains + (meta.brand is not None)
    feats = np.full((len(gitems), n_cols), np.nan, dtype=np.float32)
    cand = meta.tokens[gitems]  # [P, T]
    for r in range(hist.shape[0]):
        a, b = starts[r], starts[r + 1]
        valid = hist[r] >= 0
        if a == b or not valid.any():
            continue
        h = hist[r][valid]
        hd = dom[r][valid]
        ht = meta.tokens[h]  # [L_r, T]
        sims = (cand[a:b] @ ht.T).toarray()  # [C, L_r], oldest first
        gram = (ht @ ht.T).toarray()  # [L_r, L_r]
        for d in range(n_domains):
            m = np.flatnonzero(hd == d)
            if not len(m):
                continue
            w = decay ** np.arange(len(m))[::-1]
            norm = np.sqrt(max(float(w @ gram[np.ix_(m, m)] @ w), 0.0))
            feats[a:b, 2 * d] = sims[:, m].max(1)
            feats[a:b, 2 * d + 1] = sims[:, m] @ w / norm if norm > 0 else 0.0
        if meta.brand is not None:
            cb = meta.brand[gitems[a:b]]
            hb = meta.brand[h]
            share = (cb[:, None] == hb[None, :]).mean(1)
            feats[a:b, -1] = np.where(cb >= 0, share, np.nan)
    return list(feats.T)
