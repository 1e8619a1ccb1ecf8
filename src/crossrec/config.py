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
from typing import Any, Literal

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
from crossrec.split_config import (
    SPLITS,
    ColdStartItemsSplit,
    ColdStartUsersSplit,
    LeaveOneOutSplit,
    NewDomainSplit,
    PredefinedSplit,
    SplitConfig,
    TemporalSplit,
)

__all__ = ["ColdStartItemsSplit", "ColdStartUsersSplit", "DataConfig", "EncoderConfig",
           "EvalConfig", "ExperimentConfig", "LeaveOneOutSplit", "NewDomainSplit",
           "PredefinedSplit", "SplitConfig", "TemporalSplit", "TrainConfig", "cache_dir",
           "data_dir", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the data come from: a prepared dataset dir, or a reader + raw path."""

    format: str = Field("tabular", description=(
        "The reader of the raw files at `path`: tabular, recbole, amazon_reviews, arts_office "
        "or cdrib (`crossrec prepare --help`). Not `prepared`: for a prepared dataset set "
        "`prepared`."))
    path: str = Field("", description=(
        "The raw data file or folder; relative paths also resolve against the data directory "
        "(`CROSSREC_DATA`). Read and cached on first use."))
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "Keyword options of the reader, e.g. `{split = \"split.csv\", name = \"shop\"}` "
        "for tabular (the `-o key=value` options of `crossrec prepare`)."))
    prepared: str = Field("", description=(
        "A dataset directory written by `crossrec prepare`; when set, `format`, `path`, "
        "`options`, `k_core` and `domains` are not used."))
    k_core: int = Field(0, ge=0, description=(
        "Per-domain k-core filter applied when reading `path` (0 = off)."))
    domains: list[str] = Field(default_factory=list, description=(
        "Keep only these domains when reading `path` (default: all)."))


def _known_metrics() -> tuple[str, ...]:
    """Every metric name ``eval.metrics`` accepts: ranking (``FULL_METRICS``) and rating."""
    from crossrec.eval.metrics import FULL_METRICS
    from crossrec.eval.run import RATING_METRICS

    return (*FULL_METRICS, *RATING_METRICS)


class TrainConfig(_Strict):
    """How models are fitted: the run seeds, the device and the early-stopping metric."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description=(
        "Run seeds of `benchmark` (each model fitted once per seed; `--seeds 0,1,2` on the "
        "command line); `train` uses the first unless `--seeds` is given."))
    device: str = Field("cpu", description="A torch device: cpu, cuda, cuda:N or mps.")
    early_stopping: str = Field("ndcg@10", description=(
        "Validation metric (`metric` or `metric@k`) of early stopping for the neural models, "
        "computed with the `[eval]` protocol on the valid users."))

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

    name: str = Field("minilm", description="The text encoder (`crossrec.encoders.ENCODERS`).")
    template: str = Field("{text}", description=(
        "Item text template; fields: text, domain, item_id and the item attributes (title, "
        "categories, brand)."))
    batch_size: int = Field(64, ge=1, description="Texts per encoder call.")
    backend: str = Field("torch", description=(
        "torch, onnx, onnx-int8, torch-int8 (`crossrec.encoders.BACKENDS`)."))
    max_seq_length: int = Field(128, ge=8, description="Tokens kept per text.")

    @model_validator(mode="after")
    def _known(self) -> EncoderConfig:
        from crossrec.encoders.base import BACKENDS, ENCODERS

        for field, value, known in (("name", self.name, ENCODERS), ("backend", self.backend,
                                                                      BACKENDS)):
            if value not in known:
                raise ValueError(f"{field} {value!r} is not one of {', '.join(known)}")
        return self


class EvalConfig(_Strict):
    """How models are scored: protocol, candidates, metrics and cut-offs."""

    ks: list[int] = Field(default_factory=lambda: [10, 20], description=(
        "Cut-offs k of the `@k` metrics; the headline is NDCG@10 (@ the first k when 10 is "
        "not among them)."))
    metrics: list[str] = Field(
        default_factory=lambda: ["recall", "ndcg", "hr", "mrr", "precision"], description=(
            "Among recall, ndcg, hr, mrr, precision, auc (ranking) or mae, rmse (rating "
            "error; not mixed with ranking metrics)."))
    n_negatives: int = Field(0, ge=0, description=(
        "0 = full ranking (every candidate). N > 0 = sampled protocol, labelled "
        "`sampled-N`: each held-out item against N negatives drawn with the run seed (ranking: "
        "uniformly with replacement among the user's unseen items; next_item: N distinct "
        "items of the held-out item's own domain outside the user's history), the same for "
        "every model."))
    batch_size: int = Field(1024, ge=1, description="Users (cases) scored per model call.")
    part: Literal["valid", "test"] = Field("test", description=(
        "The part the reported figures come from (early stopping always uses valid)."))
    report_group: Literal["all", "cold", "warm"] = Field("all", description=(
        "User group of the main table and the paired tests of a benchmark report."))
    protocol: Literal["ranking", "next_item"] = Field("ranking", description=(
        "`ranking`: the target domain's users, all their held-out items at once. `next_item`: "
        "every held-out row of any domain is one prediction from the user's history "
        "(reported per domain and pooled)."))
    candidates: Literal["domain", "all", "both"] = Field("domain", description=(
        "next_item: ranked among the items of the held-out item's domain (`domain`), of every "
        "domain (`all`), or both (`both`: the `domain` metrics are named `<metric>_domain@k`). "
        "Sampled next-item (`n_negatives` > 0) is `domain` only."))

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

    @model_validator(mode="after")
    def _target_given(self) -> ExperimentConfig:
        """``split.target`` may be left out only where nothing depends on it: next-item
        evaluation (every domain's rows) on the dataset's own (predefined) split."""
        if self.split.target is None and not (self.eval.protocol == "next_item"
                                              and self.split.kind == "predefined"):
            raise ValueError("split.target: give the target domain (it may be left out only "
                             "with eval.protocol = \"next_item\" on a predefined split)")
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


_SPLITS = SPLITS


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
