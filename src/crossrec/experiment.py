"""The one place where data, split, model, training and evaluation are wired together."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crossrec.config import DataConfig, ExperimentConfig, SplitConfig, cache_dir, data_dir
from crossrec.data import split as splits
from crossrec.data.dataset import FORMAT_VERSION, MultiDomainDataset
from crossrec.errors import ConfigError, DataError
from crossrec.models.base import FitOptions, Recommender


# ----------------------------------------------------------------------------- data
def resolve_data_path(path: str) -> Path:
    """A path from a config: absolute, relative to the working dir, or to the data dir."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return data_dir() / p


def _fingerprint(path: Path) -> list:
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    return [(str(q.relative_to(path.parent)), q.stat().st_size, int(q.stat().st_mtime))
            for q in files]


def load_dataset(cfg: DataConfig, *, use_cache: bool = True) -> MultiDomainDataset:
    """Read (or reuse the cached build of) the dataset a config describes."""
    from crossrec.data import sources

    if cfg.prepared:
        return MultiDomainDataset.load(resolve_data_path(cfg.prepared))
    if not cfg.path:
        raise ConfigError("data.path is empty: give the raw data path or data.prepared")
    path = resolve_data_path(cfg.path)
    if not path.exists():
        hint = sources.download_hint(cfg.format)
        raise DataError(
            f"data not found at {path} (data directory: {data_dir()}; set CROSSREC_DATA to "
            f"change it).{(' ' + hint) if hint else ''}"
        )
    key = hashlib.sha256(json.dumps(
        [FORMAT_VERSION, cfg.model_dump(), _fingerprint(path)], sort_keys=True, default=str
    ).encode()).hexdigest()[:16]
    cached = cache_dir() / "datasets" / f"{cfg.format}-{key}"
    if use_cache and (cached / "meta.json").exists():
        return MultiDomainDataset.load(cached)
    builder = sources.read(cfg.format, path, **cfg.options)
    dataset = builder.build(k_core=cfg.k_core, domains=cfg.domains or None)
    if use_cache:
        dataset.save(cached)
    return dataset


def make_split(dataset: MultiDomainDataset, cfg: SplitConfig, seed: int = 0) -> splits.Split:
    """Build the split a config asks for (seeded where the protocol draws anything)."""
    if cfg.kind == "cold_start_users":
        source = cfg.source or [d for d in dataset.domains if d != cfg.target]
        return splits.cold_start_users(dataset, source, cfg.target, cfg.ratio,
                                       valid_share=cfg.valid_share,
                                       seed=seed if cfg.seed_follows_run else 0)
    if cfg.kind == "leave_one_out":
        return splits.leave_one_out(dataset, cfg.target, min_interactions=cfg.min_interactions)
    if cfg.kind == "temporal":
        return splits.temporal(dataset, cfg.target, valid_frac=cfg.valid_frac,
                               test_frac=cfg.test_frac)
    return splits.predefined(dataset, cfg.target)


# ----------------------------------------------------------------------------- models
def model_label(spec: dict[str, Any]) -> str:
    """A short readable name: ``label`` if given, else name plus its non-default settings."""
    if "label" in spec:
        return str(spec["label"])
    extra = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "label"))
    return f"{spec['name']}({extra})" if extra else spec["name"]


def build_model(spec: dict[str, Any]) -> Recommender:
    from pydantic import ValidationError

    from crossrec.models import MODELS

    params = {k: v for k, v in spec.items() if k not in ("name", "label")}
    name = spec["name"]
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](params)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, er['loc']))}: {er['msg']}" for er in e.errors())
        raise ConfigError(f"model {name!r}: {msgs}") from None


@dataclass
class RunResult:
    """One model trained with one seed, evaluated on valid and test."""

    label: str
    seed: int
    model: Recommender
    split: splits.Split
    valid: Any  # EvalResult
    test: Any  # EvalResult
    fit_seconds: float
    config: dict = field(default_factory=dict)


def fit_and_evaluate(cfg: ExperimentConfig, spec: dict[str, Any], split: splits.Split, seed: int,
                     *, run_dir: Path | None = None, progress: bool = True,
                     fitted: RunResult | None = None) -> RunResult:
    """Fit one model on ``split.train`` (early stopping on valid) and evaluate valid + test.

    ``fitted``: a result of the same deterministic model on the same split; its model is reused
    (not refitted) and only evaluated again with this seed (sampled negatives depend on it).
    """
    from crossrec.eval.ranking import evaluate

    metric, _, k = cfg.train.early_stopping.partition("@")
    ev = cfg.eval
    sampled = ev.n_negatives or None

    def validate(m: Recommender) -> float:
        r = evaluate(m, split, part="valid", ks=(int(k or 10),), metrics=(metric,),
                     batch_size=ev.batch_size, n_negatives=sampled, seed=seed,
                     device=cfg.train.device)
        return r.value(metric, int(k) if k else None)  # no @k: the full-list metric

    if fitted is not None:
        model, seconds = fitted.model, fitted.fit_seconds
    else:
        model = build_model(spec)
        options = FitOptions(target=split.target, sources=tuple(cfg.split.source), seed=seed,
                             device=cfg.train.device, validate=validate, progress=progress,
                             run_dir=run_dir)
        start = time.perf_counter()
        model.fit(split.train, options)
        seconds = time.perf_counter() - start
    kw = dict(ks=tuple(ev.ks), metrics=tuple(ev.metrics), batch_size=ev.batch_size,
              n_negatives=sampled, seed=seed, device=cfg.train.device)
    return RunResult(
        label=model_label(spec), seed=seed, model=model, split=split,
        valid=evaluate(model, split, part="valid", **kw),
        test=evaluate(model, split, part=ev.part, **kw),
        fit_seconds=seconds,
        config={"experiment": cfg.model_dump(), "model": spec, "seed": seed,
                "target": split.target, "sources": list(cfg.split.source),
                "split": split.describe()},
    )


# ----------------------------------------------------------------------------- benchmark
@dataclass
class BenchmarkResult:
    rows: pd.DataFrame  # model, group, metric, k, mean, std, n_users, seeds
    per_seed: pd.DataFrame  # model, seed, group, metric, k, value, n_users
    per_user: dict[tuple[str, int], pd.DataFrame]  # (model, seed) -> per-user metrics
    protocol: str
    splits: dict[int, dict]


def benchmark(cfg: ExperimentConfig, *, progress: bool = True,
              log=print) -> BenchmarkResult:  # noqa: ANN001
    """Every model x every seed on one dataset and split; aggregated mean +/- std."""
    dataset = load_dataset(cfg.data)
    per_seed, per_user, split_info = [], {}, {}
    protocol = "full"
    seeded_split = cfg.split.kind == "cold_start_users" and cfg.split.seed_follows_run
    split, fitted = None, {}
    for seed in cfg.train.seeds:
        if split is None or seeded_split:
            split, fitted = make_split(dataset, cfg.split, seed), {}
        split_info[seed] = split.describe()
        for spec in cfg.model_specs():
            label = model_label(spec)
            reuse = label in fitted and fitted[label].model.deterministic
            if reuse and not cfg.eval.n_negatives:
                res = fitted[label]  # same model, same split, same candidates: same result
            else:
                res = fit_and_evaluate(cfg, spec, split, seed, progress=progress,
                                       fitted=fitted[label] if reuse else None)
            fitted[label] = res
            protocol = res.test.protocol
            s = res.test.summary.assign(model=res.label, seed=seed)
            per_seed.append(s)
            per_user[(res.label, seed)] = res.test.per_user
            main = res.test.summary.query("group == 'all'")
            ndcg = main[(main.metric == "ndcg") & (main.k == cfg.eval.ks[0])]["value"]
            log(f"seed {seed}  {res.label:<40} ndcg@{cfg.eval.ks[0]}="
                f"{float(ndcg.iloc[0]) if len(ndcg) else float('nan'):.4f}  "
                + ("fit reused (deterministic model, same split)" if reuse
                   else f"fit {res.fit_seconds:.1f}s"))
    per_seed_df = pd.concat(per_seed, ignore_index=True)
    rows = (per_seed_df.groupby(["model", "group", "metric", "k"], sort=False, dropna=False)
            .agg(mean=("value", "mean"), std=("value", "std"), n_users=("n_users", "mean"),
                 seeds=("seed", "nunique"))
            .reset_index())
    rows["std"] = rows["std"].fillna(0.0)
    return BenchmarkResult(rows, per_seed_df, per_user, protocol, split_info)


def paired_against_best(result: BenchmarkResult, metric: str, group: str = "all") -> pd.DataFrame:
    """Paired test of the best model (by mean ``metric``) against every other, same users.

    Each user contributes one pair: their metric averaged over the seeds they were evaluated in.
    """
    from crossrec.eval.significance import paired_test

    name, _, k = metric.partition("@")
    sel = result.rows.query("group == @group and metric == @name and k == @k_int",
                            local_dict={"group": group, "name": name, "k_int": int(k)})
    if sel.empty:
        return pd.DataFrame()
    best = sel.sort_values("mean", ascending=False)["model"].iloc[0]
    seeds = sorted({s for (_, s) in result.per_user})

    def per_user_mean(model: str) -> pd.DataFrame:
        # one value per user: the mean over the seeds in which the user was evaluated, so a
        # split that is the same for every seed does not count its users several times
        frames = [result.per_user[(model, s)] for s in seeds]
        pu = pd.concat(frames, ignore_index=True)
        if group != "all":
            pu = pu[pu["group"] == group]
        return pu.groupby("user", as_index=False)[metric].mean()

    out = []
    for model in sel["model"]:
        if model == best:
            continue
        t = paired_test(per_user_mean(best), per_user_mean(model), metric=metric)
        out.append({"best": best, "other": model, "metric": metric, **t})
    return pd.DataFrame(out)
