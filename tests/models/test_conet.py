"""CoNet: the contract (it must transfer), the cross-connection equations, H = 0 independence,
cold users carried by their source side, chunked scoring, config checks."""

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F

from crossrec.data.split import cold_start_users
from crossrec.errors import DataError
from crossrec.models.base import FitOptions, Query
from crossrec.models.cross.conet import CoNet
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k

FAST = {"epochs": 10, "batch_size": 256, "learning_rate": 0.01, "embedding_size": 16,
        "hidden": [32, 16], "objective": "softmax"}
OPTIONS = FitOptions(target="target", sources=("source",), progress=False)


class TestCoNet(RecommenderContract):
    model_cls = CoNet
    fast_config = FAST
    transfers = True  # scores the source domain too (scores_every_domain)


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    return CoNet(FAST).fit(split.train, OPTIONS)


def _copy(model: CoNet, split, **overrides) -> CoNet:
    return CoNet({**FAST, **overrides}).restore(split.train, OPTIONS, model.state())


def _cold(split) -> torch.Tensor:
    return torch.from_numpy(np.unique(split.truth("test")["user"].to_numpy()))


@pytest.mark.parametrize("cross", ["shared", "transpose", "separate", "none"])
def test_score_follows_the_cross_equations(split, cross) -> None:
    """One (user, target item) logit recomputed by hand from the paper's equations:
    a_t' = ReLU(W_t a_t + b_t + H a_s), a_s' = ReLU(W_s a_s + b_s + H' a_t), H' = H / H^T /
    a second matrix / no cross, the source side fed the user's mean source item embedding."""
    model = CoNet({**FAST, "hidden": [4, 4, 4], "epochs": 1, "cross": cross})
    model.train_data, model.options = split.train, OPTIONS
    torch.manual_seed(1)
    model.build(split.train, OPTIONS)
    for p in model.parameters():  # untrained biases are 0 and H starts random: make all count
        torch.nn.init.normal_(p, std=0.5)
    user, item = int(_cold(split)[0]), split.train.domain_items("target").start + 3
    t, s = model.target_tower, model.source_tower
    with torch.no_grad():
        e_u, e_i = model.user_embedding.weight[user], model.item_embedding.weight[item]
        src = model.source_history[user]
        ctx = model.item_embedding.weight[src[src >= 0]].mean(0)
        a_t = F.relu(t.user_in.weight @ e_u + t.user_in.bias + t.item_in.weight @ e_i)
        a_s = F.relu(s.user_in.weight @ e_u + s.user_in.bias + s.item_in.weight @ ctx)
        for layer in range(2):
            z_t = t.layers[layer].weight @ a_t + t.layers[layer].bias
            z_s = s.layers[layer].weight @ a_s + s.layers[layer].bias
            if cross != "none":
                h = model.transfer[layer].weight
                back = (model.transfer_back[layer].weight if cross == "separate"
                        else h.T if cross == "transpose" else h)
                z_t, z_s = z_t + h @ a_s, z_s + back @ a_t
            a_t, a_s = F.relu(z_t), F.relu(z_s)
        expected = t.out.weight[0] @ a_t + t.out.bias[0]
    got = model.score(Query(torch.tensor([user])), "target")[0, 3]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (model.transfer is None) == (cross == "none")
    assert (model.transfer_back is not None) == (cross == "separate")


def test_zero_transfer_makes_the_target_tower_independent(fitted, split) -> None:
    """With H = 0 the source tower's weights cannot change target scores; with the learned H
    they do (the cross connection carries information)."""
    users = torch.cat([_cold(split)[:5], torch.arange(5)])

    def target_scores_after_changing_source_tower(model: CoNet) -> tuple[torch.Tensor, ...]:
        before = model.score(Query(users), "target")
        with torch.no_grad():
            for p in model.source_tower.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        return before, model.score(Query(users), "target")

    before, after = target_scores_after_changing_source_tower(_copy(fitted, split))
    assert not torch.allclose(before, after)
    zero = _copy(fitted, split)
    with torch.no_grad():
        for h in zero.transfer:
            h.weight.zero_()
    before, after = target_scores_after_changing_source_tower(zero)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_cold_users_are_carried_by_their_source_side(fitted, split) -> None:
    """Cold users have no target rows: swapping their (source-learned) user embeddings and
    source histories among them must break the transfer; their source history alone (through
    the cross connections) changes their target scores."""
    before = recall_at_k(fitted, split)
    cold = _cold(split)
    perm = cold[torch.randperm(len(cold), generator=torch.Generator().manual_seed(0))]
    shuffled = _copy(fitted, split)
    with torch.no_grad():
        shuffled.user_embedding.weight[cold] = fitted.user_embedding.weight[perm]
    shuffled.source_history[cold] = fitted.source_history[perm]
    after = recall_at_k(shuffled, split)
    assert after < before - 0.15, (before, after)
    user = cold[:1]
    own, other = fitted.source_history[cold[0]], fitted.source_history[perm[0]]
    assert set(own.tolist()) != set(other.tolist())
    torch.testing.assert_close(fitted.score(Query(user, own[None]), "target"),
                               fitted.score(Query(user), "target"))
    assert not torch.allclose(fitted.score(Query(user, other[None]), "target"),
                              fitted.score(Query(user), "target"))


def test_single_validated_stage_on_target_and_sources(fitted) -> None:
    (stage,) = fitted.default_stages(("source",), "target")
    assert stage.domains == ("target", "source") and stage.validate and stage.trainable == ()
    assert fitted.retrieval_vectors(Query(torch.tensor([0])), "target") is None  # an MLP scorer


def test_chunked_scoring_equals_one_chunk(fitted, split) -> None:
    users = torch.arange(7)
    tiny = _copy(fitted, split, score_pairs=5)  # 1 item per chunk for 7 users
    for domain in ("target", "source"):
        torch.testing.assert_close(tiny.score(Query(users), domain),
                                   fitted.score(Query(users), domain))


def test_l1_on_the_transfer_matrices_shrinks_them(split) -> None:
    norms = {}
    for l1 in (0.0, 1e-2):
        model = CoNet({**FAST, "epochs": 3, "cross_l1": l1}).fit(split.train, OPTIONS)
        norms[l1] = sum(float(h.weight.detach().abs().sum()) for h in model.transfer)
    assert norms[1e-2] < 0.5 * norms[0.0], norms


def test_config_and_fit_errors(split) -> None:
    with pytest.raises(pydantic.ValidationError, match="equal hidden widths"):
        CoNet(cross="transpose", hidden=[8, 4])
    with pytest.raises(pydantic.ValidationError):
        CoNet(hidden=[8])  # no cross without two hidden layers
    only_target = FitOptions(target="target", sources=("target",), progress=False)
    with pytest.raises(DataError, match="source domains other than the target"):
        CoNet(FAST).fit(split.train, only_target)
