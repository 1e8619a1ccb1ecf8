"""Sampled next-item evaluation: distinct own-domain negatives outside the history, drawn once
per (split, part, N, seed) and shared by every model; metrics from the truth's rank."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from eval_toy import FixedScores

from crossrec.data import DatasetBuilder, predefined
from crossrec.errors import DataError
from crossrec.eval.next_item import evaluate_next_item
from crossrec.eval.sampled import _draw, sampled_negatives

N_ITEMS = 40


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(3)
    rows = []
    for u in range(30):
        for d in ("books", "movies"):
            items = rng.choice(N_ITEMS, size=5, replace=False)
            parts = ["train"] * 3 + ["test", "valid" if d == "books" else "train"]
            rows += [(f"u{u}", d, f"{d[0]}{i}", p) for i, p in zip(items, parts, strict=True)]
    rows += [("z", d, f"{d[0]}{i}", "train") for d in ("books", "movies")
             for i in range(N_ITEMS)]  # every item known
    frame = pd.DataFrame(rows, columns=["user_id", "domain", "item_id", "part"])
    frame["timestamp"] = np.arange(len(frame))
    return predefined(DatasetBuilder("toy").add_interactions(frame).build(), "movies")


def _model(split, seed: int) -> FixedScores:
    rng = np.random.default_rng(seed)
    train = split.train
    tables = {d: rng.integers(0, 5, size=(train.n_users, train.info.n_domain_items(d)))
              .astype(np.float32) for d in train.domains}  # integer scores: many ties
    return FixedScores(tables).fit(train, None)


def test_negatives_are_distinct_own_domain_and_outside_the_history(split) -> None:
    drawn = sampled_negatives(split, "test", 20, seed=1)
    assert drawn is sampled_negatives(split, "test", 20, seed=1)  # one draw, shared
    inter = split.train.interactions
    history = pd.concat([inter[["user", "item"]], split.valid[["user", "item"]]])
    seen = history.groupby("user")["item"].apply(set)
    assert len(drawn) == len(split.test)
    for row in drawn.itertuples():
        neg = np.asarray(row.negatives)
        span = split.train.domain_items(row.domain)
        assert len(set(neg)) == 20 and row.item not in set(neg)
        assert ((neg >= span.start) & (neg < span.stop)).all()
        assert not set(neg) & seen.get(row.user, set())
    again = _draw(split, "test", 20, 1)
    assert all((np.asarray(a) == np.asarray(b)).all()
               for a, b in zip(again["negatives"], drawn["negatives"], strict=True))
    other = sampled_negatives(split, "test", 20, seed=2)
    assert any((np.asarray(a) != np.asarray(b)).any()
               for a, b in zip(other["negatives"], drawn["negatives"], strict=True))


@pytest.mark.parametrize("model_seed", [0, 1])
def test_metrics_follow_the_rank_among_the_drawn_negatives(split, model_seed: int) -> None:
    model = _model(split, model_seed)
    res = evaluate_next_item(model, split, ks=(1, 5, 10), metrics=("hr", "ndcg", "mrr"),
                             n_negatives=20, seed=7)
    assert res.protocol == "sampled-20" and res.params["n_negatives"] == 20
    drawn = sampled_negatives(split, "test", 20, seed=7).set_index(["user", "item"])
    train = split.train
    for row in res.per_user.itertuples():
        span = train.domain_items(row.domain)
        table = model.tables[row.domain][row.user].numpy()
        own = table[row.item - span.start]
        neg = table[np.asarray(drawn.loc[(row.user, row.item), "negatives"]) - span.start]
        rank = 1 + int((neg >= own).sum())  # ties count against the truth
        assert row.mrr == pytest.approx(1.0 / rank)
        assert res.per_user.loc[row.Index, "hr@5"] == float(rank <= 5)
        assert res.per_user.loc[row.Index, "ndcg@10"] == pytest.approx(
            1.0 / np.log2(rank + 1) if rank <= 10 else 0.0)


def test_per_domain_rows_and_the_pooled_ones(split) -> None:
    res = evaluate_next_item(_model(split, 0), split, ks=(10,), metrics=("hr",),
                             n_negatives=20, seed=0)
    rows = res.by_domain
    assert list(dict.fromkeys(rows["domain"])) == ["all", "books", "movies"]
    pooled = rows[(rows["domain"] == "all") & (rows["group"] == "all")]["value"].iloc[0]
    assert pooled == pytest.approx(res.value("hr@10"))
    per = rows[(rows["domain"] != "all") & (rows["group"] == "all")]
    weighted = (per["value"] * per["n_cases"]).sum() / per["n_cases"].sum()
    assert weighted == pytest.approx(pooled)


def test_too_few_items_outside_the_history_is_a_clear_error(split) -> None:
    with pytest.raises(DataError, match=r"user 'u\d+' has \d+ items of domain '\w+' outside "
                                        r"their history; eval.n_negatives = 39 needs"):
        sampled_negatives(split, "test", 39, seed=0)
    with pytest.raises(ValueError, match="candidates must be 'domain'"):
        evaluate_next_item(_model(split, 0), split, candidates="all", n_negatives=5)
