"""The ranker's learner: LightGBM ``lambdarank`` on the episode groups, early stopping on a
held-out share of the episode users, threads set explicitly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.models.ranker.model import RankerConfig


def threads(n: int) -> int:
    """``n``, or (0) crossrec's thread count (``crossrec.threads.current``)."""
    from crossrec.threads import current

    return n or current()


def train_booster(x: np.ndarray, y: np.ndarray, sizes: np.ndarray, c: RankerConfig,
                  seed: int) -> tuple[Any, dict[str, Any]]:
    """Fit the booster.

    Args:
        x: ``float32 [N, F]`` feature rows, grouped by user (candidate order within a group).
        y: ``float32 [N]`` 1 = a hidden item of the user, 0 = not.
        sizes: ``int [G]`` rows per group (user).
        c: the ranker config (learning settings).
        seed: the seed of the held-out draw and of LightGBM.

    Returns:
        The booster and ``{"trees", "episode_valid_ndcg@10"}``.
    """
    import lightgbm as lgb

    rng = np.random.default_rng(seed + 1)
    held = rng.random(len(sizes)) < c.early_stopping_share
    if held.all() or not held.any():
        held[:] = False
        held[0] = len(sizes) > 1
    row_held = np.repeat(held, sizes)
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10],
              "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
              "min_child_samples": c.min_child_samples, "num_threads": threads(c.threads),
              "seed": seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
              "feature_pre_filter": False}
    # feature names stay in FeatureBuilder.names: LightGBM refuses JSON characters in names
    dtrain = lgb.Dataset(x[~row_held], y[~row_held], group=sizes[~held], free_raw_data=True)
    sets, callbacks = [], []
    if held.any():
        sets = [lgb.Dataset(x[row_held], y[row_held], group=sizes[held], reference=dtrain)]
        callbacks = [lgb.early_stopping(c.early_stopping_rounds, verbose=False)]
    booster = lgb.train(params, dtrain, num_boost_round=c.n_estimators, valid_sets=sets,
                        callbacks=callbacks)
    stats: dict[str, Any] = {"trees": booster.best_iteration or booster.current_iteration()}
    if held.any():
        stats["episode_valid_ndcg@10"] = float(booster.best_score["valid_0"]["ndcg@10"])
    return booster, stats
