"""Features of (user, candidate) pairs, in named groups an ablation can switch off.

Groups (``RankerConfig.features``):

- ``sources``: per candidate source, its score, its score standardised over the user's unseen
  items and over the user's candidates, and the candidate's rank in its nominations (NaN when
  it did not nominate it).
- ``popularity``: log training count, log count in the most recent 10 % of the domain's
  timestamps, popularity percentile in the domain.
- ``history``: the user's history length in each domain, in total, and the ranked domain's index.
- ``text``: cosine of the candidate's text vector to the user's history in each domain (max,
  mean, recency-weighted mean), to the most recent item, to the user's all-domain text profile;
  the item's text-neighbourhood density (mean cosine of its 10 nearest same-domain items).
- ``text_map``: a *learned* cross-domain text score: a ridge map, fitted on training users with
  history in the ranked domain and another one, from the text profile of a user's history
  outside the domain to the profile of their history inside it; the cosine of the mapped
  profile to the candidate.
- ``text2cf``: the candidate's text mapped into collaborative (PureSVD) space
  (``crossrec.models.cross.text2cf``) dotted with the user's folded-in factor, and the plain
  PureSVD score (0 for an item without interactions).
- ``text_tower`` (opt-in, not in ``DEFAULT_GROUPS``): a *learned* cross-domain text score
  from two towers trained contrastively on training users with history inside and outside
  the ranked domain (``crossrec.models.ranker.tower``): the cosine of the user tower's
  output for the user's outside-domain profile to the item tower's output for the
  candidate, raw and standardised over the user's candidates (NaN without outside history).
- ``text_smooth`` (opt-in): the first source's z-scores of the candidate's nearest same-domain
  titles (``crossrec.models.ranker.smooth``): collaborative evidence borrowed through text.
- ``links`` (opt-in): per item-item source (EASE, ItemKNN), the weights from the user's history
  items to the candidate behind its score: largest, positive count, last, recency-weighted
  (``crossrec.models.ranker.links``).
- ``time`` (opt-in): the candidate's popularity around the user's latest training timestamp
  (``crossrec.models.ranker.timing``).
- ``meta`` (opt-in): category words and brand where the items have them
  (``crossrec.models.ranker.metadata``): per history domain, the candidate's largest TF-IDF
  cosine to one history item and its cosine to the history profile; the share of the user's
  history items of the candidate's brand. No columns when the data has no such attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from crossrec.data.sequence import PAD
from crossrec.models.cross.text2cf import apply_ridge, cf_item_factors, ridge
from crossrec.models.ranker.links import link_features, link_names
from crossrec.models.ranker.metadata import ItemMeta, item_meta, meta_features, meta_names
from crossrec.models.ranker.smooth import NAMES as SMOOTH_NAMES
from crossrec.models.ranker.smooth import smooth_features, text_neighbours
from crossrec.models.ranker.timing import NAMES as TIME_NAMES
from crossrec.models.ranker.timing import ItemTimes, item_times, time_features, user_last_times
from crossrec.models.ranker.tower import Towers, fit_towers

if TYPE_CHECKING:
    import scipy.sparse as sp

    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.models.ranker.candidates import Candidates

GROUPS = ("sources", "popularity", "history", "text", "text_map", "text2cf", "meta", "text_tower",
          "text_smooth", "time", "links")
OPT_IN = ("meta", "text_tower", "text_smooth", "time", "links")  # measured case by case (RESULTS)
DEFAULT_GROUPS = tuple(g for g in GROUPS if g not in OPT_IN)
TEXT_GROUPS = ("text", "text_map", "text2cf", "text_tower", "text_smooth")
NEIGHBOURS = 10  # title neighbours of the density and text_smooth features


def per_user_z(values: np.ndarray, rows: np.ndarray, b: int) -> np.ndarray:
    """``float64 [P]`` ``values`` standardised over each user's pairs (``rows``: ``[P]`` batch
    row of each pair, ``b`` rows in the batch); 0 where a user's values are constant."""
    v = values.astype(np.float64)
    count = np.maximum(np.bincount(rows, minlength=b), 1).astype(np.float64)
    mean = np.bincount(rows, v, minlength=b) / count
    var = np.bincount(rows, (v - mean[rows]) ** 2, minlength=b) / count
    return (v - mean[rows]) / np.sqrt(var[rows] + 1e-12)


def _profiles(vectors: np.ndarray, hist: np.ndarray, keep: np.ndarray, decay: float
              ) -> np.ndarray:
    """``[B, dim]`` L2-normalised recency-weighted means of ``vectors[hist]`` where ``keep``
    (``hist``: ``[B, L]`` left-padded, newest last); zero rows where nothing is kept."""
    b, length = hist.shape
    age = np.cumsum(keep[:, ::-1], axis=1)[:, ::-1] - 1  # 0 = newest kept item
    w = np.where(keep, decay ** np.maximum(age, 0), 0.0).astype(np.float32)
    v = vectors[np.where(keep, hist, 0)]
    out = np.einsum("bl,bld->bd", w, v)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 0, out / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


@dataclass
class FeatureState:
    """What the feature builder learned at fit (all of it goes into the ranker's state)."""

    vectors: np.ndarray | None = None  # [n_items, dim] L2-normalised text vectors
    density: np.ndarray | None = None  # [n_items]
    neighbours: np.ndarray | None = None  # [n_items, k] nearest same-domain titles (global)
    neighbour_sims: np.ndarray | None = None  # [n_items, k] their cosines (NaN: padding)
    text_maps: dict[str, np.ndarray] = field(default_factory=dict)  # domain -> [dim + 1, dim]
    cf: np.ndarray | None = None  # [n_items, k] PureSVD item factors
    cf_map: np.ndarray | None = None  # [dim + 1, k] text -> factor ridge
    towers: dict[str, Towers] = field(default_factory=dict)  # ranked domain -> two towers
    tower_items: dict[str, np.ndarray] = field(default_factory=dict)  # cache: [n_d, k]
    cf_mapped: np.ndarray | None = None  # cache: [n_items, k] text mapped by cf_map
    meta: ItemMeta | None = None  # category/brand tokens (group "meta")
    times: ItemTimes | None = None  # per-item counts per time bucket (group "time")

    def mapped_items(self) -> np.ndarray:
        """``float32 [n_items, k]`` every item's text mapped into CF space by ``cf_map``
        (``apply_ridge(vectors, cf_map)``), computed on first use: it depends on the fitted
        state only. Computed per request instead (``apply_ridge(vectors[items], cf_map)``),
        BLAS may round a row's last bit differently with the number of rows in the product
        (one row goes through gemv; some gemm shapes take other kernels), so a pair's value
        could depend on its batch; here it is the item's alone. On the Arts -> Office ranker
        bundle every product of 2 to 7,000 rows gives these floats exactly."""
        if self.cf_mapped is None:
            self.cf_mapped = apply_ridge(self.vectors, self.cf_map)
        return self.cf_mapped


def _segment_dots(a: np.ndarray, vecs: np.ndarray, starts: np.ndarray,
                  users: np.ndarray | None = None) -> np.ndarray:
    """``float32 [P]`` the dot of each row of ``a`` (``[P, d]``, grouped by batch row) with its
    batch row's vector ``vecs[r]`` (``[B, d]``; ``starts``: ``[B + 1]`` group bounds), only
    for the batch rows ``users`` (default: all; NaN elsewhere).

    The same floats as ``np.einsum("pd,pd->p", vecs[rows], a)`` (one einsum per group runs
    the same contiguous dot-product loop) without the ``[P, d]`` gather of ``vecs``.
    """
    out = np.full(len(a), np.nan, dtype=np.float32)
    for r in range(len(vecs)) if users is None else users:
        lo, hi = starts[r], starts[r + 1]
        if hi > lo:
            out[lo:hi] = np.einsum("pd,d->p", a[lo:hi], vecs[r])
    return out


class FeatureBuilder:
    """Computes the feature matrix of candidate pairs from fitted state and training data."""

    def __init__(self, groups: tuple[str, ...], source_names: list[str], decay: float = 0.8,
                 max_history: int = 50, link_sources: tuple[int, ...] = ()) -> None:
        self.groups = groups
        self.source_names = source_names
        self.link_sources = link_sources  # sources with item-to-item weights (``links``)
        self.decay = decay
        self.max_history = max_history
        self.state = FeatureState()

    # --------------------------------------------------------------- fitting
    @property
    def uses_text(self) -> bool:
        return any(g in self.groups for g in TEXT_GROUPS)

    def fit(self, train: MultiDomainDataset, vectors: np.ndarray | None, *, l2: float = 10.0,
            factors: int = 64, seed: int = 0) -> None:
        """Learn the text maps, densities and CF factors on ``train`` (training rows only).

        The densities depend on the item vectors alone: a refit with the same vectors (the
        ranker's episode fit, then its fit on the whole split) keeps them."""
        st = FeatureState(vectors=vectors)
        prev = self.state
        if "meta" in self.groups:  # from the catalogue alone (0.2 s for 38k items)
            st.meta = item_meta(train)
        if "time" in self.groups:
            st.times = item_times(train)
        same = (prev.vectors is not None and vectors is not None
                and len(prev.vectors) == train.n_items and np.array_equal(prev.vectors, vectors))
        if same:
            st.density, st.neighbours = prev.density, prev.neighbours
            st.neighbour_sims = prev.neighbour_sims
        smooth = "text_smooth" in self.groups
        if ("text" in self.groups and st.density is None) or (smooth and st.neighbours is None):
            st.density = np.zeros(train.n_items, dtype=np.float32)
            st.neighbours = np.repeat(np.arange(train.n_items, dtype=np.int64)[:, None],
                                      NEIGHBOURS, 1)
            st.neighbour_sims = np.full((train.n_items, NEIGHBOURS), np.nan, dtype=np.float32)
            for d in train.domains:
                s = train.domain_items(d)
                idx, sims = text_neighbours(vectors[s], NEIGHBOURS)
                k = idx.shape[1]
                if k:
                    st.density[s] = torch.from_numpy(sims).mean(1).numpy()
                st.neighbours[s, :k] = idx + s.start
                st.neighbour_sims[s, :k] = sims
        if "text_map" in self.groups or "text_tower" in self.groups:
            from crossrec.data.sequence import user_sequences

            users = np.arange(train.n_users)
            hist = user_sequences(train).padded(users, self.max_history)
            dom = np.where(hist >= 0, train.item_domain[np.maximum(hist, 0)], -1)
            inter = train.interactions
            for di, d in enumerate(train.domains):
                outside = _profiles(vectors, hist, (dom >= 0) & (dom != di), self.decay)
                if "text_map" in self.groups:
                    inside = _profiles(vectors, hist, dom == di, self.decay)
                    both = (np.abs(inside).sum(1) > 0) & (np.abs(outside).sum(1) > 0)
                    if both.sum() >= 10:
                        st.text_maps[d] = ridge(outside[both], inside[both], l2)
                if "text_tower" in self.groups:
                    s = train.domain_items(d)
                    in_d = inter["domain"].to_numpy() == di
                    u = inter["user"].to_numpy(np.int64)[in_d]
                    i = inter["item"].to_numpy(np.int64)[in_d] - s.start
                    keep = np.abs(outside[u]).sum(1) > 0
                    towers = fit_towers(outside, u[keep], i[keep], vectors[s], seed=seed)
                    if towers is not None:
                        st.towers[d] = towers
        if "text2cf" in self.groups:
            st.cf = cf_item_factors(train, factors, seed)
            warm = np.abs(st.cf).sum(1) > 0
            st.cf_map = ridge(vectors[warm], st.cf[warm], l2)
        self.state = st

    # --------------------------------------------------------------- names
    def names(self, train: MultiDomainDataset) -> list[str]:
        """Feature names in column order."""
        out: list[str] = []
        if "sources" in self.groups:
            for s in self.source_names:
                out += [f"{s}:score", f"{s}:z", f"{s}:cz", f"{s}:rank"]
        if "popularity" in self.groups:
            out += ["pop:log", "pop:recent", "pop:percentile"]
        if "history" in self.groups:
            out += [f"history:{d}" for d in train.domains] + ["history:total", "domain"]
        if "text" in self.groups:
            for d in train.domains:
                out += [f"text:{d}:max", f"text:{d}:mean", f"text:{d}:recent"]
            out += ["text:last", "text:profile", "text:density"]
        if "text_map" in self.groups:
            out += ["text_map"]
        if "text2cf" in self.groups:
            out += ["text2cf:mapped", "text2cf:svd"]
        if "text_tower" in self.groups:
            out += ["text_tower", "text_tower:cz"]
        if "text_smooth" in self.groups:
            out += list(SMOOTH_NAMES)
        if "time" in self.groups:
            out += list(TIME_NAMES)
        if "links" in self.groups:
            out += link_names([self.source_names[j] for j in self.link_sources])
        if "meta" in self.groups:
            out += meta_names(train.domains, self.state.meta)
        return out

    # --------------------------------------------------------------- features
    def popularity(self, train: MultiDomainDataset) -> np.ndarray:
        """``float32 [n_items, 3]`` log count, log recent count, percentile in domain."""
        key = ("ranker_popularity",)
        if key in train._cache:
            return train._cache[key]
        inter = train.interactions
        items = inter["item"].to_numpy(np.int64)
        counts = np.bincount(items, minlength=train.n_items).astype(np.float64)
        recent = np.zeros(train.n_items)
        pct = np.zeros(train.n_items)
        ts = inter["timestamp"].to_numpy()
        dom = inter["domain"].to_numpy()
        for di, d in enumerate(train.domains):
            s = train.domain_items(d)
            in_d = dom == di
            if in_d.any():
                cut = np.quantile(ts[in_d], 0.9)
                recent += np.bincount(items[in_d & (ts >= cut)], minlength=train.n_items)
            c = counts[s]
            if len(c):
                pct[s] = (np.argsort(np.argsort(c, kind="stable"), kind="stable") + 1) / len(c)
        out = np.stack([np.log1p(counts), np.log1p(recent), pct], 1).astype(np.float32)
        train._cache[key] = out
        return out

    def build(self, train: MultiDomainDataset, domain: str, cands: Candidates,
              hist: np.ndarray, history: sp.csr_matrix, users: np.ndarray | None = None,
              sources: list | None = None) -> np.ndarray:
        """``float32 [P, F]`` features of the candidate pairs.

        Args:
            train: the training data the candidate models were fitted on.
            domain: the ranked domain.
            cands: the pairs (``rows`` sorted) and the sources' signals.
            hist: ``int64 [B, L]`` most recent global items per user, left-padded with -1.
            history: ``[B, n_items]`` binary history over every item.
            users: ``int64 [B]`` the users (-1: anonymous); needed by the ``time`` group.
            sources: the fitted candidate sources; needed by the ``links`` group.
        """
        s = train.domain_items(domain)
        di = train.info.domain_index(domain)
        gitems = cands.items + s.start
        rows = cands.rows
        cols: list[np.ndarray] = []  # [P] each, cast to float32 into the output
        if "sources" in self.groups:
            b = hist.shape[0]
            for j in range(len(self.source_names)):
                cols += [cands.scores[j], cands.zscores[j],
                         per_user_z(cands.scores[j], rows, b), cands.ranks[j]]
        if "popularity" in self.groups:
            cols += list(self.popularity(train)[gitems].T)
        if "history" in self.groups:
            per_dom = np.stack([np.asarray(history[:, train.domain_items(d)].sum(1)).ravel()
                                for d in train.domains], 1).astype(np.float32)
            cols += list(per_dom[rows].T) + [per_dom.sum(1)[rows],
                                             np.full(len(rows), di, np.float32)]
        if self.uses_text:
            cols += self._text(train, di, gitems, rows, hist, history)
        if "text_smooth" in self.groups:
            st = self.state
            cols += smooth_features(st.neighbours, st.neighbour_sims, cands.fallback.numpy(),
                                    rows, gitems, s.start)
        if "time" in self.groups:
            if users is None:
                raise ValueError("the 'time' features need the batch's users")
            last = user_last_times(train)
            when = np.where(users >= 0, last[np.maximum(users, 0)], np.nan)
            cols += time_features(self.state.times, when, rows, gitems)
        if "links" in self.groups and self.link_sources:
            if sources is None:
                raise ValueError("the 'links' features need the fitted sources")
            starts = np.searchsorted(rows, np.arange(hist.shape[0] + 1))
            cols += link_features([sources[j] for j in self.link_sources], domain,
                                  cands.items, starts, hist, self.decay)
        if "meta" in self.groups and self.state.meta is not None:
            valid = hist != PAD
            dom = np.where(valid, train.item_domain[np.maximum(hist, 0)], -1)
            starts = np.searchsorted(rows, np.arange(hist.shape[0] + 1))
            cols += meta_features(self.state.meta, gitems, starts, hist, dom,
                                  len(train.domains), self.decay)
        out = np.empty((len(rows), len(cols)), dtype=np.float32)
        for j, col in enumerate(cols):
            out[:, j] = col  # float64 columns rounded to float32 as astype does
        return out

    def _text(self, train: MultiDomainDataset, di: int, gitems: np.ndarray, rows: np.ndarray,
              hist: np.ndarray, history: sp.csr_matrix) -> list[np.ndarray]:
        st = self.state
        v = st.vectors
        cand = v[gitems]  # [P, dim]
        valid = hist != PAD
        dom = np.where(valid, train.item_domain[np.maximum(hist, 0)], -1)
        out: list[np.ndarray] = []
        starts = np.searchsorted(rows, np.arange(hist.shape[0] + 1))  # [B + 1] groups
        if "text" in self.groups:
            nd = len(train.domains)
            feats = np.full((len(rows), 3 * nd + 2), np.nan, dtype=np.float32)
            profile = _profiles(v, hist, valid, self.decay)
            for r in range(hist.shape[0]):
                a, b = starts[r], starts[r + 1]
                if a == b or not valid[r].any():
                    continue
                h = hist[r][valid[r]]
                hd = dom[r][valid[r]]
                sims = cand[a:b] @ v[h].T  # [C, L_r], oldest first
                for d in range(nd):
                    m = hd == d
                    if not m.any():
                        continue
                    sd = sims[:, m]
                    w = self.decay ** np.arange(m.sum())[::-1]
                    feats[a:b, 3 * d] = sd.max(1)
                    feats[a:b, 3 * d + 1] = sd.mean(1)
                    feats[a:b, 3 * d + 2] = sd @ (w / w.sum())
                feats[a:b, 3 * nd] = sims[:, -1]
                feats[a:b, 3 * nd + 1] = cand[a:b] @ profile[r]
            out += list(feats.T) + [st.density[gitems]]
        if "text_map" in self.groups:
            col = np.full(len(rows), np.nan, dtype=np.float32)
            w = st.text_maps.get(train.domains[di])
            if w is not None:
                outside = _profiles(v, hist, valid & (dom != di), self.decay)
                has = np.abs(outside).sum(1) > 0
                mapped = apply_ridge(outside, w)
                mapped /= np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
                col = _segment_dots(cand, mapped, starts, np.flatnonzero(has))
            out.append(col)
        if "text2cf" in self.groups:
            user = np.asarray(history @ st.cf, dtype=np.float32)  # [B, k]
            out += [_segment_dots(st.mapped_items()[gitems], user, starts),
                    _segment_dots(st.cf[gitems], user, starts)]
        if "text_tower" in self.groups:
            out += self._tower(train, di, gitems, rows, hist, valid & (dom != di))
        return out

    def _tower(self, train: MultiDomainDataset, di: int, gitems: np.ndarray, rows: np.ndarray,
               hist: np.ndarray, outside: np.ndarray) -> list[np.ndarray]:
        """The two-tower cosine of each pair and its per-user standardisation."""
        st = self.state
        domain = train.domains[di]
        col = np.full(len(rows), np.nan, dtype=np.float32)
        towers = st.towers.get(domain)
        if towers is None:
            return [col, col.copy()]
        s = train.domain_items(domain)
        if domain not in st.tower_items:
            st.tower_items[domain] = towers.items(st.vectors[s])
        profiles = _profiles(st.vectors, hist, outside, self.decay)
        has = (np.abs(profiles).sum(1) > 0)[rows]
        user = towers.users(profiles)
        col[has] = np.einsum("pk,pk->p", user[rows[has]],
                             st.tower_items[domain][gitems[has] - s.start])
        z = per_user_z(np.nan_to_num(col), rows, hist.shape[0]).astype(np.float32)
        z[~has] = np.nan
        return [col, z]
