"""Next-item evaluation: each truth row ranked alone, candidates per domain or pooled."""

import math

import numpy as np
import pandas as pd
import pytest
from eval_toy import FixedScores

from crossrec.data import DatasetBuilder, predefined
from crossrec.errors import DataError
from crossrec.eval.next_item import evaluate_next_item

# user a: history b0, m0; two test lines m1 and b1. user b: history m2, valid m3, test b2.
ROWS = [("a", "books", "b0", "train"), ("a", "movies", "m0", "train"),
        ("a", "movies", "m1", "test"), ("a", "books", "b1", "test"),
        ("b", "movies", "m2", "train"), ("b", "movies", "m3", "valid"),
        ("b", "books", "b2", "test"), ("c", "books", "b1", "train"),
        ("c", "movies", "m1", "train"), ("c", "movies", "m3", "train"),
        ("c", "books", "b2", "train")]
SCORES = {  # user -> item -> score
    "a": {"b0": 9, "b1": 4, "b2": 5, "m0": 8, "m1": 2, "m2": 3, "m3": 2},
    "b": {"b0": 1, "b1": 2, "b2": 0.5, "m0": 0, "m1": 0, "m2": 9, "m3": 9},
    "c": {},
}


@pytest.fixture(scope="module")
def setup():
    frame = pd.DataFrame(ROWS, columns=["user_id", "domain", "item_id", "part"])
    frame["timestamp"] = np.arange(len(frame))
    split = predefined(DatasetBuilder("toy").add_interactions(frame).build(), "movies")
    train = split.train
    tables = {}
    for d in train.domains:
        span = train.domain_items(d)
        table = np.zeros((train.n_users, span.stop - span.start), np.float32)
        for user, items in SCORES.items():
            u = int(train.users.index(np.array([user], dtype=object))[0])
            for name, value in items.items():
                if name[0] == d[0]:
                    table[u, int(train.item_index(d, [name])[0]) - span.start] = value
        tables[d] = table
    return split, FixedScores(tables).fit(train, None)


def _ranks(result, split) -> dict[tuple[str, str], float]:
    train = split.train
    names = {int(i): n.split("\x1f", 1)[1] for i, n in enumerate(train.items.ids)}
    users = {int(i): n for i, n in enumerate(train.users.ids)}
    f = result.per_user
    return {(users[u], names[i]): 1.0 / m
            for u, i, m in zip(f["user"], f["item"], f["mrr"], strict=True)}


def test_domain_candidates(setup) -> None:
    split, model = setup
    res = evaluate_next_item(model, split, candidates="domain", ks=(1, 5), metrics=("hr", "ndcg",
                                                                                    "mrr"))
    # a/m1: m0 masked, m2 ahead, m3 tied (higher index) -> 2; a/b1: b0 masked, b2 ahead -> 2
    # b/b2: b0 and b1 ahead -> 3
    assert _ranks(res, split) == {("a", "m1"): 2, ("a", "b1"): 2, ("b", "b2"): 3}
    assert res.protocol == "next-item/domain"
    assert res.value("hr@1") == 0.0 and res.value("hr@5") == 1.0
    expected = np.mean([1 / math.log2(3), 1 / math.log2(3), 1 / math.log2(4)])
    assert res.value("ndcg@5") == pytest.approx(expected)
    assert res.value("mrr") == pytest.approx(np.mean([1 / 2, 1 / 2, 1 / 3]))
    assert res.summary.query("group == 'all' and metric == 'hr'")["n_cases"].iloc[0] == 3


def test_all_candidates_pool_domains_and_keep_the_other_target(setup) -> None:
    split, model = setup
    res = evaluate_next_item(model, split, candidates="all", ks=(1, 5), metrics=("hr", "mrr"))
    # a/m1 among both domains: b2 (5), b1 (4, the other target: not masked), m2 (3) ahead
    # b/b2: m2 (training) and m3 (valid) masked; b0, b1 ahead
    assert _ranks(res, split) == {("a", "m1"): 4, ("a", "b1"): 2, ("b", "b2"): 3}
    assert res.value("mrr@5") == pytest.approx(np.mean([1 / 4, 1 / 2, 1 / 3]))


def test_valid_part_and_errors(setup) -> None:
    split, model = setup
    res = evaluate_next_item(model, split, part="valid", ks=(1,), metrics=("hr",))
    assert res.value("hr@1") == 1.0  # b/m3: m2 masked, m3 first
    with pytest.raises(ValueError, match="candidates"):
        evaluate_next_item(model, split, candidates="every")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_next_item(model, split, metrics=("auc",))
    empty = predefined(split.train.with_interactions(split.train.interactions.assign(
        part="train")), "movies")
    with pytest.raises(DataError, match="no test truth"):
        evaluate_next_item(model, empty)


SPEC = {"name": "transition", "window": 1, "backward": 0.0, "history_decay": 0.5}


def test_experiment_uses_next_item_protocol() -> None:
    from crossrec.config import ExperimentConfig
    from crossrec.errors import ConfigError
    from crossrec.experiment import fit_and_evaluate
    from crossrec.testing.sequential import last_item_split, make_chain

    split = last_item_split(make_chain(n_users=60))
    tree = {"data": {"path": "unused"}, "split": {"kind": "predefined", "target": "b"},
            "model": SPEC,
            "eval": {"protocol": "next_item", "candidates": "all", "ks": [10, 1],
                     "metrics": ["hr", "ndcg", "mrr"]}}
    res = fit_and_evaluate(ExperimentConfig(**tree), SPEC, split, 0, progress=False)
    assert res.test.protocol == res.valid.protocol == "next-item/all"
    assert res.test.value("hr@1") > 0.9
    assert len(res.test.per_user) == len(split.test)  # one row per held-out line
    tree["eval"]["n_negatives"] = 99
    with pytest.raises(ConfigError, match="next_item"):
        fit_and_evaluate(ExperimentConfig(**tree), SPEC, split, 0, progress=False)


def test_both_candidate_sets_from_one_call(setup) -> None:
    split, model = setup
    both = evaluate_next_item(model, split, candidates="both", ks=(5,), metrics=("ndcg", "mrr"))
    pooled = evaluate_next_item(model, split, candidates="all", ks=(5,), metrics=("ndcg", "mrr"))
    per_domain = evaluate_next_item(model, split, candidates="domain", ks=(5,),
                                    metrics=("ndcg", "mrr"))
    assert both.value("ndcg@5") == pytest.approx(pooled.value("ndcg@5"))
    assert both.value("mrr") == pytest.approx(pooled.value("mrr"))
    assert both.value("ndcg_domain@5") == pytest.approx(per_domain.value("ndcg@5"))
    assert both.value("mrr_domain") == pytest.approx(per_domain.value("mrr"))


@pytest.mark.slow
@pytest.mark.realdata
def test_urllm_protocol_on_real_data(data_dir) -> None:
    """Arts-Office valid lines: one case per line, both domains; co-occurrence >> popularity."""
    from crossrec.data.sources.arts_office import read_arts_office
    from crossrec.models.base import FitOptions
    from crossrec.models.baselines.pop import Pop
    from crossrec.models.baselines.transition import Transition

    root = data_dir / "amazon-arts-office"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    split = predefined(read_arts_office(root).build(), "office")
    options = FitOptions(target="office", progress=False)
    model = Transition(window=100).fit(split.train, options)
    ours = evaluate_next_item(model, split, part="valid", candidates="both", ks=(10,),
                              metrics=("ndcg",))
    pop = evaluate_next_item(Pop().fit(split.train, options), split, part="valid",
                             candidates="both", ks=(10,), metrics=("ndcg",))
    assert len(ours.per_user) == 1148 and ours.per_user["user"].nunique() == 577
    for metric in ("ndcg@10", "ndcg_domain@10"):
        assert ours.value(metric) > 0.06 > 3 * pop.value(metric)
