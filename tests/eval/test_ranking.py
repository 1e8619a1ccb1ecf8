"""evaluate() on a hand-built split with chosen scores: exact metric values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from eval_toy import FixedScores, random_split, toy_split

from crossrec.errors import DataError
from crossrec.eval import EvalResult, evaluate, evaluate_ratings

L3, L4 = math.log2(3), math.log2(4)
ALL = ("recall", "ndcg", "hr", "mrr", "precision", "auc")


def row(result: EvalResult, user: int) -> pd.Series:
    return result.per_user.set_index("user").loc[user]


def test_full_ranking_exact_values(split, model) -> None:
    r = evaluate(model, split, ks=(1, 2, 10), metrics=ALL)
    assert r.protocol == "full" and r.domain == "movies" and r.part == "test"
    assert r.per_user["user"].tolist() == [0, 1, 2]  # d has no truth: not evaluated
    a, b, c = row(r, 0), row(r, 1), row(r, 2)
    # a: m0 (train) and m1 (valid) are masked, test m2 is 2nd after m3
    assert (a["recall@1"], a["recall@2"], a["hr@1"], a["hr@2"]) == (0, 1, 0, 1)
    assert a["ndcg@2"] == pytest.approx(1 / L3) and a["ndcg@10"] == pytest.approx(1 / L3)
    assert a["mrr@10"] == 0.5 and a["precision@2"] == 0.5 and a["precision@10"] == 0.1
    assert a["auc"] == pytest.approx(2 / 3)  # beats m4, m5; loses to m3; m0, m1 excluded
    # b: all tied, unmasked m1, m2, m5 in index order -> test m5 is 3rd
    assert b["hr@2"] == 0 and b["recall@10"] == 1
    assert b["ndcg@10"] == pytest.approx(0.5) and b["mrr@10"] == pytest.approx(1 / 3)
    assert b["auc"] == pytest.approx(0.5)
    # c (cold, two truths m1, m4 at ranks 2 and 3)
    assert c["n_truth"] == 2 and c["group"] == "cold"
    assert c["recall@1"] == 0 and c["recall@2"] == 0.5 and c["recall@10"] == 1
    assert c["ndcg@2"] == pytest.approx((1 / L3) / (1 + 1 / L3))
    assert c["ndcg@10"] == pytest.approx((1 / L3 + 1 / L4) / (1 + 1 / L3))
    assert c["precision@10"] == pytest.approx(0.2) and c["mrr@10"] == 0.5
    assert c["auc"] == pytest.approx(0.75)
    # summary by group
    assert r.value("ndcg", 10) == pytest.approx((1 / L3 + 0.5 + c["ndcg@10"]) / 3)
    assert r.value("ndcg@10", group="warm") == pytest.approx((1 / L3 + 0.5) / 2)
    assert r.value("ndcg", 10, group="cold") == pytest.approx(c["ndcg@10"])
    assert r.value("auc") == pytest.approx((2 / 3 + 0.5 + 0.75) / 3)
    s = r.summary
    assert list(s.columns[:5]) == ["group", "metric", "k", "value", "n_users"]
    assert set(s["group"]) == {"all", "cold", "warm"}
    assert s.query("group == 'warm'")["n_users"].unique().tolist() == [2]
    assert not s["value"].isna().any()


def test_training_item_scored_highest_is_not_counted(split) -> None:
    table = np.zeros((4, 6), np.float32)
    table[0] = [10, 0, 9, 0, 0, 0]  # a: train item m0 first, test m2 second
    table[1, 3] = 10  # b: train item m3 first
    r = evaluate(FixedScores({"movies": table}), split, ks=(1,), metrics=("hr",))
    assert row(r, 0)["hr@1"] == 1.0
    assert row(r, 1)["hr@1"] == 0.0  # m3 is masked; rank 1 goes to m1 (lowest index of ties)


def test_valid_items_masked_at_test_only(split) -> None:
    table = np.zeros((4, 6), np.float32)
    table[0] = [0, 10, 9, 0, 0, 0]  # a: valid m1 first, test m2 second
    m = FixedScores({"movies": table})
    assert row(evaluate(m, split, ks=(1,), metrics=("hr",)), 0)["hr@1"] == 1.0
    valid = evaluate(m, split, part="valid", ks=(1,), metrics=("hr",))
    assert valid.part == "valid" and valid.per_user["user"].tolist() == [0, 1]
    assert row(valid, 0)["hr@1"] == 1.0  # valid truth m1 is first at validation
    table[0] = [0, 0, 10, 0, 0, 0]  # at validation the test item is not known: not masked
    assert row(evaluate(m, split, part="valid", ks=(1,), metrics=("hr",)), 0)["hr@1"] == 0.0


def test_model_output_view_is_not_modified(split) -> None:
    class Shared(FixedScores):
        def score(self, query, domain):
            return self.tables[domain][0].expand(len(query.users), -1)

    m = Shared({"movies": np.arange(6, dtype=np.float32)[None].repeat(4, 0)})
    before = m.tables["movies"].clone()
    evaluate(m, split)
    assert torch.equal(m.tables["movies"], before)


def test_model_parameters_are_not_modified(split) -> None:
    from torch import nn

    from crossrec.models.base import TorchRecommender

    class Table(TorchRecommender):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.arange(18.0).reshape(3, 6), requires_grad=False)

        def build(self, train, options): ...
        def batches(self, train, stage, rng): return iter(())
        def loss(self, batch, stage): return torch.zeros(())
        def score(self, query, domain): return self.table.detach()  # the parameter itself

    m = Table()
    r = evaluate(m, split, users=[0, 1, 2], ks=(1,), metrics=("hr",))
    assert torch.equal(m.table, torch.arange(18.0).reshape(3, 6))
    assert r.per_user["hr@1"].tolist() == [0.0, 1.0, 0.0]  # b: m5 scores highest


def test_batched_equals_single_user_batches() -> None:
    split = random_split()
    rng = np.random.default_rng(1)
    n_dom = split.train.info.n_domain_items("movies")
    scores = rng.integers(0, 5, size=(split.train.n_users, n_dom)).astype(np.float32)
    model = FixedScores({"movies": scores})
    full = evaluate(model, split, ks=(5, 10), metrics=ALL, batch_size=1024)
    assert model.calls == [len(full.per_user)]
    one = evaluate(model, split, ks=(5, 10), metrics=ALL, batch_size=1)
    model.calls.clear()
    seven = evaluate(model, split, ks=(5, 10), metrics=ALL, batch_size=7)
    assert max(model.calls) == 7 and sum(model.calls) == len(full.per_user)
    pd.testing.assert_frame_equal(full.per_user, one.per_user)
    pd.testing.assert_frame_equal(full.per_user, seven.per_user)
    pd.testing.assert_frame_equal(full.summary, one.summary)


def test_topk_matches_a_python_reference() -> None:
    split = random_split(seed=3)
    rng = np.random.default_rng(4)
    n_dom = split.train.info.n_domain_items("movies")
    off = split.train.domain_items("movies").start
    scores = rng.integers(0, 6, size=(split.train.n_users, n_dom)).astype(np.float32)
    r = evaluate(FixedScores({"movies": scores}), split, ks=(10,), metrics=("ndcg",))
    seen = split.train.user_items("movies") + split.train.user_items("movies") * 0
    test, valid = split.truth("test"), split.truth("valid")
    for u, got in zip(r.per_user["user"], r.per_user["ndcg@10"], strict=True):
        masked = set(seen[u].indices) | set(valid.loc[valid.user == u, "item"] - off)
        truth = set(test.loc[test.user == u, "item"] - off)
        masked -= truth
        order = sorted((i for i in range(n_dom) if i not in masked),
                       key=lambda i: (-scores[u, i], i))[:10]
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(order) if i in truth)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), 10)))
        assert got == pytest.approx(dcg / idcg)


def test_users_subset_and_errors(split, model) -> None:
    r = evaluate(model, split, users=[2, 3])
    assert r.per_user["user"].tolist() == [2]
    assert set(r.summary["group"]) == {"all", "cold"}  # no warm user: group omitted
    with pytest.raises(DataError):
        evaluate(model, split, users=[3])
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, split, metrics=("ndgc",))
    with pytest.raises(DataError):
        evaluate(model, split, domain="books")  # no truth in books
    with pytest.raises(KeyError, match="available"):
        evaluate(model, split).value("ndcg", 50)


def test_sampled_protocol_labelled_and_reproducible() -> None:
    split = random_split()
    n_dom = split.train.info.n_domain_items("movies")
    scores = np.random.default_rng(2).random((split.train.n_users, n_dom)).astype(np.float32)
    model = FixedScores({"movies": scores})
    a = evaluate(model, split, n_negatives=5, seed=1, ks=(1, 3), metrics=("hr", "ndcg", "mrr"))
    b = evaluate(model, split, n_negatives=5, seed=1, ks=(1, 3), metrics=("hr", "ndcg", "mrr"),
                 batch_size=3)
    c = evaluate(model, split, n_negatives=5, seed=2, ks=(1, 3), metrics=("hr", "ndcg", "mrr"))
    assert a.protocol == "sampled-5" and a.to_dict()["protocol"] == "sampled-5"
    assert a.params["n_negatives"] == 5
    pd.testing.assert_frame_equal(a.per_user, b.per_user)
    assert not a.per_user["mrr"].equals(c.per_user["mrr"])
    assert len(a.per_user) == len(split.truth("test"))  # one row per truth case
    assert {"user", "item", "group", "n_truth", "hr@1", "ndcg@3", "mrr@3", "mrr"} <= set(
        a.per_user.columns)
    assert a.value("mrr") == pytest.approx(a.per_user["mrr"].mean())


def test_sampled_negatives_skip_seen_items_and_ties_are_pessimistic(split) -> None:
    # a: train m0, valid m1 score 10; test m2 scores 5; unseen items 0 -> rank 1 if no seen
    # item is ever drawn as a negative
    table = np.zeros((4, 6), np.float32)
    table[0] = [10, 10, 5, 0, 0, 0]
    table[1] = [10, 0, 0, 10, 10, 5]  # b: m0 valid, m3 m4 train, test m5
    r = evaluate(FixedScores({"movies": table}), split, n_negatives=50, seed=0, ks=(1,),
                 metrics=("hr", "mrr"), users=[0, 1])
    assert r.per_user["hr@1"].tolist() == [1.0, 1.0]
    flat = evaluate(FixedScores({"movies": np.zeros((4, 6))}), split, n_negatives=9, ks=(10,),
                    metrics=("mrr", "hr"))
    assert flat.per_user["mrr"].tolist() == [0.1] * 4  # all tied: rank = n + 1
    assert flat.per_user["hr@10"].tolist() == [1.0] * 4


def test_sampled_needs_unseen_items(split, model) -> None:
    # d is not in the truth; c has seen m1, m4 only -> fine; a user who saw everything fails
    with pytest.raises(ValueError):
        evaluate(model, split, n_negatives=0)


def test_ratings() -> None:
    split = toy_split(ratings=True)
    table = np.zeros((4, 6), np.float32)
    table[0, 2] = 2.0  # a test m2 rated 3
    table[1, 5] = 4.0  # b test m5 rated 4
    table[2, 1], table[2, 4] = 4.0, 3.0  # c: m1 rated 5, m4 rated 1
    r = evaluate_ratings(FixedScores({"movies": table}), split)
    assert r.protocol == "ratings"
    assert r.value("mae") == pytest.approx((1 + 0 + 1 + 2) / 4)
    assert r.value("rmse") == pytest.approx(math.sqrt((1 + 0 + 1 + 4) / 4))
    assert r.value("mae", group="cold") == pytest.approx(1.5)
    with pytest.raises(DataError, match="no explicit ratings"):
        evaluate_ratings(FixedScores({"movies": table}), toy_split())


def test_nan_scores_are_an_error(split) -> None:
    table = np.zeros((4, 6), np.float32)
    table[1, 4] = np.nan  # b's training item: masked, yet still a broken model
    table[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(FixedScores({"movies": table}), split)
    table[2, [1, 4]] = np.nan  # c's positives: every sampled case sees them
    with pytest.raises(ValueError, match="NaN"):
        evaluate(FixedScores({"movies": table}), split, n_negatives=5, users=[2])


def test_to_dict_is_json(split, model) -> None:
    import json

    d = json.loads(json.dumps(evaluate(model, split, metrics=ALL).to_dict(per_user=True)))
    assert d["protocol"] == "full" and d["part"] == "test"
    auc = [r for r in d["summary"] if r["metric"] == "auc" and r["group"] == "all"]
    assert auc[0]["k"] is None and len(d["per_user"]) == 3


def test_ties_at_the_cut_off_go_to_the_lower_index() -> None:
    split = random_split(seed=5)
    n_dom = split.train.info.n_domain_items("movies")
    model = FixedScores({"movies": np.zeros((split.train.n_users, n_dom), np.float32)})
    r = evaluate(model, split, ks=(3,), metrics=("hr",))
    off = split.train.domain_items("movies").start
    seen = split.train.user_items("movies")
    valid = split.truth("valid")
    for u, got in zip(r.per_user["user"], r.per_user["hr@3"], strict=True):
        masked = set(seen[u].indices) | set(valid.loc[valid.user == u, "item"] - off)
        first3 = [i for i in range(n_dom) if i not in masked][:3]
        truth = set(split.truth("test").query("user == @u")["item"] - off)
        assert got == float(bool(truth & set(first3)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    split = random_split()
    n_dom = split.train.info.n_domain_items("movies")
    scores = np.random.default_rng(1).random((split.train.n_users, n_dom)).astype(np.float32)
    model = FixedScores({"movies": scores})
    cpu = evaluate(model, split, metrics=ALL, ks=(5,))
    gpu = evaluate(model, split, metrics=ALL, ks=(5,), device="cuda")
    pd.testing.assert_frame_equal(cpu.per_user, gpu.per_user, rtol=1e-6)
    s_cpu = evaluate(model, split, n_negatives=10, device="cpu").per_user
    s_gpu = evaluate(model, split, n_negatives=10, device="cuda").per_user
    pd.testing.assert_frame_equal(s_cpu, s_gpu)


def test_cold_start_split_groups() -> None:
    from crossrec.data import cold_start_users

    dataset = random_split().train.with_interactions(pd.concat(
        [random_split().train.interactions, random_split().valid, random_split().test]))
    split = cold_start_users(dataset, "books", "movies", ratio=0.3, seed=0)
    n_dom = split.train.info.n_domain_items("movies")
    scores = np.random.default_rng(0).random((split.train.n_users, n_dom)).astype(np.float32)
    r = evaluate(FixedScores({"movies": scores}), split, ks=(10,))
    assert set(r.per_user["group"]) == {"cold"}
    assert set(r.summary["group"]) == {"all", "cold"}
    assert r.value("ndcg", 10, "cold") == r.value("ndcg", 10)
    assert r.per_user["n_truth"].sum() == len(split.truth("test"))


def test_truth_item_also_seen_in_training_stays_rankable() -> None:
    from eval_toy import ROWS

    from crossrec.data import DatasetBuilder, predefined

    rows = [*ROWS, ("d", "movies", "m2", "test", 1.0)]  # d has m2 in training too (a repeat)
    frame = pd.DataFrame(rows, columns=["user_id", "domain", "item_id", "part", "rating"])
    split = predefined(DatasetBuilder("rep").add_interactions(frame).build(dedupe=False), "movies")
    table = np.zeros((4, 6), np.float32)
    table[3] = [0, 0, 9, 8, 0, 0]  # d: m2 (train and test) first, m3 (train only) second
    r = evaluate(FixedScores({"movies": table}), split, ks=(1,), metrics=("hr",), users=[3])
    assert r.per_user["hr@1"].tolist() == [1.0]
