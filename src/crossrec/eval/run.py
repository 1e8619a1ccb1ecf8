"""The one evaluation entry point: an ``EvalConfig`` decides which protocol runs.

Every caller that evaluates from a config (``crossrec.experiment``, ``crossrec evaluate``,
``crossrec update``) goes through ``run`` (results) or ``validation_hook`` (early stopping):

- rating metrics (``mae`` / ``rmse``) -> ``crossrec.eval.ranking.evaluate_ratings``;
- ``protocol = "next_item"`` -> ``crossrec.eval.next_item.evaluate_next_item`` (every
  candidate of the domain, or sampled with ``n_negatives`` when > 0);
- otherwise ranking -> ``crossrec.eval.ranking.evaluate`` (full ranking, or sampled with
  ``n_negatives`` when > 0), over Ray tasks when ``workers`` > 0.

Example:
    >>> from crossrec.eval.run import run  # doctest: +SKIP
    >>> result = run(model, split, cfg.eval, part="test", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from crossrec.errors import ConfigError

if TYPE_CHECKING:
    from crossrec.config import EvalConfig, ExperimentConfig
    from crossrec.data.split import Split
    from crossrec.eval.result import EvalResult
    from crossrec.models.base import Recommender

RATING_METRICS = ("mae", "rmse")
"""Error metrics of predicted ratings (``evaluate_ratings``); lower is better."""

EvalKind = Literal["ratings", "next_item", "ranking"]


def protocol(cfg: EvalConfig, early_stopping: str | None = None) -> EvalKind:
    """Which evaluation ``cfg`` asks for: ``"ratings"``, ``"next_item"`` or ``"ranking"``.

    Args:
        cfg: the eval config.
        early_stopping: the validation metric (``train.early_stopping``, e.g. ``"ndcg@10"``);
            when given, it must be of the same kind (rating error or ranking) as ``cfg.metrics``.

    Raises:
        ConfigError: rating and ranking metrics mixed, an early-stopping metric of the other
            kind, or ``next_item`` combined with sampled negatives or rating metrics.
    """
    rating = [m for m in cfg.metrics if m in RATING_METRICS]
    if rating and len(rating) != len(cfg.metrics):
        raise ConfigError(f"eval.metrics {cfg.metrics}: rating metrics (mae, rmse) "
                          "cannot be mixed with ranking metrics in one benchmark")
    if early_stopping is not None:
        stop = early_stopping.partition("@")[0]
        if bool(rating) != (stop in RATING_METRICS):
            want = "'rmse' or 'mae'" if rating else "a ranking metric such as 'ndcg@10'"
            raise ConfigError(f"train.early_stopping={early_stopping!r} does not fit "
                              f"eval.metrics {cfg.metrics}; use {want}")
    if cfg.protocol == "next_item":
        if rating:
            raise ConfigError("eval.protocol='next_item' ranks items: it cannot be combined "
                              "with rating metrics")
        if cfg.n_negatives and cfg.candidates != "domain":
            raise ConfigError(f"eval.n_negatives with eval.protocol='next_item' draws the "
                              f"negatives from the truth item's own domain: set "
                              f"eval.candidates = \"domain\" (not {cfg.candidates!r})")
        return "next_item"
    return "ratings" if rating else "ranking"


def run(model: Recommender, split: Split, cfg: EvalConfig, *, part: str = "test",
        seed: int = 0, device: str = "cpu", metric: str | None = None, workers: int = 0,
        address: str | None = None) -> EvalResult:
    """Evaluate ``model`` on ``split``'s ``part`` as ``cfg`` asks.

    Args:
        model: a fitted recommender.
        split: the split whose truth is looked up (and whose training items are masked).
        cfg: the eval config: metrics, ks, protocol, candidates, n_negatives, batch size.
        part: ``"valid"`` or ``"test"``.
        seed: draws the sampled negatives (``n_negatives`` > 0; ranking and next_item).
        device: where ranking scores are masked and cut (ranking protocol).
        metric: only this metric, e.g. ``"ndcg@10"``, ``"mrr"`` (cut at 10, read uncut) or
            ``"rmse"``, instead of ``cfg.metrics`` x ``cfg.ks``.
        workers: split the users over this many Ray tasks (ranking only; same result).
        address: the Ray cluster for ``workers`` (default: a local one).

    Raises:
        ConfigError: the config's protocol and metrics do not fit (see ``protocol``), or
            ``workers`` with a protocol other than ranking.
    """
    kind = protocol(cfg)
    if metric is not None:
        name, _, k = metric.partition("@")
        ks, metrics = (int(k or 10),), (name,)
    else:
        ks, metrics = tuple(cfg.ks), tuple(cfg.metrics)
    if workers and kind != "ranking":
        what = "rating error" if kind == "ratings" else "the next_item protocol"
        raise ConfigError(f"--workers splits ranking evaluation; this config is evaluated on "
                          f"{what} (run without --workers)")
    if kind == "ratings":
        from crossrec.eval.ranking import evaluate_ratings

        return evaluate_ratings(model, split, part=part, batch_size=cfg.batch_size)
    if kind == "next_item":
        from crossrec.eval.next_item import evaluate_next_item

        return evaluate_next_item(model, split, part=part, candidates=cfg.candidates, ks=ks,
                                  metrics=metrics, batch_size=cfg.batch_size,
                                  n_negatives=cfg.n_negatives or None, seed=seed)
    kw = dict(part=part, ks=ks, metrics=metrics, batch_size=cfg.batch_size,
              n_negatives=cfg.n_negatives or None, seed=seed, device=device)
    if workers:
        from crossrec.eval.distributed import evaluate_distributed

        return evaluate_distributed(model, split, workers=workers, address=address, **kw)
    from crossrec.eval.ranking import evaluate

    return evaluate(model, split, **kw)


def validation_hook(split: Split, cfg: EvalConfig, metric: str, *, seed: int = 0,
                    device: str = "cpu") -> Callable[[Recommender], float]:
    """The early-stopping score (``FitOptions.validate``): ``metric`` (e.g. ``"ndcg@10"``,
    ``"rmse"``) on ``split``'s validation users, higher is better (rating errors negated).

    Raises:
        ConfigError: at once, when ``metric`` does not fit ``cfg`` (see ``protocol``).
    """
    sign = -1.0 if protocol(cfg, metric) == "ratings" else 1.0
    name, _, k = metric.partition("@")

    def validate(model: Recommender) -> float:
        result = run(model, split, cfg, part="valid", seed=seed, device=device, metric=metric)
        return sign * result.value(name, int(k) if k else None)

    return validate


def headline_metric(cfg: ExperimentConfig) -> str:
    """The metric a benchmark prints per run and tests for significance: ``rmse`` (or ``mae``)
    for rating metrics, else NDCG@10 (@ the first cut-off when 10 is not among ``eval.ks``;
    the first metric when NDCG is not asked for)."""
    if protocol(cfg.eval, cfg.train.early_stopping) == "ratings":
        return "rmse" if "rmse" in cfg.eval.metrics else "mae"
    name = "ndcg" if "ndcg" in cfg.eval.metrics else cfg.eval.metrics[0]
    return f"{name}@{10 if 10 in cfg.eval.ks else cfg.eval.ks[0]}"
