"""Experiment configuration: TOML files validated by pydantic, overridable by dotted path.

Only two settings come from the environment, and both only locate things: the data directory
(``CROSSREC_DATA``) and the cache directory (``CROSSREC_CACHE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crossrec.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the data come from: a prepared dataset dir, or a reader + raw path."""

    format: str = "tabular"  # a key of crossrec.data.sources.READERS
    path: str = ""  # relative paths resolve against the data directory (CROSSREC_DATA)
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the reader
    prepared: str = ""  # a `crossrec prepare` output dir; when set, format/path are ignored
    k_core: int = 0
    domains: list[str] = Field(default_factory=list)  # keep only these (default: all)


class SplitConfig(_Strict):
    kind: Literal["cold_start_users", "leave_one_out", "temporal", "predefined",
                  "cold_start_items", "new_domain"]
    target: str
    source: list[str] = Field(default_factory=list)
    ratio: float = 0.2
    valid_share: float = 0.5
    min_interactions: int = 3
    valid_frac: float = 0.1
    test_frac: float = 0.1
    seed_follows_run: bool = True  # seeded kinds (cold users/items, new domain): new draw per seed
    # few-shot target users (cold_start_users, predefined): each truth user keeps their first
    # n_shots target interactions in training; truth = their rows after the first shot_pool
    # (default n_shots), only users with more than shot_pool (crossrec.data.split.few_shot)
    n_shots: int = Field(0, ge=0)
    shot_pool: int | None = Field(None, ge=0)


class TrainConfig(_Strict):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    device: str = "cpu"
    early_stopping: str = "ndcg@10"  # validation metric for TorchRecommenders


class EncoderConfig(_Strict):
    """How item texts become vectors (``crossrec encode``, text models)."""

    name: str = "minilm"  # a key of crossrec.encoders.ENCODERS
    template: str = "{text}"  # fields: text, domain, item_id, item attributes (title, ...)
    batch_size: int = Field(64, ge=1)
    backend: str = "torch"  # a key of crossrec.encoders.BACKENDS: torch, onnx, onnx-int8, ...
    max_seq_length: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _known(self) -> EncoderConfig:
        from crossrec.encoders.base import BACKENDS, ENCODERS

        for field, value, known in (("name", self.name, ENCODERS), ("backend", self.backend,
                                                                      BACKENDS)):
            if value not in known:
                raise ValueError(f"{field} {value!r} is not one of {', '.join(known)}")
        return self


class EvalConfig(_Strict):
    ks: list[int] = Field(default_factory=lambda: [10, 20])
    metrics: list[str] = Field(default_factory=lambda: ["recall", "ndcg", "hr", "mrr", "precision"])
    n_negatives: int = 0  # 0 = full ranking; N > 0 = sampled protocol, labelled so
    batch_size: int = 1024
    part: Literal["valid", "test"] = "test"
    report_group: Literal["all", "cold", "warm"] = "all"
    # "next_item": every truth row (any domain) is one prediction (crossrec.eval.next_item),
    # ranked among the items of its own domain ("domain"), of every domain ("all"), or both
    # ("both": the "domain" metrics are named <metric>_domain@k)
    protocol: Literal["ranking", "next_item"] = "ranking"
    candidates: Literal["domain", "all", "both"] = "domain"


class ExperimentConfig(_Strict):
    """One experiment: ``[data] [split] [model] | [[models]] [train] [eval] [encoder]``."""

    name: str = "experiment"
    data: DataConfig
    split: SplitConfig
    model: dict[str, Any] | None = None
    models: list[dict[str, Any]] = Field(default_factory=list)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)

    @model_validator(mode="after")
    def _models_given(self) -> ExperimentConfig:
        specs = self.model_specs()
        if not specs:
            raise ValueError("give a [model] table or one or more [[models]] tables")
        for spec in specs:
            if "name" not in spec:
                raise ValueError("every model table needs a 'name' (a key of crossrec MODELS)")
        return self

    def model_specs(self) -> list[dict[str, Any]]:
        """All model tables: ``[[models]]`` followed by ``[model]``."""
        return [*self.models, *([self.model] if self.model else [])]

    def digest(self) -> str:
        text = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        if isinstance(node, list):
            node = node[int(k)]
            continue
        node = node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _broadcast(specs: list[dict], field: str, value: Any) -> None:
    """Apply ``model.<field>=value`` to every model table whose config has that field."""
    from crossrec.models import MODELS

    hit = False
    for spec in specs:
        cls = MODELS.get(spec.get("name", ""))
        if cls is not None and field.split(".")[0] in cls.Config.model_fields:
            _set_dotted(spec, field, value)
            hit = True
    if not hit:
        raise ConfigError(f"--set model.{field}: no model in this experiment has {field!r}")


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> ExperimentConfig:
    """Read a TOML experiment file, apply ``key.path=value`` overrides, validate.

    ``model.X`` overrides apply to every model table when the file uses ``[[models]]``.
    """
    tree: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tree = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        value = _parse_value(text.strip())
        if key.startswith("model.") and "models" in tree and "model" not in tree:
            _broadcast(tree["models"], key[len("model."):], value)
        else:
            _set_dotted(tree, key.strip(), value)
    try:
        return ExperimentConfig(**tree)
    except ValidationError as e:
        where = f"{path}: " if path else ""
        msgs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{where}invalid config: {msgs}") from None


def data_dir() -> Path:
    """The data directory: ``$CROSSREC_DATA``, else ``../shared/data`` beside the project (or
    the working directory) when it exists, else ``~/.cache/crossrec/data``."""
    env = os.environ.get("CROSSREC_DATA")
    if env:
        return Path(env).expanduser()
    candidates = [Path.cwd().parent / "shared" / "data"]
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").exists():
            candidates.append(parent.parent / "shared" / "data")
            break
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """The cache directory: ``$CROSSREC_CACHE`` or ``~/.cache/crossrec``."""
    return Path(os.environ.get("CROSSREC_CACHE", "~/.cache/crossrec")).expanduser()
