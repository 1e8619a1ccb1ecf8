"""hybrid: the contract (hashing test encoder), ID embeddings only for warm items, unseen items
scored by their text, alignment option, and beating target-only models on cold users."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_items, cold_start_users
from crossrec.eval.ranking import evaluate
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines import EASE, Pop
from crossrec.models.cross.hybrid import Hybrid
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k
from crossrec.testing.text import hashing_encoder

FAST = {"encoder": "hashing", "embedding_size": 32, "epochs": 8, "batch_size": 256,
        "n_negatives": 20, "learning_rate": 1e-2, "min_count": 3}


@pytest.fixture(scope="module", autouse=True)
def test_encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with hashing_encoder(cache_dir=tmp_path_factory.mktemp("cache")):
        yield


class TestHybrid(RecommenderContract):
    model_cls = Hybrid
    fast_config = FAST
    transfers = True


def _options(split, validate: bool = True) -> FitOptions:
    def ndcg(model) -> float:
        return evaluate(model, split, part="valid", ks=(10,), metrics=("ndcg",)).value("ndcg@10")
    return FitOptions(target="target", sources=("source",), progress=False,
                      validate=ndcg if validate else None)


def test_id_embeddings_only_for_warm_items_and_unseen_items_use_text() -> None:
    split = cold_start_items(make_two_domain(), "target", 0.3, seed=0)
    model = Hybrid(FAST).fit(split.train, _options(split))
    counts = np.bincount(split.train.interactions["item"], minlength=split.train.n_items)
    np.testing.assert_array_equal(model.warm.numpy(), counts >= FAST["min_count"])
    held = torch.from_numpy(np.unique(split.test["item"]).astype(np.int64))
    assert not model.warm[held].any()
    with torch.no_grad():
        vec, bias = model.item_vectors(held)
        torch.testing.assert_close(vec, model.text_proj(model.text[held].float()))
        torch.testing.assert_close(bias, model.text_bias(model.text[held].float())[:, 0])
    # the text carries the cold items: above popularity, which cannot rank them at all
    pop = Pop().fit(split.train, _options(split, validate=False))
    assert recall_at_k(model, split) > recall_at_k(pop, split) + 0.1


def test_beats_target_only_models_on_cold_users_with_noisy_text() -> None:
    split = cold_start_users(make_two_domain(text_noise=0.2, seed=2), "source", "target", 0.3,
                             seed=0)
    model = Hybrid(FAST).fit(split.train, _options(split))
    hybrid = recall_at_k(model, split)
    for target_only in (Pop(), EASE(train_on="target")):
        assert hybrid > recall_at_k(target_only.fit(split.train, _options(split)), split) + 0.08


def test_history_is_pooled_over_domains_and_positive_left_out() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    model = Hybrid(FAST, epochs=1).fit(split.train, _options(split, validate=False))
    src, tgt = split.train.domain_items("source"), split.train.domain_items("target")
    hist = torch.tensor([[src.start, tgt.start]])
    with torch.no_grad():
        vec, _ = model.item_vectors(hist)
        want = model.user_proj(vec.mean(1))
        torch.testing.assert_close(model.user_vectors(Query(torch.tensor([-1]), hist)), want)
        keep = torch.tensor([[True, False]])
        torch.testing.assert_close(model.pool(hist, vec, keep), model.user_proj(vec[:, 0]))
    stage = model.default_stages(("source",), "target")[0]
    batch = next(iter(model.batches(split.train, stage, np.random.default_rng(0))))
    dom = split.train.item_domain
    assert (dom[batch.negatives.numpy()] == np.arange(2)[:, None]).all()  # row d: domain d
    np.testing.assert_array_equal(batch.domains.numpy(), dom[batch.items.numpy()])
    assert torch.isfinite(model.loss(batch, "train"))


def test_popularity_prior_weight_chosen_on_validation_and_kept_in_the_state() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    seen: list[float] = []
    validate = _options(split).validate

    def spy(model) -> float:
        seen.append(float(model.prior_weight))
        return validate(model)

    options = FitOptions(target="target", sources=("source",), progress=False, validate=spy)
    model = Hybrid(FAST, epochs=2, popularity_grid=(0.0, 5.0)).fit(split.train, options)
    assert seen[-2:] == [0.0, 5.0]  # after the epochs' validations, the grid
    assert float(model.prior_weight) == model.validation["popularity_weight"]
    restored = Hybrid(FAST, popularity_grid=(0.0, 5.0)).restore(split.train, options,
                                                                 model.state())
    users = Query(torch.arange(5))
    torch.testing.assert_close(restored.score(users, "target"), model.score(users, "target"))
    with torch.no_grad():
        model.prior_weight.fill_(5.0)
        base = restored.score(users, "target") - float(restored.prior_weight) * \
            restored.popularity[split.train.domain_items("target")]
        torch.testing.assert_close(model.score(users, "target"),
                                   base + 5.0 * model.popularity[split.train.domain_items(
                                       "target")])


@pytest.mark.parametrize("kind", ["adversarial", "mmd"])
def test_alignment_option_adds_its_loss_and_still_transfers(kind: str) -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    model = Hybrid(FAST, alignment=kind, alignment_weight=0.5).fit(split.train,
                                                                  _options(split))
    stage = model.default_stages(("source",), "target")[0]
    batch = next(iter(model.batches(split.train, stage, np.random.default_rng(1))))
    model.train()
    torch.manual_seed(0)
    with_alignment = model.loss(batch, "train")
    hist = batch.history
    vec, _ = model.item_vectors(hist.clamp(min=0))
    extra = model._alignment(hist, vec)
    assert float(extra.detach()) != 0.0
    if kind == "adversarial":
        extra.backward()
        assert any(q.grad is not None and q.grad.abs().sum() > 0
                   for q in model.aligner.parameters())  # the domain classifier learns
    assert torch.isfinite(with_alignment)
    model.eval()
    pop = Pop().fit(split.train, _options(split, validate=False))
    assert recall_at_k(model, split) > recall_at_k(pop, split) + 0.1
