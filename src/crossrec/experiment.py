"""The one place where data, split, model, training and evaluation are wired together.

``load_dataset`` / ``make_split`` (``crossrec.data.load``) and ``headline_metric``
(``crossrec.eval.run``) are re-exported here for callers of the earlier layout."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crossrec.config import ExperimentConfig
from crossrec.data import split as splits
from crossrec.data.load import load_dataset, make_split, resolve_data_path  # noqa: F401
from crossrec.eval.run import RATING_METRICS, headline_metric, protocol  # noqa: F401
from crossrec.models import build_model, model_label
from crossrec.models.base import FitOptions, Recommender


# ----------------------------------------------------------------------------- models
@dataclass
class RunResult:
    """One model trained with one seed, evaluated on valid and test."""

    label: str
    seed: int
    model: Recommender | None  # None: read back from a benchmark's run log (no model)
    split: splits.Split
    valid: Any  # EvalResult (None when read back)
    test: Any  # EvalResult
    fit_seconds: float
    config: dict = field(default_factory=dict)


def rating_mode(cfg: ExperimentConfig) -> bool:
    """True when ``eval.metrics`` are rating errors (MAE / RMSE) rather than ranking metrics.

    Raises:
        ConfigError: rating and ranking metrics mixed, or an early-stopping metric of the
            other kind (``crossrec.eval.run.protocol``).
    """
    return protocol(cfg.eval, cfg.train.early_stopping) == "ratings"


def fit_options(cfg: ExperimentConfig, split: splits.Split, seed: int, *,
                run_dir: Path | None = None, progress: bool = True, resume: bool = False,
                device: str | None = None) -> FitOptions:
    """How ``fit_and_evaluate`` fits a model: roles, seed, device (default ``train.device``)
    and the validation hook of early stopping (``train.early_stopping`` on the valid users).

    Raises:
        ConfigError: an evaluation protocol that cannot be combined with the metrics.
    """
    from crossrec.eval.run import validation_hook

    device = device or cfg.train.device
    validate = validation_hook(split, cfg.eval, cfg.train.early_stopping, seed=seed,
                               device=device)
    return FitOptions(target=split.target, sources=tuple(cfg.split.source), seed=seed,
                      device=device, validate=validate, progress=progress, run_dir=run_dir,
                      resume=resume)


def fit_and_evaluate(cfg: ExperimentConfig, spec: dict[str, Any], split: splits.Split, seed: int,
                     *, run_dir: Path | None = None, progress: bool = True,
                     fitted: RunResult | None = None, resume: bool = False) -> RunResult:
    """Fit one model on ``split.train`` (early stopping on valid) and evaluate valid + test.

    With rating metrics in ``eval.metrics`` (``mae`` / ``rmse``) the model's scores are taken
    as predicted ratings (``evaluate_ratings``) and early stopping minimises the chosen error.

    ``fitted``: a result of the same deterministic model on the same split, or the model
    fitted elsewhere (``training.distributed``); its model is reused (not refitted) and only
    evaluated (again) with this seed (sampled negatives depend on it).

    ``resume``: continue the training from ``run_dir``'s last end-of-epoch checkpoint (torch
    models; see ``Trainer``), or start afresh when there is none.
    """
    from crossrec.eval.run import run

    options = fit_options(cfg, split, seed, run_dir=run_dir, progress=progress, resume=resume)
    if fitted is not None:
        model, seconds = fitted.model, fitted.fit_seconds
    else:
        model = build_model(spec)
        start = time.perf_counter()
        model.fit(split.train, options)
        seconds = time.perf_counter() - start

    def run_eval(part: str) -> Any:
        return run(model, split, cfg.eval, part=part, seed=seed, device=cfg.train.device)

    return RunResult(
        label=model_label(spec), seed=seed, model=model, split=split,
        valid=run_eval("valid"), test=run_eval(cfg.eval.part),
        fit_seconds=seconds,
        config={"experiment": cfg.model_dump(), "model": spec, "seed": seed,
                "target": split.target, "sources": list(cfg.split.source),
                "split": split.describe()},
    )


def save_run(result: RunResult, out: Path) -> None:
    """Write what ``crossrec train`` leaves in its run directory besides the training log:
    ``out/bundle`` and ``out/metrics.json`` (valid and test results, fit seconds), atomically."""
    from crossrec.atomic import atomic_file
    from crossrec.bundle import Bundle

    Bundle(result.model, result.split.train, result.config).save(out / "bundle")
    text = json.dumps({"valid": result.valid.to_dict(), "test": result.test.to_dict(),
                       "fit_seconds": result.fit_seconds}, indent=2, default=str)
    atomic_file(out / "metrics.json", lambda tmp: tmp.write_text(text))


# ----------------------------------------------------------------------------- benchmark
@dataclass
class BenchmarkResult:
    rows: pd.DataFrame  # model, group, metric, k, mean, std, n_users, seeds (domain "all")
    per_seed: pd.DataFrame  # model, seed, group, metric, k, value, n_users
    per_user: dict[tuple[str, int], pd.DataFrame]  # (model, seed) -> per-user metrics
    protocol: str
    splits: dict[int, dict]
    transfer: frozenset[str] = frozenset()  # labels of the cross-domain (transfer) models
    domain_rows: pd.DataFrame | None = None  # as rows, per truth domain (column ``domain``)


def _aggregate(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of ``value`` per ``keys``; ``n_users`` the mean count."""
    rows = (per_seed.groupby(keys, sort=False, dropna=False)
            .agg(mean=("value", "mean"), std=("value", "std"), n_users=("n_users", "mean"),
                 seeds=("seed", "nunique"))
            .reset_index())
    rows["std"] = rows["std"].fillna(0.0)
    return rows


def benchmark(cfg: ExperimentConfig, *, progress: bool = True, log=print,  # noqa: ANN001
              runs: Path | None = None, resume: bool = True) -> BenchmarkResult:
    """Every model x every seed on one dataset and split; aggregated mean +/- std, pooled and
    per truth domain.

    ``runs``: a directory where each (model, seed) run is written (``crossrec.eval.runlog``:
    per-user rows, ``run.json`` with the seed, the per-epoch ``train_log.jsonl``) and, for
    sampled next-item evaluation, ``runs/../negatives/`` the negatives drawn per seed. With
    ``resume`` runs found there with the same inputs are read back instead of fitted again,
    and a fit that was interrupted continues from its last finished epoch, so an interrupted
    benchmark continues where it stopped.
    """
    from crossrec.eval import runlog
    from crossrec.training.checkpoint import find_resume_point, load_resume_point

    dataset = load_dataset(cfg.data)
    headline = headline_metric(cfg)
    per_seed, by_domain, per_user, split_info = [], [], {}, {}
    protocol = "full"
    seeded_split = cfg.split.redrawn_per_seed
    split, fitted = None, {}
    for seed in cfg.train.seeds:
        if split is None or seeded_split:
            split, fitted = make_split(dataset, cfg.split, seed), {}
        split_info[seed] = split.describe()
        if runs is not None:
            _write_negatives(cfg, split, seed, Path(runs).parent / "negatives")
        for spec in cfg.model_specs():
            label = model_label(spec)
            key = runlog.run_key(cfg.model_dump(), spec, seed) if runs is not None else ""
            done = runlog.load_run(runs, key) if runs is not None and resume else None
            reuse = (label in fitted and fitted[label].model is not None
                     and fitted[label].model.deterministic)
            if done is not None:
                res = RunResult(label, seed, None, split, None, done[0], done[1])
            elif reuse and not cfg.eval.n_negatives:
                res = fitted[label]  # same model, same split, same candidates: same result
            else:
                where = runlog.fit_dir(runs, key) if runs is not None and not reuse else None
                point = find_resume_point(where) if where is not None and resume else None
                state = load_resume_point(point) if point is not None else None
                if state is not None:
                    runlog.note_resume(runs, key, state.epoch, state.plan[state.stage_index][0],
                                       state.log_lines)
                elif where is not None:
                    runlog.forget_resumes(runs, key)
                log(f"seed {seed}  {label}: "
                    + ("evaluating the model fitted for an earlier seed" if reuse else
                       f"fitting, from after epoch {state.epoch} (stage "
                       f"{state.plan[state.stage_index][0]}) of an interrupted run"
                       if state is not None else "fitting"))
                res = fit_and_evaluate(cfg, spec, split, seed, progress=progress,
                                       fitted=fitted[label] if reuse else None, run_dir=where,
                                       resume=point is not None)
            if runs is not None and done is None:
                runlog.save_run(runs, key, res.test, res.fit_seconds, res.label, seed)
            if done is None or label not in fitted:
                fitted[label] = res
            protocol = res.test.protocol
            per_seed.append(res.test.summary.assign(model=res.label, seed=seed))
            by_domain.append(res.test.by_domain.assign(model=res.label, seed=seed))
            per_user[(res.label, seed)] = res.test.per_user
            try:
                value = res.test.value(headline)
            except KeyError:
                value = float("nan")
            log(f"seed {seed}  {res.label:<40} {headline}={value:.4f}  "
                + ("read back from an earlier run" if done is not None
                   else "fit reused (deterministic model, same split)" if reuse
                   else f"fit {res.fit_seconds:.1f}s"))
    per_seed_df = pd.concat(per_seed, ignore_index=True)
    rows = _aggregate(per_seed_df, ["model", "group", "metric", "k"]).assign(domain="all")
    domain_rows = _aggregate(pd.concat(by_domain, ignore_index=True),
                             ["model", "domain", "group", "metric", "k"])
    transfer = frozenset(model_label(s) for s in cfg.model_specs() if is_transfer(s))
    return BenchmarkResult(rows, per_seed_df, per_user, protocol, split_info, transfer,
                           domain_rows[domain_rows["domain"] != "all"].reset_index(drop=True))


def _write_negatives(cfg: ExperimentConfig, split: splits.Split, seed: int, where: Path) -> None:
    """Sampled next-item evaluation: the negatives of ``seed`` (the same for every model) as
    ``where/<part>-seed<S>-n<N>.parquet`` (``user``, ``item``, ``domain``, ``negatives``:
    internal indices), for the valid and the reported part."""
    if cfg.eval.protocol != "next_item" or not cfg.eval.n_negatives:
        return
    from crossrec.atomic import atomic_file
    from crossrec.eval.sampled import sampled_negatives

    for part in dict.fromkeys(["valid", cfg.eval.part]):
        drawn = sampled_negatives(split, part, cfg.eval.n_negatives, seed)
        path = where / f"{part}-seed{seed}-n{cfg.eval.n_negatives}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_file(path, lambda tmp, d=drawn: d.to_parquet(tmp, index=False))


def is_transfer(spec: dict[str, Any]) -> bool:
    """Whether a model table is a cross-domain transfer model (a class of
    ``crossrec.models.cross`` not restricted to the target by ``train_on="target"``) rather
    than a baseline."""
    from crossrec.models import MODELS

    cls = MODELS.get(spec.get("name", ""))
    if cls is None or not cls.__module__.startswith("crossrec.models.cross."):
        return False
    field = cls.Config.model_fields.get("train_on")
    return spec.get("train_on", field.default if field else None) != "target"


def _ranked(result: BenchmarkResult, metric: str, group: str) -> pd.DataFrame:
    """Seed-aggregated rows of ``metric`` (``"ndcg@10"``, ``"mrr"``, ``"rmse"``) in ``group``,
    best model first (lowest first for the rating errors)."""
    name, _, k = metric.partition("@")
    rows = result.rows
    sel = rows[(rows["group"] == group) & (rows["metric"] == name)
               & ((rows["k"] == int(k)).fillna(False) if k else rows["k"].isna())]
    return sel.sort_values("mean", ascending=name in RATING_METRICS, kind="stable")


def _paired(result: BenchmarkResult, best: str, others: list[str], metric: str,
            group: str) -> pd.DataFrame:
    """Paired tests of ``best`` against each of ``others`` on the same users.

    Each user contributes one pair: their metric averaged over the seeds they were evaluated in
    (``rmse`` is tested on the per-case squared errors, ``mse``).
    """
    from crossrec.eval.significance import paired_test

    column = "mse" if metric == "rmse" else metric
    seeds = sorted({s for (_, s) in result.per_user})

    def per_user_mean(model: str) -> pd.DataFrame:
        # one value per user: the mean over the seeds in which the user was evaluated, so a
        # split that is the same for every seed does not count its users several times
        frames = [result.per_user[(model, s)] for s in seeds]
        pu = pd.concat(frames, ignore_index=True)
        if group != "all":
            pu = pu[pu["group"] == group]
        return pu.groupby("user", as_index=False)[column].mean()

    out = [{"best": best, "other": other, "metric": metric,
            **paired_test(per_user_mean(best), per_user_mean(other), metric=column)}
           for other in others if other != best]
    for row in out:
        row["metric"] = metric
    return pd.DataFrame(out)


def paired_cross_vs_baseline(result: BenchmarkResult, metric: str,
                             group: str = "all") -> pd.DataFrame:
    """Paired test of the best cross-domain model against the best baseline (by mean ``metric``).

    Returns:
        One row (``best`` = the best transfer model, ``other`` = the best baseline,
        ``mean_diff`` = best transfer - best baseline, p-values); empty when the benchmark
        lacks either kind.
    """
    ranked = list(_ranked(result, metric, group)["model"])
    cross = [m for m in ranked if m in result.transfer]
    base = [m for m in ranked if m not in result.transfer]
    if not cross or not base:
        return pd.DataFrame()
    return _paired(result, cross[0], [base[0]], metric, group)


def paired_against_best(result: BenchmarkResult, metric: str, group: str = "all") -> pd.DataFrame:
    """Paired test of the best model (by mean ``metric``; lowest for ``mae`` / ``rmse``)
    against every other, same users.

    Each user contributes one pair: their metric averaged over the seeds they were evaluated in.
    """
    ranked = list(_ranked(result, metric, group)["model"])
    if not ranked:
        return pd.DataFrame()
    return _paired(result, ranked[0], ranked[1:], metric, group)
