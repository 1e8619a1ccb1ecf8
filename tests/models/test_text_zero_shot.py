"""text_zero_shot: the contract (hashing test encoder), recency, the prior chosen on validation,
free-text queries, and beating target-only models on cold users without any target training."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users, new_domain
from crossrec.eval.ranking import evaluate
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines import EASE, Pop
from crossrec.models.baselines.text_zero_shot import TextZeroShot, log_popularity
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k
from crossrec.testing.text import hashing_encoder

FAST = {"encoder": "hashing"}


@pytest.fixture(scope="module", autouse=True)
def test_encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with hashing_encoder(cache_dir=tmp_path_factory.mktemp("cache")):
        yield


class TestTextZeroShot(RecommenderContract):
    model_cls = TextZeroShot
    fast_config = FAST
    transfers = True


class TestTextZeroShotMax(RecommenderContract):
    model_cls = TextZeroShot
    fast_config = {**FAST, "pooling": "max", "popularity_from_text": True}
    transfers = True


def _options(split, **kw) -> FitOptions:
    return FitOptions(target="target", sources=("source",), progress=False, **kw)


def _validate(split):
    def validate(model) -> float:
        return evaluate(model, split, part="valid", ks=(10,), metrics=("ndcg",)).value("ndcg@10")
    return validate


def test_recency_decay_weights_the_newest_item() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    model = TextZeroShot(FAST, decay=0.01).fit(split.train, _options(split))
    a, b = 0, split.train.domain_items("target").start
    got = model.user_vectors(Query(torch.tensor([-1]), torch.tensor([[a, b, -1]])))[0]
    expected = (0.01 * model.vectors[a] + model.vectors[b]) / 1.01
    torch.testing.assert_close(got, expected)
    flat = TextZeroShot(FAST, decay=1.0).fit(split.train, _options(split))
    got = flat.user_vectors(Query(torch.tensor([-1]), torch.tensor([[-1, a, b]])))[0]
    torch.testing.assert_close(got, (flat.vectors[a] + flat.vectors[b]) / 2)


def test_popularity_prior_is_standardised_per_domain() -> None:
    train = make_two_domain().with_interactions(make_two_domain().interactions)
    pop = log_popularity(train)
    for d in train.domains:
        block = pop[train.domain_items(d)]
        assert abs(block.mean()) < 1e-5 and abs(block.std() - 1) < 1e-4
    split = new_domain(make_two_domain(), "target")
    assert not log_popularity(split.train)[split.train.domain_items("target")].any()


def test_max_pooling_is_the_largest_cosine_to_one_history_item() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    model = TextZeroShot(FAST, pooling="max", max_history=2, popularity_weight=0.0).fit(
        split.train, _options(split))
    t = split.train.domain_items("target")
    a, b, c = 0, 1, t.start  # c is the oldest: beyond max_history = 2
    got = model.score(Query(torch.tensor([-1, -1]), torch.tensor([[c, a, b], [-1, -1, -1]])),
                      "target")
    v = model.vectors
    expected = torch.maximum(v[a] @ v[t].T, v[b] @ v[t].T)
    torch.testing.assert_close(got[0], expected)
    assert not got[1].any()  # an empty history scores 0
    assert model.retrieval_items("target") is None
    with pytest.raises(ValueError, match="pooling"):
        TextZeroShot(FAST, pooling="max", profile={})


def test_top_unseen_and_pair_scores_equal_the_full_score() -> None:
    """The ranker's cheap path (nearest-title index, pair scores, a sample's scores) gives what
    ``score`` gives; mean pooling or a popularity weight has no index (None)."""
    from crossrec.eval.topk import top_n

    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    model = TextZeroShot(FAST, pooling="max", popularity_weight=0.0).fit(
        split.train, _options(split))
    users = torch.arange(min(40, split.train.n_users))
    query = Query(users)
    full = model.score(query, "target")
    t = split.train.domain_items("target")
    seen = torch.from_numpy(model.history_matrix(query)[:, t].toarray() > 0)
    want = top_n(full.masked_fill(seen, float("-inf")).nan_to_num(neginf=-1e9).numpy(), 5)
    np.testing.assert_array_equal(model.top_unseen(query, "target", seen, 5), want)
    rows = np.repeat(np.arange(len(users)), 5)
    items = want.ravel()
    np.testing.assert_allclose(model.score_pairs(query, "target", rows, items),
                               full[rows, items].numpy(), atol=1e-6)
    at = torch.tensor([0, 3, 4])
    torch.testing.assert_close(model.score_items(query, "target", at), full[:, at])
    assert TextZeroShot(FAST, popularity_weight=0.0).fit(
        split.train, _options(split)).top_unseen(query, "target", seen, 5) is None


def test_popularity_from_text_ranks_a_new_domain_by_items_like_the_popular_ones() -> None:
    """Two words mark the items of both domains; source items with word "hit" sell, with
    "miss" do not: a new target domain's "hit" items get the higher predicted popularity."""
    import pandas as pd

    from crossrec.data import DatasetBuilder

    rows = [(f"u{u}", f"s{j}") for u in range(40) for j in range(10) if j < 5 or u % 10 == 0]
    items = pd.DataFrame({"item_id": [f"s{j}" for j in range(10)],
                          "title": [("hit " if j < 5 else "miss ") + f"thing {j}"
                                    for j in range(10)]})
    targets = pd.DataFrame({"item_id": [f"t{j}" for j in range(6)],
                            "title": [("hit " if j % 2 else "miss ") + f"gadget {j}"
                                      for j in range(6)]})
    full = (DatasetBuilder("hits").add_interactions(
        pd.DataFrame(rows, columns=["user_id", "item_id"]), domain="source")
        .add_interactions(pd.DataFrame({"user_id": ["u0"], "item_id": ["t0"]}), domain="target")
        .add_items(items, domain="source").add_items(targets, domain="target").build())
    inter = full.interactions
    data = full.with_interactions(inter[inter["domain"] == full.info.domain_index("source")])
    model = TextZeroShot(FAST, popularity_from_text=True, popularity_l2=0.1,
                         popularity_weight=1.0).fit(data, FitOptions(target="target",
                                                                     progress=False))
    pop = model.popularity[data.domain_items("target")].numpy()
    hit = np.array([j % 2 == 1 for j in range(6)])
    assert pop[hit].min() > pop[~hit].max()
    assert not log_popularity(data)[data.domain_items("target")].any()  # without: all 0


def test_prior_weight_is_chosen_on_validation() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    calls: list[float] = []
    validate = _validate(split)

    def spy(model) -> float:
        calls.append(model.weight)
        return validate(model)

    model = TextZeroShot(FAST).fit(split.train, _options(split, validate=spy))
    assert calls == list(TextZeroShot.Config().popularity_grid)
    assert model.weight == model.validation["popularity_weight"] in calls
    assert model.validation["valid"] == max(validate(TextZeroShot(FAST, popularity_weight=w)
                                                     .fit(split.train, _options(split)))
                                            for w in calls)
    fixed = TextZeroShot(FAST, popularity_weight=0.3).fit(split.train,
                                                          _options(split, validate=spy))
    assert fixed.weight == 0.3 and len(calls) == len(model.config.popularity_grid)


def test_beats_target_only_models_on_cold_users_with_noisy_text() -> None:
    # a fifth of the titles name another cluster's theme: text is imperfect, still transfers
    split = cold_start_users(make_two_domain(text_noise=0.2, seed=2), "source", "target", 0.3,
                             seed=0)
    opts = _options(split, validate=_validate(split))
    text = recall_at_k(TextZeroShot(FAST).fit(split.train, opts), split)
    for target_only in (Pop(), EASE(train_on="target")):
        assert text > recall_at_k(target_only.fit(split.train, opts), split) + 0.08


def test_new_domain_needs_no_target_interaction() -> None:
    split = new_domain(make_two_domain(), "target", seed=0)
    model = TextZeroShot(FAST).fit(split.train, _options(split, validate=_validate(split)))
    pop = Pop().fit(split.train, _options(split))
    assert recall_at_k(model, split) > recall_at_k(pop, split) + 0.2


def test_score_text_ranks_the_theme_first() -> None:
    data = make_two_domain()
    split = cold_start_users(data, "source", "target", 0.3, seed=0)
    model = TextZeroShot(FAST).fit(split.train, _options(split))
    scores = model.score_text(["a dragon and a wizard", "murder mystery"], "target")
    assert scores.shape == (2, data.info.n_domain_items("target"))
    cluster = np.asarray(data.report["synthetic"]["item_cluster"])[data.domain_items("target")]
    top = torch.topk(scores, 5).indices.numpy()
    assert (cluster[top[0]] == 3).all() and (cluster[top[1]] == 2).all()  # THEMES order
    assert model.score_text([], "target").shape == (0, scores.shape[1])


@pytest.mark.slow
@pytest.mark.realdata
def test_minilm_on_a_new_office_domain(data_dir) -> None:  # noqa: ANN001
    from crossrec.data.sources import read

    path = data_dir / "amazon-arts-office"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    # 10 % of the users as test users (~960) keep the check to a few minutes
    split = new_domain(read("arts_office", path).build(), "office", "arts", valid_share=0.9,
                       seed=0)
    options = FitOptions(target="office", sources=("arts",), progress=False)
    model = TextZeroShot(popularity_weight=0.0).fit(split.train, options)  # real MiniLM
    pop = Pop().fit(split.train, options)  # no Office interaction: all-equal scores
    # the item-index fallback order is not random (a few popular items come early), so the
    # margin is checked at the top of the list, where text similarity is clearly better
    assert recall_at_k(model, split, k=10) > 1.2 * recall_at_k(pop, split, k=10)
    scores = model.score_text(["black toner cartridge for laser printer"], "office")
    top = torch.topk(scores[0], 10).indices.numpy() + split.train.domain_items("office").start
    texts = [split.train.item_text[i] for i in top]
    assert sum(("toner" in t or "cartridge" in t) for t in texts) >= 5, texts


class _FakeProfiler:
    """Stands in for the language model: a user's "profile" is their newest title, except
    the last user of each call, whose profile is left out (as a time bound would)."""

    calls: list[int] = []

    def __init__(self, config, *, device: str = "cpu") -> None:  # noqa: ANN001
        self.config = config

    def profile(self, titles, *, progress: bool = False):  # noqa: ANN001, ANN201
        from crossrec.encoders.profile import ProfileResult

        _FakeProfiler.calls.append(len(titles))
        profiles = [t[-1] if t else None for t in titles]
        profiles[-1] = None
        return ProfileResult(profiles=profiles, generated=len(titles) - 1, from_cache=0,
                             no_titles=0, skipped=1, seconds=0.1, generation_seconds=0.1)


@pytest.fixture
def fake_profiler(monkeypatch: pytest.MonkeyPatch) -> type[_FakeProfiler]:
    import crossrec.encoders.profile as profile_mod

    monkeypatch.setattr(profile_mod, "UserProfiler", _FakeProfiler)
    _FakeProfiler.calls = []
    return _FakeProfiler


def test_profiles_fuse_into_cold_users_and_restore(fake_profiler, tmp_path) -> None:  # noqa: ANN001
    from crossrec.bundle import Bundle

    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    plain = TextZeroShot(FAST, popularity_weight=0.0).fit(split.train, _options(split))
    model = TextZeroShot(FAST, popularity_weight=0.0, profile={}, profile_weight=0.4).fit(
        split.train, _options(split))
    cold = model.profiled_users(split.train, _options(split))
    assert fake_profiler.calls == [len(cold)]
    truth = np.unique(np.concatenate([split.truth(p)["user"].to_numpy() for p in
                                      ("valid", "test")]))
    assert set(truth) <= set(cold.tolist())  # the cold-start users are profiled
    assert list(model.profile_users) == list(cold[:-1])  # the last one got no profile
    users = torch.tensor([cold[0], cold[-1]])
    got = model.score(Query(users), "target")
    ref = plain.score(Query(users), "target")
    torch.testing.assert_close(got[1], ref[1])  # no profile: the history vector alone
    u = torch.nn.functional.normalize(plain.user_vectors(Query(users[:1])), dim=1)[0]
    fused = torch.nn.functional.normalize(0.6 * u + 0.4 * model.profile_vectors[0], dim=0)
    items = split.train.domain_items("target")
    torch.testing.assert_close(got[0], fused @ model.vectors[items].T)
    assert not torch.allclose(got[0], ref[0])
    users_v, items_v = model.retrieval_vectors(Query(users), "target")
    torch.testing.assert_close(users_v @ items_v.T, got, atol=1e-5, rtol=1e-5)
    # a given history replaces the training history the profile came from
    hist = Query(torch.tensor([cold[0]]), torch.tensor([[items.start]]))
    torch.testing.assert_close(model.score(hist, "target"), plain.score(hist, "target"))
    # the bundle keeps the profile vectors and weight (safetensors, rebuilt through MODELS)
    spec = {"name": TextZeroShot.name, **model.config.model_dump()}
    config = {"model": spec, "target": "target", "sources": ["source"], "seed": 0}
    loaded = Bundle.load(Bundle(model, split.train, config).save(tmp_path / "bundle"))
    assert loaded.model.profile_weight == 0.4
    torch.testing.assert_close(loaded.model.score(Query(users), "target"), got)
    assert set(plain.state()) == {"item_vectors", "popularity", "popularity_weight"}


def test_profile_weight_is_chosen_on_validation_after_the_prior(fake_profiler) -> None:  # noqa: ANN001
    split = cold_start_users(make_two_domain(text_noise=0.2, seed=2), "source", "target", 0.3,
                             seed=0)
    validate = _validate(split)
    calls: list[tuple[float, float]] = []

    def spy(model) -> float:
        calls.append((model.weight, model.profile_weight))
        return validate(model)

    config = TextZeroShot.Config()
    model = TextZeroShot(FAST, profile={}).fit(split.train, _options(split, validate=spy))
    n_pop = len(config.popularity_grid)
    assert [c[1] for c in calls[:n_pop]] == [0.0] * n_pop  # the prior first, without profiles
    assert calls[n_pop:] == [(model.weight, v) for v in config.profile_grid]
    assert model.profile_weight == model.validation["profile_weight"] in config.profile_grid
    values = {v: validate(TextZeroShot(FAST, popularity_weight=model.weight, profile={},
                                       profile_weight=v).fit(split.train, _options(split)))
              for v in config.profile_grid}
    assert model.validation["valid"] == max(values.values())
    assert values[model.profile_weight] == max(values.values())
    assert model.validation["profiles"]["profiled"] == len(model.profile_users)
    # no validation and no fixed weight: no profile is written
    fake_profiler.calls = []
    TextZeroShot(FAST, profile={}).fit(split.train, _options(split))
    assert fake_profiler.calls == []
