"""The ranker's learner: LightGBM ``lambdarank`` on the episode groups, early stopping on a
held-out share of the episode users, threads set explicitly; ``n_boosters`` > 1 bags several
boosters (each its own held-out users, row and feature subsamples and seed) and averages them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.models.ranker.config import RankerConfig


def threads(n: int) -> int:
    """``n``, or (0) crossrec's thread count (``crossrec.threads.current``)."""
    from crossrec.threads import current

    return n or current()


SEPARATOR = "\n#crossrec-next-booster\n"


class Ensemble:
    """Boosters whose predictions are averaged; the subset of ``lightgbm.Booster`` the ranker
    uses (``predict``, ``feature_importance``, ``num_feature``, ``model_to_string``)."""

    def __init__(self, boosters: list[Any]) -> None:
        self.boosters = boosters

    @classmethod
    def from_string(cls, text: str) -> Ensemble:
        import lightgbm as lgb

        return cls([lgb.Booster(model_str=part) for part in text.split(SEPARATOR)])

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        """``[N]`` mean score (``[N, F + 1]`` mean SHAP contributions with ``pred_contrib``)."""
        return np.mean([b.predict(x, **kwargs) for b in self.boosters], axis=0)

    def feature_importance(self, kind: str = "gain") -> np.ndarray:
        return np.sum([b.feature_importance(kind) for b in self.boosters], axis=0)

    def num_feature(self) -> int:
        return self.boosters[0].num_feature()

    def model_to_string(self) -> str:
        return SEPARATOR.join(b.model_to_string() for b in self.boosters)


def merged_trees(boosters: list[Any]) -> Any:
    """One LightGBM booster holding the trees of ``boosters`` in order. Its score is their sum
    (the ensemble's mean times their count: what ``compiled`` compiles, then divides), and one
    ``pred_leaf`` pass over a request's rows replaces one per booster in explanations (each
    call costs ~0.1-0.2 ms of LightGBM set-up, more than the traversal of 10 rows). None when
    there is one booster or the model text is not the expected layout."""
    import lightgbm as lgb

    if len(boosters) < 2:
        return None
    texts = [b.model_to_string() for b in boosters]
    trees: list[str] = []
    for text in texts:
        start, end = text.find("\nTree="), text.find("\nend of trees")
        if start < 0 or end < start:
            return None
        # each block: "Tree=<i>\n" then the tree's lines
        trees += [block.partition("\n")[2].strip("\n")
                  for block in text[start + 1:end].split("Tree=")[1:]]
    head = texts[0][:texts[0].find("\nTree=")]
    # tree_sizes (byte offsets for a parallel load) would be wrong: the loader parses without
    head = "\n".join(line for line in head.split("\n") if not line.startswith("tree_sizes="))
    body = "".join(f"Tree={k}\n{t}\n\n" for k, t in enumerate(trees))
    merged = lgb.Booster(model_str=f"{head}\n\n{body}end of trees\n")
    if merged.num_trees() != sum(b.num_trees() for b in boosters):
        return None
    return merged


def train_booster(x: np.ndarray, y: np.ndarray, sizes: np.ndarray, c: RankerConfig,
                  seed: int, owners: np.ndarray | None = None) -> tuple[Ensemble, dict[str, Any]]:
    """Fit ``c.n_boosters`` boosters (seeds ``seed``, ``seed + 1``, ...) into an ensemble.
    ``owners``: ``int [G]`` the user of each group; a user's groups are held out together.

    Returns:
        The ensemble and ``{"trees", "episode_valid_ndcg@10"}`` (means over the boosters).
    """
    fitted = [_train_one(x, y, sizes, c, seed + k, c.n_boosters > 1, objective(c, k), owners)
              for k in range(c.n_boosters)]
    stats = {key: float(np.mean([f[1][key] for f in fitted])) for key in fitted[0][1]}
    stats["trees"] = int(round(stats["trees"]))
    return Ensemble([f[0] for f in fitted]), stats


def objective(c: RankerConfig, k: int) -> str:
    """LightGBM objective of booster ``k``: ``c.objective``, or for ``mixed`` lambdarank on
    even and rank_xendcg on odd boosters."""
    if c.objective == "mixed":
        return "lambdarank" if k % 2 == 0 else "rank_xendcg"
    return c.objective


def held_out(n_groups: int, share: float, seed: int, owners: np.ndarray | None = None
             ) -> np.ndarray:
    """``bool [G]`` the groups held out for early stopping: a seeded draw per group, and a
    user's groups (``owners``) all follow the draw of their first group (with one group a
    user, that is the per-group draw)."""
    held = np.random.default_rng(seed).random(n_groups) < share
    if owners is not None:
        _, first, inverse = np.unique(owners, return_index=True, return_inverse=True)
        held = held[first][inverse]
    return held


def _train_one(x: np.ndarray, y: np.ndarray, sizes: np.ndarray, c: RankerConfig,
               seed: int, bag: bool, objective: str, owners: np.ndarray | None = None
               ) -> tuple[Any, dict[str, Any]]:
    """Fit one booster (``bag``: 80 % row and feature subsamples) with LightGBM ``objective``.

    Args:
        x: ``float32 [N, F]`` feature rows, grouped by user (candidate order within a group).
        y: ``float32 [N]`` 1 = a hidden item of the user, 0 = not.
        sizes: ``int [G]`` rows per group (user).
        c: the ranker config (learning settings).
        seed: the seed of the held-out draw and of LightGBM.
        owners: ``int [G]`` the user of each group (None: one group a user). A user with several
            groups (``episode_positions``) is held out or kept whole, by the draw of their
            first group, so with one group a user the draw is the per-group one.

    Returns:
        The booster and ``{"trees", "episode_valid_ndcg@10"}``.
    """
    import lightgbm as lgb

    held = held_out(len(sizes), c.early_stopping_share, seed + 1, owners)
    if held.all() or not held.any():
        held[:] = False
        held[0] = len(sizes) > 1
    row_held = np.repeat(held, sizes)
    params = {"objective": objective, "metric": "ndcg", "eval_at": [10],
              "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
              "min_child_samples": c.min_child_samples, "num_threads": threads(c.threads),
              "seed": seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
              "feature_pre_filter": False}
    if bag:
        params.update(bagging_fraction=0.8, bagging_freq=1, feature_fraction=0.8,
                      bagging_seed=seed, feature_fraction_seed=seed)
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
