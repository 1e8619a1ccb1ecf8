"""The model registry: every model crossrec can train, by its config name."""

from __future__ import annotations

from crossrec.models.base import (
    BaselineConfig,
    FitOptions,
    ModelConfig,
    Query,
    Recommender,
    Stage,
    TorchRecommender,
)
from crossrec.models.baselines import BPR, EASE, ItemKNN, Pop

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "ease": EASE,
    "bpr": BPR,
}

__all__ = ["MODELS", "BaselineConfig", "FitOptions", "ModelConfig", "Query", "Recommender",
           "Stage", "TorchRecommender"]
