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
from crossrec.models.baselines import BPR, EASE, ItemKNN, Pop, SASRec, Transition
from crossrec.models.baselines.text_zero_shot import TextZeroShot
from crossrec.models.cross.cmf import CMF
from crossrec.models.cross.conet import CoNet
from crossrec.models.cross.dann import DANN
from crossrec.models.cross.emcdr import EMCDR
from crossrec.models.cross.hybrid import Hybrid
from crossrec.models.cross.ptupcdr import PTUPCDR
from crossrec.models.cross.shared_bottom import SharedBottom
from crossrec.models.cross.text_transfer import TextTransfer
from crossrec.models.distill import Distill

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "ease": EASE,
    "bpr": BPR,
    "sasrec": SASRec,
    "transition": Transition,
    "text_zero_shot": TextZeroShot,
    "hybrid": Hybrid,
    "cmf": CMF,
    "emcdr": EMCDR,
    "ptupcdr": PTUPCDR,
    "dann": DANN,
    "shared_bottom": SharedBottom,
    "conet": CoNet,
    "text_transfer": TextTransfer,
    "distill": Distill,
}

__all__ = ["MODELS", "BaselineConfig", "FitOptions", "ModelConfig", "Query", "Recommender",
           "Stage", "TorchRecommender"]
