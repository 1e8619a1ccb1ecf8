"""Zero-shot text recommender: a user is the mean text vector of their history, in any domain.

No training on any domain: item texts go through a pretrained sentence encoder (L2-normalised
vectors), a user is the recency-weighted mean of the vectors of the items in their history
(all domains), and an item of the ranked domain scores the cosine between the two, optionally
plus ``w`` x the item's standardised log-popularity in training. ``w`` is the only thing chosen,
on validation users, from a small grid. This is the answer for a brand-new target domain: it
needs nothing but the target items' texts.

With ``pooling = "max"`` (``"mean"`` by default) an item instead scores its largest cosine to any
of the user's recent history items (item-to-item text nearest neighbours: "like something you
bought"); the mean profile blurs a varied history into one direction. There is no two-tower
view then (exact scoring only), and no profile fusion.

With ``popularity_from_text`` (off by default), an item without training interactions (every
item of a brand-new domain, a cold-start item) gets a log-popularity *predicted from its text*:
a ridge regression from text vectors to ``log(1 + count)`` fitted on the items that have
interactions, in any domain (a content-based popularity prior, the item-bias half of a
text→collaborative map); counted and predicted values are then standardised per domain as usual.

Optional user profiles (``profile``, off by default): a small instruct language model
(``crossrec.encoders.profile``) writes a one-line interest profile of each *cold* user (training
history in a source domain, none in the ranked target) from their source titles; the profile
goes through the same text encoder, and that user's vector becomes
``normalise((1 - v) * normalise(history) + v * profile)``, ``v`` chosen on validation users
after ``w``. Users without a profile (others, or beyond the profiler's bound) keep the history
vector.
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
import torch
from pydantic import Field, model_validator

from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.sequence import PAD, user_sequences
from crossrec.encoders.profile import ProfilerConfig, ProfileResult
from crossrec.errors import DataError
from crossrec.models.base import FitOptions, Query, Recommender, choose_on_validation, with_column
from crossrec.models.baselines.max_cosine import NeighbourIndex, max_cosine, pair_cosines
from crossrec.models.text import QueryEncoder, TextConfig

NEIGHBOUR_MARGIN = 64  # nearest titles kept per item beyond the k asked (room for seen items)


class TextZeroShotConfig(TextConfig):
    """Zero-shot text model settings.

    Attributes:
        decay: recency weight; the k-th most recent history item (k = 0, 1, ...) weighs
            ``decay ** k`` (1.0 = plain mean).
        max_history: most recent history items used per user.
        popularity_weight: weight ``w`` of the standardised log-popularity prior; None = chosen
            from ``popularity_grid`` on validation users (0 when fitting without validation).
        popularity_grid: candidate weights tried on validation.
        pooling: "mean": the cosine to the recency-weighted mean history vector; "max": the
            largest cosine to one of the ``max_history`` most recent history items.
        popularity_from_text: items without training interactions get a log-popularity
            predicted from their text vector (module docstring); False = they count 0.
        popularity_l2: ridge penalty of that prediction.
        profile: settings of the language-model profiler; None (default) = no profiles.
        profile_weight: weight ``v`` of the profile vector in a profiled user's vector; None =
            chosen from ``profile_grid`` on validation users, after ``w`` (without validation:
            0, and no profile is written).
        profile_grid: candidate profile weights tried on validation.
    """

    decay: float = Field(0.9, gt=0.0, le=1.0)
    max_history: int = Field(50, ge=1)
    popularity_weight: float | None = Field(None, ge=0.0)
    popularity_grid: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    pooling: Literal["mean", "max"] = "mean"
    popularity_from_text: bool = False
    popularity_l2: float = Field(30.0, gt=0.0)

    @model_validator(mode="after")
    def _max_has_no_profile(self) -> Self:
        if self.pooling == "max" and self.profile is not None:
            raise ValueError("profile fuses a profile vector into the mean history vector; "
                             "it needs pooling = \"mean\"")
        return self
    profile: ProfilerConfig | None = None
    profile_weight: float | None = Field(None, ge=0.0, le=1.0)
    profile_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.35, 0.5)


def query_histories(train: MultiDomainDataset, query: Query, max_len: int) -> np.ndarray:
    """``int64 [B, max_len]`` the most recent items of each query row, left-padded with -1.

    From ``query.history`` when given (its non-padding entries in column order, the last one
    the most recent), else from each user's time-ordered training interactions.

    Raises:
        DataError: an item index out of range, or a user out of range without a history.
    """
    if query.history is None:
        users = query.users.detach().cpu().numpy().astype(np.int64).reshape(-1)
        if len(users) and (users.min() < 0 or users.max() >= train.n_users):
            raise DataError(f"user index out of range [0, {train.n_users}) and no history "
                            "given; an anonymous user needs Query.history")
        return user_sequences(train).padded(users, max_len)
    h = query.history.detach().cpu().numpy().astype(np.int64)
    if h.ndim != 2:
        raise DataError(f"Query.history must be [B, L], got shape {tuple(h.shape)}")
    if h.size and h.max() >= train.n_items:
        raise DataError(f"Query.history has item index {int(h.max())} >= {train.n_items}")
    out = np.full((h.shape[0], max_len), PAD, dtype=np.int64)
    for r, row in enumerate(h):
        items = row[row >= 0][-max_len:]
        if len(items):
            out[r, max_len - len(items):] = items
    return out


def log_popularity(train: MultiDomainDataset, vectors: np.ndarray | None = None,
                   l2: float = 30.0) -> np.ndarray:
    """``float32 [n_items]`` log(1 + training count), standardised within each domain
    (zero for a domain whose items all have the same count, e.g. none).

    With ``vectors`` (``[n_items, dim]`` text vectors), items without a count get the value a
    ridge regression (penalty ``l2``) fitted on the counted items predicts from their vector.
    """
    counts = np.bincount(train.interactions["item"].to_numpy(np.int64), minlength=train.n_items)
    out = np.log1p(counts).astype(np.float64)
    warm = counts > 0
    if vectors is not None and warm.any() and not warm.all():
        from crossrec.models.cross.text2cf import apply_ridge, ridge

        x = np.asarray(vectors, dtype=np.float32)
        weights = ridge(x[warm], out[warm, None], l2)
        out[~warm] = apply_ridge(x[~warm], weights)[:, 0]
    for d in train.domains:
        s = train.domain_items(d)
        block = out[s]
        std = block.std()
        out[s] = (block - block.mean()) / std if std > 0 else 0.0
    return out.astype(np.float32)


class TextZeroShot(Recommender):
    """Cosine between a recency-weighted mean of history text vectors and each item's vector.

    State: ``item_vectors`` (``float16 [n_items, dim]``; the model scores with exactly these
    values), ``popularity`` (``float32 [n_items]``) and ``popularity_weight`` (``[1]``); with
    profiles also ``profile_users`` (``int64 [P]``), ``profile_vectors`` (``float16 [P, dim]``)
    and ``profile_weight`` (``[1]``).
    """

    Config = TextZeroShotConfig
    name = "text_zero_shot"
    deterministic = True
    config: TextZeroShotConfig

    def __init__(self, config: TextZeroShotConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.vectors: torch.Tensor | None = None  # [n_items, dim] float32 (fp16 values)
        self.popularity: torch.Tensor | None = None  # [n_items]
        self.weight = 0.0
        self.profile_weight = 0.0
        self.profile_users: np.ndarray | None = None  # [P] user idx with a profile
        self.profile_row: torch.Tensor | None = None  # [n_users] row in profile_vectors, -1
        self.profile_vectors: torch.Tensor | None = None  # [P, dim] float32 (fp16 values)
        self.profile_result: ProfileResult | None = None  # of the last fit (not in the state)
        self._queries = QueryEncoder(self.config)
        self._index: dict[str, NeighbourIndex] = {}

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        """Encode (or read from the cache) every item text; choose ``w`` on validation; with
        ``profile``, profile the cold users and choose ``v`` (``_fit_profiles``)."""
        vectors = self.config.item_vectors(train, progress=options.progress,
                                           target=options.target)
        c = self.config
        popularity = log_popularity(train, vectors if c.popularity_from_text else None,
                                    c.popularity_l2)
        self._set(train, options, vectors.astype(np.float16), popularity)
        self.profile_weight, self.profile_users, self.profile_row = 0.0, None, None
        w = self.config.popularity_weight
        if w is None and options.validate is not None:
            w, curve = choose_on_validation(self.config.popularity_grid, self._set_weight,
                                            self, options.validate)
            self.validation = {"popularity_weight": w, "valid": curve.get(str(w))}
        self.weight = float(w or 0.0)
        v = self.config.profile_weight
        if self.config.profile is not None and (v if v is not None else options.validate):
            self._fit_profiles(train, options)  # not when v would be 0 anyway
        return self

    def _set_weight(self, w: float) -> None:
        self.weight = w

    def _set_profile_weight(self, v: float) -> None:
        self.profile_weight = v

    def profiled_users(self, train: MultiDomainDataset, options: FitOptions) -> np.ndarray:
        """``int64 [n]`` the users profiles are written for: training interactions in a source
        domain (``options.sources``, else every other domain) and none in the target."""
        sources = options.sources or tuple(d for d in train.domains if d != options.target)
        counts = {d: np.diff(train.user_items(d).indptr) for d in (*sources, options.target)}
        has_source = np.sum([counts[d] for d in sources], axis=0) > 0
        return np.flatnonzero(has_source & (counts[options.target] == 0)).astype(np.int64)

    def _fit_profiles(self, train: MultiDomainDataset, options: FitOptions) -> None:
        """Write (or read from the cache) the profiles, encode them, choose ``v``."""
        from crossrec.encoders import encode_items
        from crossrec.encoders.profile import UserProfiler

        users = self.profiled_users(train, options)
        sources = options.sources or tuple(d for d in train.domains if d != options.target)
        seq = user_sequences(train, sources)
        titles = [[train.item_text[i] for i in seq.of(u)] for u in users]
        result = UserProfiler(self.config.profile, device=options.device).profile(
            titles, progress=options.progress)
        self.profile_result = result
        keep = [r for r, p in enumerate(result.profiles) if p is not None]
        vectors = np.zeros((0, self.vectors.shape[1]), dtype=np.float32)
        if keep:
            vectors = encode_items([result.profiles[r] for r in keep], self.config.load_encoder(),
                                   batch_size=self.config.encoder_batch_size,
                                   progress=options.progress)
        self._set_profiles(train, users[keep], vectors)
        v = self.config.profile_weight
        if v is None and options.validate is not None and keep:
            v, curve = choose_on_validation(self.config.profile_grid, self._set_profile_weight,
                                            self, options.validate)
            self.validation = {**getattr(self, "validation", {}), "profile_weight": v,
                               "valid": curve.get(str(v)), "profile_curve": curve}
        self.profile_weight = float(v or 0.0)
        self.validation = {**getattr(self, "validation", {}), "profiles": {
            "users": len(users), "profiled": len(keep), "generated": result.generated,
            "from_cache": result.from_cache, "skipped": result.skipped,
            "no_titles": result.no_titles, "seconds": result.seconds,
            "users_per_second": result.users_per_second}}

    def _set_profiles(self, train: MultiDomainDataset, users: np.ndarray,
                      vectors: np.ndarray) -> None:
        if len(users) != len(vectors):
            raise DataError(f"{len(users)} profile users for {len(vectors)} profile vectors")
        row = torch.full((train.n_users,), -1, dtype=torch.int64)
        self.profile_users = np.asarray(users, dtype=np.int64)
        row[torch.from_numpy(self.profile_users)] = torch.arange(len(users))
        self.profile_row = row
        self.profile_vectors = torch.from_numpy(
            np.asarray(vectors, dtype=np.float16).astype(np.float32)).reshape(len(users), -1)

    def _set(self, train: MultiDomainDataset, options: FitOptions, vectors: np.ndarray,
             popularity: np.ndarray) -> None:
        if vectors.shape[0] != train.n_items:
            raise DataError(f"item_vectors has {vectors.shape[0]} rows for {train.n_items} items")
        self.train_data, self.options = train, options
        self.vectors = torch.from_numpy(np.asarray(vectors, dtype=np.float16).astype(np.float32))
        self.popularity = torch.from_numpy(np.asarray(popularity, dtype=np.float32))
        self._index: dict[str, NeighbourIndex] = {}  # domain -> nearest titles (top_unseen)

    def state(self) -> dict[str, np.ndarray]:
        if self.vectors is None:
            return {}
        state = {"item_vectors": self.vectors.numpy().astype(np.float16),
                 "popularity": self.popularity.numpy(),
                 "popularity_weight": np.array([self.weight], dtype=np.float64)}
        if self.profile_users is not None and len(self.profile_users):
            state["profile_users"] = self.profile_users
            state["profile_vectors"] = self.profile_vectors.numpy().astype(np.float16)
            state["profile_weight"] = np.array([self.profile_weight], dtype=np.float64)
        return state

    def restore(self, train: MultiDomainDataset, options: FitOptions,
                state: dict[str, np.ndarray]) -> Self:
        self._set(train, options, state["item_vectors"], state["popularity"])
        self.weight = float(np.asarray(state["popularity_weight"]).reshape(-1)[0])
        self._queries.bind(train, options.target)  # a ``lora`` encoder: queries use its weights
        if "profile_vectors" in state:
            self._set_profiles(train, state["profile_users"], state["profile_vectors"])
            self.profile_weight = float(np.asarray(state["profile_weight"]).reshape(-1)[0])
        return self

    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, dim]`` recency-weighted mean text vector of each history (zeros if empty)."""
        train = self._check_fitted()
        hist = torch.from_numpy(query_histories(train, query, self.config.max_history))
        valid = hist >= 0  # [B, L]; the last column is the most recent
        length = hist.shape[1]
        age = torch.arange(length - 1, -1, -1, dtype=torch.float64)  # 0 for the last column
        # age counts positions, padding sits on the left: the newest item has age 0
        weights = (self.config.decay ** age)[None, :] * valid  # [B, L]
        weights = (weights / weights.sum(1, keepdim=True).clamp(min=1e-12)).float()
        out = torch.empty((len(hist), self.vectors.shape[1]))
        for s in range(0, len(hist), 1024):  # bounded memory: [1024, L, dim] at a time
            rows = slice(s, s + 1024)
            out[rows] = torch.einsum("bl,bld->bd", weights[rows],
                                     self.vectors[hist[rows].clamp(min=0)])
        return out

    @torch.no_grad()
    def fused_user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, dim]`` normalised user vectors: the history vector, fused with the user's
        profile vector (weight ``profile_weight``) for a profiled user queried by index (a
        ``Query.history`` replaces the training history the profile was written from)."""
        u = torch.nn.functional.normalize(self.user_vectors(query), dim=1)
        if not self.profile_weight or self.profile_row is None or query.history is not None:
            return u
        users = query.users.detach().cpu().long().reshape(-1)
        row = self.profile_row[users]
        has = row >= 0
        if has.any():
            v = self.profile_weight
            u[has] = torch.nn.functional.normalize(
                (1 - v) * u[has] + v * self.profile_vectors[row[has]], dim=1)
        return u

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` cosine (+ ``w`` x popularity prior)."""
        train = self._check_fitted()
        return self._scores(query, train.domain_items(domain))  # DataError: unknown domain

    @torch.no_grad()
    def score_items(self, query: Query, domain: str, items: torch.Tensor) -> torch.Tensor:
        """``[B, m]`` ``score(query, domain)[:, items]`` (``items``: ``int64 [m]`` local)."""
        train = self._check_fitted()
        return self._scores(query, items + train.domain_items(domain).start)

    def _scores(self, query: Query, items: slice | torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "max":
            scores = self.max_cosine(query, items)
        else:
            scores = self.fused_user_vectors(query) @ self.vectors[items].T
        if self.weight:
            scores = scores + self.weight * self.popularity[items]
        return scores

    @torch.no_grad()
    def max_cosine(self, query: Query, items: slice | torch.Tensor) -> torch.Tensor:
        """``[B, n]`` each item's largest cosine to one of the user's ``max_history`` most
        recent history items (0 for an empty history)."""
        return max_cosine(self.vectors, self._histories(query), self.vectors[items])

    def _histories(self, query: Query) -> torch.Tensor:
        train = self._check_fitted()
        return torch.from_numpy(query_histories(train, query, self.config.max_history))

    @torch.no_grad()
    def top_unseen(self, query: Query, domain: str, seen: torch.Tensor, k: int
                   ) -> np.ndarray | None:
        """``int64 [B, k]`` the ``k`` best unseen items (local) without scoring every item:
        from each item's precomputed nearest titles (``max_cosine.NeighbourIndex``, built on
        first use per domain). None where the score is not the max-pooled cosine alone (mean
        pooling, a popularity weight) or the domain is too large to index."""
        train = self._check_fitted()
        if self.config.pooling != "max" or self.weight:
            return None
        s = train.domain_items(domain)
        index = self._index.get(domain)
        if index is None or index.size < min(k + NEIGHBOUR_MARGIN, s.stop - s.start):
            if not NeighbourIndex.worth_building(train.n_items, s.stop - s.start):
                return None
            index = self._index[domain] = NeighbourIndex(self.vectors, s, k + NEIGHBOUR_MARGIN)
        return index.top_unseen(self.vectors, s, self._histories(query), seen, k)

    @torch.no_grad()
    def score_pairs(self, query: Query, domain: str, rows: np.ndarray,
                    items: np.ndarray) -> np.ndarray:
        """``float32 [P]`` the scores of (batch row, local item) pairs (``rows`` sorted), equal
        to ``score(query, domain)[rows, items]`` without scoring every item."""
        train = self._check_fitted()
        s = train.domain_items(domain)
        g = np.asarray(items, dtype=np.int64) + s.start
        if self.config.pooling == "max":
            out = pair_cosines(self.vectors, self._histories(query), rows, g)
        else:
            u = self.fused_user_vectors(query)[torch.from_numpy(rows)]
            out = torch.einsum("pd,pd->p", u, self.vectors[torch.from_numpy(g)]).numpy()
        if self.weight:
            out = out + self.weight * self.popularity[torch.from_numpy(g)].numpy()
        return out.astype(np.float32)

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor | None:
        """``[n_items(domain), dim + 1]`` text vectors, then ``w`` x popularity (None with
        max pooling: not a dot product)."""
        if self.config.pooling == "max":
            return None
        items = self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        return with_column(self.vectors[items], self.weight * self.popularity[items])

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, dim + 1]`` normalised (profile-fused) user vectors, then 1."""
        self._check_fitted().domain_items(domain)  # DataError for an unknown domain
        return with_column(self.fused_user_vectors(query), 1.0)

    @torch.no_grad()
    def score_text(self, texts: list[str], domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` cosine between free-text queries and the domain's items.

        The encoder is loaded on the first call (offline, from its package).
        """
        train = self._check_fitted()
        items = train.domain_items(domain)
        if not texts:
            return torch.zeros((0, items.stop - items.start))
        q = self._queries(texts)
        if q.shape[1] != self.vectors.shape[1]:
            raise DataError(f"encoder {self.config.encoder!r} gives {q.shape[1]}-d vectors; "
                            f"the model's item vectors are {self.vectors.shape[1]}-d")
        q = torch.nn.functional.normalize(torch.from_numpy(np.asarray(q, np.float32)), dim=1)
        return q @ self.vectors[items].T
