"""Full-ranking (or sampled) evaluation split by users over Ray tasks, merged exactly.

The model and the split go once into Ray's object store; task ``i`` of ``n`` runs
``evaluate(model, split, shard=(i, n), ...)`` (a fixed partition of the users by a hash of their
index, see ``crossrec.eval.shard``) and the driver merges the parts with ``merge_results``: the
per-user rows and the summary equal those of single-process ``evaluate`` exactly.

Example:
    >>> res = evaluate_distributed(model, split, workers=2, ks=(10, 20))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from crossrec.cluster import check_workers, ray_session
from crossrec.data.split import Split
from crossrec.eval.result import EvalResult
from crossrec.models.base import Recommender


def _evaluate_shard(model: Recommender, split: Split, shard: tuple[int, int],
                    kwargs: dict[str, Any]) -> EvalResult:
    """One task: the users of ``shard`` (runs in a Ray worker)."""
    from crossrec.eval.ranking import evaluate

    return evaluate(model, split, shard=shard, **kwargs)


def evaluate_distributed(model: Recommender, split: Split, *, workers: int,
                         address: str | None = None, **kwargs: Any) -> EvalResult:
    """``evaluate(model, split, **kwargs)`` computed as ``workers`` shards in Ray tasks.

    Args:
        model: a fitted recommender (pickled once into the object store).
        split: the split to evaluate on.
        workers: shards, one task (one CPU) each.
        address: an existing Ray cluster; None starts a local one.
        **kwargs: any argument of ``crossrec.eval.ranking.evaluate`` except ``shard``.

    Returns:
        The merged EvalResult (no ``shard`` in its params), equal to the single-process one.
    """
    from crossrec.eval.shard import merge_results

    n = check_workers(workers)
    if "shard" in kwargs:
        raise ValueError("evaluate_distributed makes the shards itself; do not pass shard")
    with ray_session(n, address) as ray:
        task = ray.remote(num_cpus=1)(_evaluate_shard)
        model_ref, split_ref = ray.put(model), ray.put(split)
        parts = ray.get([task.remote(model_ref, split_ref, (i, n), kwargs) for i in range(n)])
    return merge_results(parts)
