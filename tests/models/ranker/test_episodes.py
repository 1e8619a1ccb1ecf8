"""Ranker episodes: ``last_item`` positions label earlier steps and drop the later ones."""

import numpy as np
import pandas as pd
import pytest

from crossrec.data import DatasetBuilder
from crossrec.errors import DataError
from crossrec.models.ranker.episodes import make_episodes


def _sequences():  # noqa: ANN202
    """u0: a1 b1 a2 b2 (times 1-4); u1: a3 a1 (times 5, 6, rows given newest first);
    u2: b3 alone."""
    rows = [("u0", "a1", "a", 1), ("u0", "b1", "b", 2), ("u0", "a2", "a", 3),
            ("u0", "b2", "b", 4), ("u1", "a1", "a", 6), ("u1", "a3", "a", 5),
            ("u2", "b3", "b", 7)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "timestamp"])
    return DatasetBuilder("s").add_interactions(frame).build()


def _named(data, frame: pd.DataFrame) -> set[tuple[str, str]]:  # noqa: ANN001
    return {(str(data.users.ids[u]), str(data.items.ids[i]).split("\x1f")[-1])
            for u, i in zip(frame["user"], frame["item"], strict=True)}


@pytest.mark.parametrize(("position", "labels", "gone"), [
    (0, {("u0", "b2"), ("u1", "a1")}, set()),
    (1, {("u0", "a2")}, {("u0", "b2")}),  # u1 would keep no history: not eligible
    (2, {("u0", "b1")}, {("u0", "a2"), ("u0", "b2")}),
])
def test_last_item_position_labels_the_step_before_the_dropped_ones(position, labels, gone
                                                                     ) -> None:
    data = _sequences()
    ep = make_episodes(data, "last_item", "a", ratio=1.0, position=position)
    assert _named(data, ep.labels) == labels
    left = _named(data, ep.train.interactions)
    everything = _named(data, data.interactions)
    assert left == everything - labels - gone  # nothing else leaves, u2 is never touched
    assert len(ep.train.interactions) == len(data.interactions) - len(labels) - len(gone)


def test_last_item_position_needs_long_enough_sequences() -> None:
    with pytest.raises(DataError, match="5 training interactions"):
        make_episodes(_sequences(), "last_item", "a", ratio=1.0, position=3)


def test_positions_need_last_item_episodes() -> None:
    from crossrec.models.ranker.config import RankerConfig

    with pytest.raises(ValueError, match="episode_positions"):
        RankerConfig(episode_positions=2)
    assert RankerConfig(episodes="last_item", episode_positions=2).episode_positions == 2


def test_groups_of_one_user_are_held_out_together() -> None:
    """Early-stopping users: a user's groups (positions) stay on one side, and with one group
    a user the draw is the per-group draw (so earlier fits are unchanged)."""
    from crossrec.models.ranker.learn import held_out

    plain = held_out(500, 0.2, 3)
    np.testing.assert_array_equal(held_out(500, 0.2, 3, np.arange(500)[::-1]), plain)
    owners = np.repeat(np.arange(250), 2)
    together = held_out(500, 0.2, 3, owners)
    assert (together[::2] == together[1::2]).all()
    np.testing.assert_array_equal(together[::2], plain[::2])
    assert 0.1 < together.mean() < 0.3


def test_ranker_pools_the_rows_of_each_position() -> None:
    import torch

    from crossrec.models.base import FitOptions, Query
    from crossrec.models.ranker import Ranker
    from crossrec.testing.sequential import last_item_split, make_chain

    split = last_item_split(make_chain(n_users=120))
    spec = {"candidates": [{"name": "transition", "n": 10}, {"name": "pop", "n": 10}],
            "features": ["sources", "popularity", "history"], "episodes": "last_item",
            "episode_ratio": 1.0, "n_estimators": 10, "negatives": 10, "min_child_samples": 2}
    options = FitOptions(target="b", seed=0, progress=False)
    one = Ranker(spec).fit(split.train, options)
    two = Ranker({**spec, "episode_positions": 2}).fit(split.train, options)
    assert two.report["episode_users"] > 1.5 * one.report["episode_users"]
    assert torch.isfinite(two.score(Query(torch.arange(10)), "b")).all()
