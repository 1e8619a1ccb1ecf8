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
from crossrec.models.cross.cmf import CMF
from crossrec.models.cross.emcdr import EMCDR
from crossrec.models.cross.ptupcdr import PTUPCDR

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "ease": EASE,
    "bpr": BPR,
    "cmf": CMF,
    "emcdr": EMCDR,
    "ptupcdr": PTUPCDR,
}

__all__ = ["MODELS", "BaselineConfig", "FitOptions", "ModelConfig", "Query", "Recommender",
           "Stage", "TorchRecommender"]
