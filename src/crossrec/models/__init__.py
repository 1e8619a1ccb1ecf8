"""The model registry: every model crossrec can train, by its config name."""

from __future__ import annotations

from typing import Any

from crossrec.models.base import (
    BaselineConfig,
    FitOptions,
    ModelConfig,
    Query,
    Recommender,
    Stage,
    TorchRecommender,
)
from crossrec.models.baselines import (
    ALS,
    BPR,
    EASE,
    ItemKNN,
    Pop,
    RP3Beta,
    SASRec,
    Transition,
    UserKNN,
)
from crossrec.models.baselines.text_zero_shot import TextZeroShot
from crossrec.models.cross.cmf import CMF
from crossrec.models.cross.conet import CoNet
from crossrec.models.cross.dann import DANN
from crossrec.models.cross.emcdr import EMCDR
from crossrec.models.cross.hybrid import Hybrid
from crossrec.models.cross.ptupcdr import PTUPCDR
from crossrec.models.cross.shared_bottom import SharedBottom
from crossrec.models.cross.text2cf import Text2CF
from crossrec.models.cross.text_transfer import TextTransfer
from crossrec.models.distill import Distill
from crossrec.models.ranker import Ranker

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "rp3beta": RP3Beta,
    "userknn": UserKNN,
    "ease": EASE,
    "bpr": BPR,
    "als": ALS,
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
    "text2cf": Text2CF,
    "ranker": Ranker,
}


def model_label(spec: dict[str, Any]) -> str:
    """A short readable name: ``label`` if given, else name plus its non-default settings."""
    if "label" in spec:
        return str(spec["label"])
    extra = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "label"))
    return f"{spec['name']}({extra})" if extra else spec["name"]


def check_nested_spec(spec: dict[str, Any], what: str, *, exclude: str,
                      extra: tuple[str, ...] = ()) -> None:
    """Validate a model table nested in another model's config (a distill teacher, a ranker
    source) through its class's Config.

    Args:
        spec: the table (``name``, optional ``label``, the model's settings, ``extra`` keys).
        what: how messages name the table, e.g. ``"teacher"``, ``"candidates[2]"``.
        exclude: the enclosing model's name (it cannot nest itself).
        extra: keys of the enclosing model's own, not the nested model's (e.g. ``n``).

    Raises:
        ValueError: an unknown or excluded name, or settings the model's Config refuses.
    """
    from pydantic import ValidationError

    name = spec.get("name")
    if not isinstance(name, str) or name not in MODELS or name == exclude:
        known = ", ".join(sorted(k for k in MODELS if k != exclude))
        raise ValueError(f"{what} needs a 'name' among: {known} (got {name!r})")
    try:
        MODELS[name].Config(**{k: v for k, v in spec.items()
                               if k not in ("name", "label", *extra)})
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, er['loc']))}: {er['msg']}" for er in e.errors())
        raise ValueError(f"{what} {name!r}: {msgs}") from None


def build_model(spec: dict[str, Any]) -> Recommender:
    """An unfitted model from a config table (``name``, optional ``label``, its settings)."""
    from pydantic import ValidationError

    from crossrec.errors import ConfigError

    params = {k: v for k, v in spec.items() if k not in ("name", "label")}
    name = spec["name"]
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](params)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, er['loc']))}: {er['msg']}" for er in e.errors())
        raise ConfigError(f"model {name!r}: {msgs}") from None


__all__ = ["MODELS", "BaselineConfig", "FitOptions", "ModelConfig", "Query", "Recommender",
           "Stage", "TorchRecommender", "build_model", "check_nested_spec", "model_label"]
