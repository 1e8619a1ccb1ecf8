"""Typed settings of the two-stage ranker (``RankerConfig``), checked when a config is read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from crossrec.models.ranker.candidates import source_label
from crossrec.models.ranker.episodes import EpisodeKind
from crossrec.models.ranker.features import DEFAULT_GROUPS, GROUPS
from crossrec.models.text import TextConfig

DEFAULT_SOURCES = ({"name": "ease", "train_on": "all", "label": "ease(all)"},
                   {"name": "itemknn", "train_on": "all", "label": "itemknn(all)"},
                   {"name": "pop"})


class RankerConfig(TextConfig):
    """Two-stage ranker settings.

    Attributes:
        candidates: source model tables (``name``, optional ``label``, ``n`` = nominations per
            user, the model's own settings).
        n_candidates: default ``n`` of a source.
        z_sample: 0 = every source scores every item of the ranked domain. ``m > 0``: a source
            after the first that can nominate without scoring every item (``top_unseen``:
            ``text_zero_shot`` with max pooling and no popularity weight, from precomputed
            nearest titles) does, and its per-user z-scores are taken over a fixed seeded
            sample of ``m`` of the domain's items (serving cost; ``candidates.nominate``).
        features: feature groups used (``features.GROUPS``; default all but the opt-in
            ``text_tower``); drop one for an ablation.
        episodes: how training labels are carved from the training split: ``cold_users``
            (cold-start / few-shot users), ``last_item`` (next-item), ``cold_items``.
        episode_ratio: share of eligible users (items) hidden per episode draw.
        update_sources: fit the sources on the whole training split first and fit an episode
            source by updating that fit where the source can (``Recommender.fit_subset``;
            EASE: a low-rank update of its inverse, over the full fit's items, instead of a
            new inverse); False = every episode source fitted afresh.
        episode_folds: episode draws on disjoint users (items), each with its own candidate
            models; their rows are pooled (``episode_folds x episode_ratio`` must be <= 1).
        episode_positions: ``last_item`` only: episode sets per fold, position ``p`` labelling
            the interaction ``p`` steps before each sampled user's last (the later ones
            dropped), each with its own candidate models; their rows are pooled (``p`` times
            the labelled queries at ``p`` times the episode cost).
        max_episode_users: cap on labelled users.
        n_shots: ``cold_users``: target rows an episode user keeps (few-shot protocols).
        negatives: at most this many unlabelled candidates per user in LightGBM's training
            groups (seeded sample; every labelled candidate is kept).
        early_stopping_share: share of episode users held out for LightGBM's early stopping.
        n_boosters: boosters bagged (each on its own held-out users, 80 % row and feature
            subsamples and seed) and averaged; 1 = one booster on every row and feature.
        objective: LightGBM's ranking objective: ``lambdarank`` (LambdaMART, NDCG-weighted
            pair swaps), ``rank_xendcg`` (a listwise cross-entropy surrogate of NDCG), or
            ``mixed``: the bagged boosters alternate the two (``n_boosters`` >= 2).
        n_estimators, learning_rate, num_leaves, min_child_samples, early_stopping_rounds:
            LightGBM settings.
        threads: LightGBM threads; 0 = the process-wide policy (``crossrec.threads``).
        compile_trees: predict through the boosters compiled to native code when the optional
            ``trees`` extra (lleaves) is installed: the same scores up to float rounding, ~5 x
            faster (``compiled``); False or without lleaves: LightGBM's own predict.
        decay: recency weight of history text profiles.
        max_history: most recent history items used by the text features.
        l2: ridge penalty of the text maps.
        factors: PureSVD rank of the ``text2cf`` features.
        source_weight: weight of the first source's standardised score added to the ranker's
            (standardised per user); None = chosen on validation users from
            ``source_weight_grid`` (0 without validation). A large weight keeps the first
            source's order: the safety net where too few episodes were learned from.
    """

    candidates: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(s) for s in DEFAULT_SOURCES])
    n_candidates: int = Field(200, ge=1)
    z_sample: int = Field(0, ge=0)
    features: tuple[str, ...] = DEFAULT_GROUPS
    episodes: EpisodeKind = "cold_users"
    episode_ratio: float = Field(0.3, gt=0.0, le=1.0)
    episode_folds: int = Field(1, ge=1, le=10)
    episode_positions: int = Field(1, ge=1, le=10)
    update_sources: bool = False
    max_episode_users: int = Field(3000, ge=10)
    n_shots: int = Field(0, ge=0)
    negatives: int = Field(300, ge=1)
    early_stopping_share: float = Field(0.2, gt=0.0, lt=1.0)
    n_boosters: int = Field(1, ge=1, le=32)
    objective: Literal["lambdarank", "rank_xendcg", "mixed"] = "lambdarank"
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    threads: int = Field(0, ge=0)
    compile_trees: bool = True
    decay: float = Field(0.8, gt=0.0, le=1.0)
    max_history: int = Field(50, ge=1)
    l2: float = Field(10.0, gt=0.0)
    factors: int = Field(64, ge=1)
    source_weight: float | None = Field(None, ge=0.0)
    source_weight_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 100.0)

    @field_validator("candidates")
    @classmethod
    def _check_sources(cls, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from crossrec.models import check_nested_spec

        if not specs:
            raise ValueError("give at least one candidate source")
        labels = set()
        for i, spec in enumerate(specs):
            check_nested_spec(spec, f"candidates[{i}]", exclude="ranker", extra=("n",))
            n = spec.get("n", 1)
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"candidates[{i}].n must be a positive integer, got {n!r}")
            label = source_label(spec)
            if label in labels:
                raise ValueError(f"candidates[{i}]: two sources are labelled {label!r}; give "
                                 "each a distinct 'label'")
            labels.add(label)
        return specs

    @model_validator(mode="after")
    def _check_mixed(self) -> RankerConfig:
        if self.objective == "mixed" and self.n_boosters < 2:
            raise ValueError("objective 'mixed' alternates the objectives over the bagged "
                             f"boosters: give n_boosters >= 2, got {self.n_boosters}")
        return self

    @model_validator(mode="after")
    def _check_folds(self) -> RankerConfig:
        if self.episode_folds * self.episode_ratio > 1.0 + 1e-9:
            raise ValueError(f"episode_folds x episode_ratio must be at most 1 (disjoint "
                             f"folds), got {self.episode_folds} x {self.episode_ratio}")
        return self

    @model_validator(mode="after")
    def _check_positions(self) -> RankerConfig:
        if self.episode_positions > 1 and self.episodes != "last_item":
            raise ValueError("episode_positions > 1 needs episodes = 'last_item', got "
                             f"{self.episodes!r}")
        return self

    @field_validator("features")
    @classmethod
    def _check_groups(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        bad = [g for g in groups if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown feature groups {bad}; known: {', '.join(GROUPS)}")
        return tuple(dict.fromkeys(groups))
