"""The model registry: every model crossrec can train, by its config name."""

from __future__ import annotations

from crossrec.models.base import (
    FitOptions,
    ModelConfig,
    Query,
    Recommender,
    Stage,
    TorchRecommender,
)

MODELS: dict[str, type[Recommender]] = {}

__all__ = ["MODELS", "FitOptions", "ModelConfig", "Query", "Recommender", "Stage",
           "TorchRecommender"]
