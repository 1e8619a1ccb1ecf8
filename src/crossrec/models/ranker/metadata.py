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


def _blocks(tokens: sp.csr_matrix, owner: np.ndarray, n_owners: int) -> sp.csr_matrix:
    """``tokens`` (``[N, T]``) with row ``i``'s columns moved to block ``owner[i]``
    (``[N, n_owners * T]``): a product of two such matrices holds only same-owner pairs."""
    n_tok = tokens.shape[1]
    per_row = np.diff(tokens.indptr)
    cols = tokens.indices.astype(np.int64) + n_tok * np.repeat(owner, per_row)
    return sp.csr_matrix((tokens.data, cols, tokens.indptr), shape=(tokens.shape[0],
                                                                    n_owners * n_tok))


def _dense_blocks(prod: sp.csr_matrix, row_owner: np.ndarray, col_start: np.ndarray,
                  width: int) -> np.ndarray:
    """``float32 [N, width]``: row ``i`` of a block product, its columns counted from its
    owner's first column (``col_start[row_owner[i]]``); absent entries 0, as ``toarray``."""
    prod = prod.tocoo()
    out = np.zeros((prod.shape[0], max(width, 1)), dtype=np.float32)
    out[prod.row, prod.col - col_start[row_owner[prod.row]]] = prod.data
    return out


def meta_features(meta: ItemMeta | None, gitems: np.ndarray, starts: np.ndarray,
                  hist: np.ndarray, dom: np.ndarray, n_domains: int, decay: float
                  ) -> list[np.ndarray]:
    """``float32 [P]`` columns in ``meta_names`` order.

    Every user's candidate x history and history x history token products come from two
    sparse products over user-blocked token columns (``_blocks``): each entry is summed in
    the same order as a per-user product, so the values are the same bit for bit.

    Args:
        gitems: ``int64 [P]`` global candidate items, grouped by batch row.
        starts: ``int64 [B + 1]`` bounds of each batch row's pairs.
        hist: ``int64 [B, L]`` most recent global items per user, left-padded with -1.
        dom: ``int [B, L]`` domain index of each history item, -1 on padding.
    """
    if meta is None:
        return []
    n_cols = 2 * n_domains + (meta.brand is not None)
    b = hist.shape[0]
    feats = np.full((len(gitems), n_cols), np.nan, dtype=np.float32)
    valid = hist >= 0
    lengths = valid.sum(1)
    h_owner, _ = np.nonzero(valid)  # row-major: each user's history, oldest first
    h_items, h_dom = hist[valid], dom[valid]
    h_start = np.concatenate([[0], np.cumsum(lengths)])
    c_owner = np.repeat(np.arange(b), np.diff(starts))
    ht = _blocks(meta.tokens[h_items], h_owner, b)  # [sum L_r, B * T]
    cand = _blocks(meta.tokens[gitems], c_owner, b)  # [P, B * T]
    width = int(lengths.max()) if b else 0
    sims_all = _dense_blocks((cand @ ht.T).tocsr(), c_owner, h_start, width)  # [P, L_max]
    gram_all = _dense_blocks((ht @ ht.T).tocsr(), h_owner, h_start, width)  # [sum L_r, L_max]
    for r in range(b):
        a, z = starts[r], starts[r + 1]
        n_h = lengths[r]
        if a == z or not n_h:
            continue
        h = h_items[h_start[r]:h_start[r + 1]]
        hd = h_dom[h_start[r]:h_start[r + 1]]
        sims = sims_all[a:z, :n_h]  # [C, L_r], oldest first
        gram = gram_all[h_start[r]:h_start[r + 1], :n_h]  # [L_r, L_r]
        for d in range(n_domains):
            m = np.flatnonzero(hd == d)
            if not len(m):
                continue
            w = decay ** np.arange(len(m))[::-1]
            norm = np.sqrt(max(float(w @ gram[np.ix_(m, m)] @ w), 0.0))
            feats[a:z, 2 * d] = sims[:, m].max(1)
            feats[a:z, 2 * d + 1] = sims[:, m] @ w / norm if norm > 0 else 0.0
        if meta.brand is not None:
            cb = meta.brand[gitems[a:z]]
            hb = meta.brand[h]
            share = (cb[:, None] == hb[None, :]).mean(1)
            feats[a:z, -1] = np.where(cb >= 0, share, np.nan)
    return list(feats.T)
