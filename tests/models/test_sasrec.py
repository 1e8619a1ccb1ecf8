"""SASRec: the model contract, and a known next-item answer on the synthetic chain."""

import numpy as np
import pytest
import torch

from crossrec.eval.next_item import evaluate_next_item
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.pop import Pop
from crossrec.models.baselines.sasrec import SASRec
from crossrec.testing.contract import RecommenderContract
from crossrec.testing.sequential import last_item_split, make_chain

FAST = {"embedding_size": 32, "max_seq_len": 16, "n_layers": 1, "epochs": 10,
        "batch_size": 32, "learning_rate": 1e-2, "dropout": 0.1}


class TestSASRec(RecommenderContract):
    model_cls = SASRec
    fast_config = {**FAST, "embedding_size": 16, "epochs": 4, "batch_size": 64}
    # an ID-only next-item model on the unordered cluster data: no transfer margin asked for;
    # its known answer is the sequential chain below
    transfers = False


@pytest.fixture(scope="module")
def chain():
    split = last_item_split(make_chain())
    options = FitOptions(target="b", seed=0, progress=False)
    return split, options


@pytest.mark.parametrize("n_negatives", [0, 10])
def test_next_item_known_answer(chain, n_negatives: int) -> None:
    split, options = chain
    model = SASRec({**FAST, "n_negatives": n_negatives}).fit(split.train, options)
    pop = Pop().fit(split.train, options)
    ours = evaluate_next_item(model, split, candidates="all", ks=(1, 10), metrics=("hr",))
    base = evaluate_next_item(pop, split, candidates="all", ks=(1, 10), metrics=("hr",))
    assert ours.value("hr@1") >= 0.8
    assert ours.value("hr@10") >= base.value("hr@10") + 0.5


def test_history_order_matters_and_replaces_training(chain) -> None:
    split, options = chain
    model = SASRec(FAST).fit(split.train, options)
    train = split.train

    def idx(name: str) -> int:
        return int(train.item_index(name[0], [name])[0])

    def best_b(history: list[int]) -> int:
        scores = model.score(Query(torch.tensor([-1]), torch.tensor([history])), "b")
        return int(scores.argmax()) + train.domain_items("b").start

    # a3 -> b3 -> a4: the next item is b4 (a right-padded anonymous history)
    assert best_b([idx("a3"), idx("b3"), idx("a4"), -1]) == idx("b4")
    assert best_b([idx("a4"), idx("b3"), idx("a3")]) == idx("b3")  # order matters
    empty = model.score(Query(torch.tensor([-1]), torch.full((1, 3), -1)), "b")
    assert torch.equal(empty, torch.zeros_like(empty))


def test_bad_config_and_domains() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SASRec(embedding_size=30, n_heads=4).fit(
            last_item_split(make_chain(n_users=10)).train, FitOptions(target="b",
                                                                       progress=False))
    from crossrec.errors import DataError

    with pytest.raises(DataError):
        SASRec(domains=["nope"]).fit(last_item_split(make_chain(n_users=10)).train,
                                      FitOptions(target="b", progress=False))


def test_sequences_of_one_domain() -> None:
    split = last_item_split(make_chain(n_users=60))
    train = split.train
    model = SASRec({**FAST, "epochs": 2, "domains": ["a"]}).fit(
        train, FitOptions(target="b", progress=False))
    a1, a2 = train.item_index("a", ["a1", "a2"])
    b1 = int(train.item_index("b", ["b1"])[0])
    anon = torch.tensor([-1])
    # b items in a given history are dropped: the same scores as the a-only history
    torch.testing.assert_close(model.score(Query(anon, torch.tensor([[a1, b1, a2]])), "b"),
                               model.score(Query(anon, torch.tensor([[a1, a2]])), "b"))
    assert np.isfinite(model.score(Query(torch.arange(4)), "a").numpy()).all()
