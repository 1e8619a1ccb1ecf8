"""Experiment configuration: TOML files validated by pydantic, overridable by dotted path.

Only two settings come from the environment, and both only locate things: the data directory
(``CROSSREC_DATA``) and the cache directory (``CROSSREC_CACHE``); see ``crossrec.paths``
(``data_dir`` and ``cache_dir`` are re-exported here for compatibility).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from crossrec.errors import ConfigError
from crossrec.paths import cache_dir, data_dir

__all__ = ["ColdStartItemsSplit", "ColdStartUsersSplit", "DataConfig", "EncoderConfig",
           "EvalConfig", "ExperimentConfig", "LeaveOneOutSplit", "NewDomainSplit",
           "PredefinedSplit", "SplitConfig", "TemporalSplit", "TrainConfig", "cache_dir",
           "data_dir", "load_config"]


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


class _Split(_Strict):
    """Fields of every split kind: the target domain and the source role(s) of the models."""

    target: str
    source: list[str] = Field(default_factory=list)

    @property
    def redrawn_per_seed(self) -> bool:
        """Whether each run seed draws its own split (only seeded kinds can)."""
        return False

    def split_seed(self, run_seed: int) -> int:
        """The seed the split is drawn with for ``run_seed`` (0 when it does not follow)."""
        return 0


class _Seeded(_Split):
    """A split that draws (users or items) with a seed: a new draw per run seed by default."""

    valid_share: float = Field(0.5, gt=0.0, lt=1.0)  # share of the held-out part in valid
    seed_follows_run: bool = True

    @property
    def redrawn_per_seed(self) -> bool:
        return self.seed_follows_run

    def split_seed(self, run_seed: int) -> int:
        return run_seed if self.seed_follows_run else 0


class _FewShot(_Split):
    """Few-shot target users: each truth user keeps their first ``n_shots`` target
    interactions in training; truth = their rows after the first ``shot_pool`` (default
    ``n_shots``), only users with more than ``shot_pool`` (``crossrec.data.split.few_shot``)."""

    n_shots: int = Field(0, ge=0)
    shot_pool: int | None = Field(None, ge=0)


class ColdStartUsersSplit(_Seeded, _FewShot):
    """A ``ratio`` of the users in source and target lose their target interactions."""

    kind: Literal["cold_start_users"] = "cold_start_users"
    ratio: float = Field(0.2, gt=0.0, lt=1.0)


class ColdStartItemsSplit(_Seeded):
    """A ``ratio`` of the target's items lose all their interactions (held out)."""

    kind: Literal["cold_start_items"] = "cold_start_items"
    ratio: float = Field(0.2, gt=0.0, lt=1.0)


class NewDomainSplit(_Seeded):
    """The target is new: no target interaction in training at all."""

    kind: Literal["new_domain"] = "new_domain"


class LeaveOneOutSplit(_Split):
    """Per target user: the last interaction is test, the one before valid."""

    kind: Literal["leave_one_out"] = "leave_one_out"
    min_interactions: int = Field(3, ge=1)


class TemporalSplit(_Split):
    """A global time cut in the target: the latest ``test_frac`` test, ``valid_frac`` before."""

    kind: Literal["temporal"] = "temporal"
    valid_frac: float = Field(0.1, gt=0.0, lt=1.0)
    test_frac: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _fractions(self) -> TemporalSplit:
        if self.valid_frac + self.test_frac >= 1.0:
            raise ValueError(f"valid_frac + test_frac must be < 1, got {self.valid_frac} + "
                             f"{self.test_frac}")
        return self


class PredefinedSplit(_FewShot):
    """The split the source ships with (its ``part`` column)."""

    kind: Literal["predefined"] = "predefined"


# ``[split]``: one class per kind, chosen by ``kind``; a key of another kind is an error.
# Seeded kinds (drawn anew per run seed unless seed_follows_run = false) derive from _Seeded.
SplitConfig = Annotated[ColdStartUsersSplit | ColdStartItemsSplit | NewDomainSplit
                        | LeaveOneOutSplit | TemporalSplit | PredefinedSplit,
                        Field(discriminator="kind")]


def _known_metrics() -> tuple[str, ...]:
    """Every metric name ``eval.metrics`` accepts: ranking (``FULL_METRICS``) and rating."""
    from crossrec.eval.metrics import FULL_METRICS
    from crossrec.eval.run import RATING_METRICS

    return (*FULL_METRICS, *RATING_METRICS)


class TrainConfig(_Strict):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    device: str = "cpu"  # a torch device: cpu, cuda, cuda:N, mps
    early_stopping: str = "ndcg@10"  # validation metric for TorchRecommenders: metric[@k]

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"{value!r} is not a torch device: use cpu, cuda, cuda:N or mps")
        return value

    @field_validator("early_stopping")
    @classmethod
    def _stop_metric(cls, value: str) -> str:
        name, at, k = value.partition("@")
        known = _known_metrics()
        if name not in known or (at and not (k.isdigit() and int(k) >= 1)):
            raise ValueError(f"{value!r} is not 'metric' or 'metric@k' (k >= 1) with a metric "
                             f"among {', '.join(known)}, e.g. 'ndcg@10' or 'rmse'")
        return value


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

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or min(ks) < 1:
            raise ValueError(f"cut-offs must be positive integers, got {ks}")
        return ks

    @field_validator("metrics")
    @classmethod
    def _known(cls, metrics: list[str]) -> list[str]:
        known = _known_metrics()
        unknown = [m for m in metrics if m not in known]
        if unknown or not metrics:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(known)}"
                             if unknown else "give at least one metric")
        return metrics


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
        """Every model table typed through its class's Config, so that a misspelt name or key
        in any table fails here, before anything is fitted."""
        tables = self.model_tables()
        if not tables:
            raise ValueError("give a [model] table or one or more [[models]] tables")
        problems = [p for where, spec in tables if (p := _check_model(where, spec))]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def model_specs(self) -> list[dict[str, Any]]:
        """All model tables: ``[[models]]`` followed by ``[model]``."""
        return [*self.models, *([self.model] if self.model else [])]

    def model_tables(self) -> list[tuple[str, dict[str, Any]]]:
        """``model_specs`` with where each table is: ``models[i]`` (0-based) or ``model``."""
        return [*((f"models[{i}]", s) for i, s in enumerate(self.models)),
                *([("model", self.model)] if self.model else [])]

    def digest(self) -> str:
        text = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_model(where: str, spec: dict[str, Any]) -> str | None:
    """What is wrong with one model table (None when nothing): its name, then its keys
    through ``MODELS[name].Config`` (the registry is imported here, not at module level)."""
    from crossrec.models import MODELS

    name = spec.get("name")
    label = f"label {spec['label']!r}" if "label" in spec else ""
    if not isinstance(name, str) or name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=1) if isinstance(name, str) else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        what = f"unknown model {name!r}" if "name" in spec else "no 'name' (a model)"
        table = f"{where} ({label})" if label else where
        return f"{table}: {what}; {hint}known: {', '.join(sorted(MODELS))}"
    table = f"{where} ({name}{', ' + label if label else ''})"
    config = MODELS[name].Config
    try:
        config(**{k: v for k, v in spec.items() if k not in ("name", "label")})
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = ".".join(map(str, err["loc"]))
            close = (difflib.get_close_matches(key, list(config.model_fields), n=1)
                     if err["type"] == "extra_forbidden" else [])
            msgs.append(f"{table}: {key or 'settings'}: {_message(err)}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""))
        return "; ".join(msgs)
    return None


def _message(err: dict[str, Any]) -> str:
    """A pydantic error's text, without the ``Value error, `` prefix of a validator's."""
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return err["msg"]


_SPLITS = {c.model_fields["kind"].default: c for c in (
    ColdStartUsersSplit, ColdStartItemsSplit, NewDomainSplit, LeaveOneOutSplit, TemporalSplit,
    PredefinedSplit)}


def _located(err: dict[str, Any]) -> str:
    """``path: message`` for one error of ``ExperimentConfig``; a ``[split]`` error names the
    key without the union's tag, and a key the kind does not have says which keys it has."""
    loc = list(err["loc"])
    if loc[:1] == ["split"] and len(loc) > 2 and loc[1] in _SPLITS:
        kind = loc.pop(1)
        if err["type"] == "extra_forbidden":
            keys = ", ".join(f for f in _SPLITS[kind].model_fields if f != "kind")
            return f"{'.'.join(map(str, loc))}: not a setting of split kind {kind!r} ({keys})"
    return f"{'.'.join(map(str, loc))}: {_message(err)}" if loc else _message(err)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.0.c = value`` in ``tree`` (list elements by index).

    Raises:
        ConfigError: a path through a list with a key that is not a valid index, or through
            a value that is not a table.
    """
    keys = dotted.split(".")
    node: Any = tree
    for i, k in enumerate(keys):
        key: Any = k
        if isinstance(node, list):
            if not (k.isdigit() and int(k) < len(node)):
                raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i]) or 'the root'} is a "
                                  f"list of {len(node)} table(s); {k!r} is not an index of it "
                                  f"(0 to {len(node) - 1})")
            key = int(k)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i])} is "
                              f"{type(node).__name__} {node!r}, not a table")
        if i == len(keys) - 1:
            node[key] = value
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            node = node[key]


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
        msgs = "; ".join(_located(err) for err in e.errors())
        raise ConfigError(f"{where}invalid config: {msgs}") from None
