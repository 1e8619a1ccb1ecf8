"""``ranker``: a learned two-stage recommender — candidate sources, then LightGBM lambdarank.

Stage 1: every candidate source (any registered model) scores the ranked domain and nominates
its top ``n`` unseen items; the union is the candidate set (``candidates.py``). Stage 2: each
(user, candidate) pair gets named feature groups (``features.py``: the sources' scores and
ranks, popularity, history lengths, text similarities, a learned cross-domain text map,
text→CF) and a LightGBM ``lambdarank`` model orders them; items outside the union keep the
first source's order below every candidate.

Training never sees valid/test truth: the ranker's labels come from episodes carved out of the
training split (``episodes.py``); the sources are fitted on the episode training rows to make
the ranker's training features, then refitted on the whole training split for scoring.
LightGBM stops early on a held-out share of the episode users.
"""

from __future__ import annotations

import time
from typing import Any, Self

import numpy as np
import torch

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import FitOptions, Query, Recommender
from crossrec.models.ranker.candidates import (
    Candidates,
    fit_sources,
    nominate,
    reuse,
    source_label,
)
from crossrec.models.ranker.config import RankerConfig
from crossrec.models.ranker.episodes import Episodes, make_episodes
from crossrec.models.ranker.features import FeatureBuilder, per_user_z
from crossrec.models.ranker.learn import threads as _threads


class Ranker(Recommender):
    """Candidate sources + LightGBM lambdarank over named feature groups.

    State: each source's state under ``source{j}.``, the LightGBM model text (``booster``,
    ``uint8``), the feature state (``text.vectors`` float32 with float16 values,
    ``text.density``, ``text.neighbours`` and ``text.neighbour_sims``, ``text_map.<domain>``,
    ``cf``, ``cf_map``, ``tower.<weight>.<domain>``, ``meta.*``: the category/brand token
    matrix as CSR arrays, ``time.*``: per-item counts per time bucket).
    """

    Config = RankerConfig
    name = "ranker"
    deterministic = False  # its episodes and LightGBM draw from options.seed
    config: RankerConfig

    def __init__(self, config: RankerConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.source_names = [source_label(s) for s in c.candidates]
        self.sizes = [int(s.get("n", c.n_candidates)) for s in c.candidates]
        from crossrec.models.ranker.links import has_links

        links = tuple(j for j, spec in enumerate(c.candidates) if has_links(spec))
        self.features = FeatureBuilder(c.features, self.source_names, c.decay, c.max_history,
                                       links)
        self.sources: list[Recommender] = []
        self.booster: Any = None
        self._trees: Any = None  # the compiled boosters (None: not tried yet, False: none)
        self.report: dict[str, Any] = {}
        self.source_weight = 0.0
        self._memo: dict | None = None
        self._last: tuple | None = None  # (domain, users, candidates, features) last scored

    # --------------------------------------------------------------- fit
    def _log(self, msg: str) -> None:
        if self.options is not None and self.options.progress:
            print(msg, flush=True)

    def _vectors(self, train: MultiDomainDataset, options: FitOptions) -> np.ndarray | None:
        if not self.features.uses_text:
            return None
        v = self.config.item_vectors(train, progress=options.progress, target=options.target)
        return v.astype(np.float16).astype(np.float32)  # the stored values, exactly

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        c = self.config
        self.train_data, self.options = train, options
        self._last = None
        start = time.perf_counter()
        parts, hits = [], [0, 0]
        # with update_sources, the sources that score (on the whole training split) are
        # fitted first, and a source that can (EASE) updates that fit to the episode rows
        full = fit_sources(c.candidates, train, options, self._log) if c.update_sources else None
        for fold in range(c.episode_folds):
            for pos in range(c.episode_positions):
                ep = reuse(("episodes", id(train), c.episodes, options.target, c.episode_ratio,
                            c.max_episode_users, c.n_shots, options.seed, fold, pos),
                           lambda f=fold, p=pos: make_episodes(
                               train, c.episodes, options.target, ratio=c.episode_ratio,
                               max_users=c.max_episode_users, n_shots=c.n_shots,
                               seed=options.seed, fold=f, position=p))
                self._log(f"ranker: {c.episodes} episodes (fold {fold + 1}/{c.episode_folds}"
                          + (f", position {pos}" if c.episode_positions > 1 else "")
                          + f"): {len(ep.labels):,} hidden rows of "
                          f"{ep.labels['user'].nunique():,} users")
                self.sources = fit_sources(c.candidates, ep.train, options, self._log,
                                           base=full)
                self.features.fit(ep.train, self._vectors(ep.train, options), l2=c.l2,
                                  factors=c.factors, seed=options.seed)
                # the candidate recall reported is that of the latest position's episodes
                parts.append(self._episode_rows(ep, options.seed + fold + 1000 * pos,
                                                hits if pos == 0 else [0, 0]))
        x, y, groups, users = (np.concatenate(p) for p in zip(*parts, strict=True))
        self.report["candidate_recall"] = hits[0] / max(hits[1], 1)
        self.report["episode_users"] = len(groups)
        self._train_booster(x, y, groups, users, options.seed)
        self.report["episode_seconds"] = time.perf_counter() - start
        # the sources and feature maps that score: on the whole training split
        self.sources = full or fit_sources(c.candidates, train, options, self._log)
        self.features.fit(train, self._vectors(train, options), l2=c.l2, factors=c.factors,
                          seed=options.seed)
        self._choose_source_weight(options)
        self.report["fit_seconds"] = time.perf_counter() - start
        self._log(f"ranker: fitted in {self.report['fit_seconds']:.1f}s; episode candidate "
                  f"recall {self.report['candidate_recall']:.3f}, "
                  f"{self.report['trees']} trees, source weight "
                  f"{self.report['source_weight']} (valid {self.report['source_weight_curve']})")
        return self

    def _episode_rows(self, ep: Episodes, seed: int, hits: list[int]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Feature rows, 0/1 labels, group sizes and group users of every episode user;
        adds the labels found among the candidates and all labels to ``hits``."""
        rng = np.random.default_rng(seed)
        train = ep.train
        xs, ys, sizes, owners = [], [], [], []
        hit = total = 0
        for di, domain in enumerate(train.domains):
            users = ep.users(di)
            if len(users) == 0:
                continue
            lab = ep.labels[ep.labels["domain"].to_numpy() == di]
            start = train.domain_items(domain).start
            keys = set(zip(lab["user"].to_numpy().tolist(),
                           (lab["item"].to_numpy() - start).tolist(), strict=True))
            total += len(keys)
            for a in range(0, len(users), 256):
                batch = users[a:a + 256]
                cands, x = self._candidates(train, Query(torch.from_numpy(batch.astype(
                    np.int64))), domain)
                y = np.fromiter(((int(batch[r]), int(i)) in keys
                                 for r, i in zip(cands.rows, cands.items, strict=True)),
                                dtype=bool, count=len(cands.rows))
                hit += int(y.sum())
                starts = np.searchsorted(cands.rows, np.arange(len(batch) + 1))
                for r in range(len(batch)):
                    lo, hi = starts[r], starts[r + 1]
                    pos = np.flatnonzero(y[lo:hi])
                    if len(pos) == 0:
                        continue  # nothing to learn from a user whose items were not nominated
                    neg = np.flatnonzero(~y[lo:hi])
                    if len(neg) > self.config.negatives:
                        neg = np.sort(rng.choice(neg, self.config.negatives, replace=False))
                    # candidate order, not labels first: LightGBM's NDCG breaks ties by row
                    # order, so positives first would score a constant model as perfect
                    keep = lo + np.sort(np.concatenate([pos, neg]))
                    xs.append(x[keep])
                    ys.append(y[keep].astype(np.float32))
                    sizes.append(len(keep))
                    owners.append(int(batch[r]))
        if not xs:
            from crossrec.errors import DataError

            raise DataError("ranker: no episode user has a hidden item among the candidates; "
                            "raise the sources' n or use other sources")
        hits[0] += hit
        hits[1] += total
        return np.concatenate(xs), np.concatenate(ys), np.array(sizes), np.array(owners)

    def _train_booster(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray,
                       owners: np.ndarray, seed: int) -> None:
        from crossrec.models.ranker.learn import train_booster

        self.booster, stats = train_booster(x, y, sizes, self.config, seed, owners)
        self._trees = None
        self.report.update(stats)

    # --------------------------------------------------------------- scoring
    def _candidates(self, train: MultiDomainDataset, query: Query, domain: str
                    ) -> tuple[Candidates, np.ndarray]:
        from crossrec.models.baselines.text_zero_shot import query_histories

        s = train.domain_items(domain)
        history = self._history(train, query)
        seen = torch.from_numpy(history[:, s].toarray() > 0)
        cands = nominate(self.sources, self.sizes, query, domain, seen,
                         self.config.z_sample)
        hist = query_histories(train, query, self.config.max_history)
        users = query.users.detach().cpu().numpy().astype(np.int64).reshape(-1)
        return cands, self.features.build(train, domain, cands, hist, history, users,
                                          self.sources)

    def _history(self, train: MultiDomainDataset, query: Query):  # noqa: ANN202
        saved = self.train_data
        self.train_data = train
        try:
            return self.history_matrix(query)
        finally:
            self.train_data = saved

    def _ranked(self, query: Query, domain: str) -> tuple[Candidates, np.ndarray]:
        """The candidates and their LightGBM scores (memoised while choosing on validation)."""
        key = None
        if self._memo is not None and query.history is None:
            key = (domain, query.users.detach().cpu().numpy().tobytes())
            if key in self._memo:
                return self._memo[key]
        cands, x = self._candidates(self._check_fitted(), query, domain)
        pred = self._predict(x)
        if key is not None:
            self._memo[key] = (cands, pred)
        if query.history is None:  # what signals() of one of these users reads back
            self._last = (domain, query.users.detach().cpu().numpy(), cands, x)
        return cands, pred

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """``float64 [N]`` the boosters' mean score of the feature rows ``x`` (``[N, F]``):
        through the compiled trees where ``compile_trees`` and lleaves allow (compiled on
        first use), else LightGBM."""
        if not len(x):
            return np.zeros(0)
        if self._trees is None:
            from crossrec.models.ranker.compiled import compile_trees

            self._trees = (self.config.compile_trees and compile_trees(self.booster.boosters)
                           ) or False
        if self._trees:
            return self._trees.predict(x)
        return self.booster.predict(x, num_threads=_threads(self.config.threads))

    def user_rows(self, query: Query, domain: str) -> tuple[np.ndarray, np.ndarray]:
        """The candidates (``int64 [C]`` local items) and feature rows (``float32 [C, F]``) of
        a one-user ``query``: read back from the last scored batch when it held this user
        (scoring then explaining costs one candidate pass), else computed."""
        last = self._last
        if query.history is None and last is not None and last[0] == domain:
            hit = np.flatnonzero(last[1] == int(query.users[0]))
            if len(hit):
                at = last[2].rows == hit[0]
                return last[2].items[at], last[3][at]
        cands, x = self._candidates(self._check_fitted(), query, domain)
        return cands.items[cands.rows == 0], x[cands.rows == 0]

    def score(self, query: Query, domain: str) -> torch.Tensor:
        """LightGBM's score standardised over each user's candidates, plus ``source_weight`` x
        the first source's score standardised over the same candidates; non-candidates below,
        in the first source's order."""
        self._check_fitted()
        if self.booster is None:
            raise RuntimeError("Ranker is not fitted; call fit() first")
        cands, pred = self._ranked(query, domain)
        b = len(query.users)
        rows = cands.rows
        final = per_user_z(pred, rows, b)
        if self.source_weight:
            final = final + self.source_weight * per_user_z(cands.scores[0], rows, b)
        lowest = np.full(b, np.inf)
        np.minimum.at(lowest, rows, final)
        floor = np.where(np.isfinite(lowest), lowest - 2.0, 0.0)  # below the row's candidates
        out = torch.sigmoid(cands.fallback) + torch.from_numpy(floor).float()[:, None]
        out[torch.from_numpy(rows), torch.from_numpy(cands.items)] = torch.from_numpy(
            final.astype(np.float32))
        return out.float()

    def _choose_source_weight(self, options: FitOptions) -> None:
        """``source_weight`` as configured, else chosen on the validation users."""
        from crossrec.models.base import choose_on_validation

        c = self.config
        grid = (c.source_weight,) if c.source_weight is not None else c.source_weight_grid

        def apply(w: float) -> None:
            self.source_weight = w

        self._memo = {}
        try:
            chosen, curve = choose_on_validation(grid, apply, self, options.validate)
        finally:
            self._memo = None
        self.report["source_weight"], self.report["source_weight_curve"] = chosen, curve

    def union(self, query: Query, domain: str) -> Candidates:
        """The candidate pairs the sources nominate for ``query`` in ``domain`` (what the
        ranker can reorder: its ceiling)."""
        train = self._check_fitted()
        s = train.domain_items(domain)
        seen = torch.from_numpy(self._history(train, query)[:, s].toarray() > 0)
        return nominate(self.sources, self.sizes, query, domain, seen,
                         self.config.z_sample)

    def signals(self, query: Query, domain: str, items: np.ndarray, n: int = 3
                ) -> list[list[Any]]:
        """The ``n`` strongest reasons (``explain.Signal``) for each of ``items`` (local indices
        in ``domain``) of a one-user ``query``: LightGBM's SHAP contributions, in words."""
        from crossrec.models.ranker.explain import signals

        return signals(self, query, domain, np.asarray(items, dtype=np.int64).reshape(-1), n)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Ray's object store) without the compiled trees: native code does not
        travel; the receiving process compiles them again (or loads them from the cache)."""
        return {**self.__dict__, "_trees": None}

    def importance(self) -> dict[str, float]:
        """LightGBM gain importance per feature, normalised to sum 1."""
        gain = self.booster.feature_importance("gain")
        total = float(gain.sum()) or 1.0
        names = self.features.names(self._check_fitted())
        return {n: float(g) / total for n, g in zip(names, gain, strict=True)}

    # --------------------------------------------------------------- state
    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for j, model in enumerate(self.sources):
            out.update({f"source{j}.{k}": v for k, v in model.state().items()})
        out["source_weight"] = np.array([self.source_weight], dtype=np.float64)
        text = self.booster.model_to_string()
        out["booster"] = np.frombuffer(text.encode(), dtype=np.uint8).copy()
        st = self.features.state
        if st.vectors is not None:
            out["text.vectors"] = st.vectors.astype(np.float16)
        if st.density is not None:
            out["text.density"] = st.density
        if st.neighbours is not None and "text_smooth" in self.config.features:
            out["text.neighbours"] = st.neighbours.astype(np.int32)
            out["text.neighbour_sims"] = st.neighbour_sims
        for d, w in st.text_maps.items():
            out[f"text_map.{d}"] = w
        if st.cf is not None:
            out["cf"], out["cf_map"] = st.cf, st.cf_map
        for d, towers in st.towers.items():
            out.update({f"tower.{k}.{d}": w for k, w in towers.weights.items()})
        if st.meta is not None:
            out.update(st.meta.state())
        if st.times is not None:
            out.update(st.times.state())
        return out

    def restore(self, train: MultiDomainDataset, options: FitOptions,
                state: dict[str, np.ndarray]) -> Self:
        from crossrec.models.ranker.candidates import build_source
        from crossrec.models.ranker.features import FeatureState
        from crossrec.models.ranker.learn import Ensemble
        from crossrec.models.ranker.metadata import ItemMeta
        from crossrec.models.ranker.timing import ItemTimes
        from crossrec.models.ranker.tower import read_towers

        self.train_data, self.options = train, options
        self._last = None
        self.sources = []
        for j, spec in enumerate(self.config.candidates):
            prefix = f"source{j}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            self.sources.append(build_source(spec).restore(train, options, sub))
        self.booster = Ensemble.from_string(bytes(np.asarray(state["booster"])).decode())
        self._trees = None
        self.source_weight = float(np.asarray(state["source_weight"])[0])
        st = FeatureState()
        if "text.vectors" in state:
            st.vectors = np.asarray(state["text.vectors"]).astype(np.float32)
        if "text.density" in state:
            st.density = np.asarray(state["text.density"])
        if "text.neighbours" in state:
            st.neighbours = np.asarray(state["text.neighbours"]).astype(np.int64)
            st.neighbour_sims = np.asarray(state["text.neighbour_sims"])
        st.text_maps = {k[len("text_map."):]: np.asarray(v) for k, v in state.items()
                        if k.startswith("text_map.")}
        if "cf" in state:
            st.cf, st.cf_map = np.asarray(state["cf"]), np.asarray(state["cf_map"])
        st.towers = read_towers(state)
        st.meta = ItemMeta.from_state(state)
        st.times = ItemTimes.from_state(state)
        self.features.state = st
        expected = len(self.features.names(train))  # the meta columns depend on the state
        if self.booster.num_feature() != expected:
            from crossrec.errors import DataError

            raise DataError(f"ranker state: its LightGBM model reads {self.booster.num_feature()} "
                            f"features, this crossrec builds {expected} for these feature groups "
                            "(saved by another crossrec version?); retrain it")
        return self

