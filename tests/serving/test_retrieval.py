"""Retrieval for serving: ANN index recall, compressed vectors, seen items, fallbacks, HTTP."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from serving_toy import ADMIN, AUTH

from crossrec.bundle import Bundle
from crossrec.data.split import cold_start_users
from crossrec.errors import ConfigError
from crossrec.models import MODELS, FitOptions, Recommender
from crossrec.serving.retrieval import RetrievalConfig, VectorIndex, quantize_linear
from crossrec.testing import make_two_domain
from crossrec.testing.vectors import make_vectors

FACTORISED = {"bpr", "als", "cmf", "emcdr", "ptupcdr", "dann", "shared_bottom", "sasrec",
              "text_zero_shot", "text_transfer", "hybrid", "distill", "text2cf"}


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row of ``b`` (the reference top-k) found in the row of ``a``."""
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, np.ndarray]:
    return make_vectors(5000, n_users=300, dim=32, seed=0)


@pytest.fixture(scope="module")
def exact(catalogue) -> VectorIndex:
    return VectorIndex(catalogue[0], RetrievalConfig())


def test_two_tower_view_is_declared_by_the_dot_product_models() -> None:
    has = {name for name, cls in MODELS.items()
           if cls.retrieval_items is not Recommender.retrieval_items}
    assert has == FACTORISED


def test_hnsw_recall_against_exact(catalogue, exact) -> None:
    items, users = catalogue
    _, truth = exact.search(users, 10)
    hnsw = VectorIndex(items, RetrievalConfig(kind="hnsw", hnsw_m=16))
    scores, ids = hnsw.search(users, 10)
    assert overlap(ids, truth) >= 0.95
    # the scores are the inner products of the items found, best first
    expected = np.take_along_axis(users @ items.T, ids, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_fp16_top10_matches_exact(catalogue, exact) -> None:
    items, users = catalogue
    _, truth = exact.search(users, 10)
    _, ids = VectorIndex(items, RetrievalConfig(kind="exact", vectors="fp16")).search(users, 10)
    assert overlap(ids, truth) >= 0.99
    _, ids = VectorIndex(items, RetrievalConfig(kind="flat")).search(users, 10)
    assert overlap(ids, truth) == 1.0


def test_int8_index_is_a_quarter_of_fp32(catalogue, exact) -> None:
    items, users = catalogue
    int8 = VectorIndex(items, RetrievalConfig(kind="exact", vectors="int8"))
    flat = VectorIndex(items, RetrievalConfig(kind="flat"))
    assert int8.memory_bytes() < exact.memory_bytes() / 3
    assert int8.memory_bytes() < flat.memory_bytes() / 3
    assert exact.vector_bytes() == items.size * 4
    assert int8.vector_bytes() == len(items) * 40  # 33 dims padded to a multiple of 8
    _, truth = exact.search(users, 10)
    assert overlap(int8.search(users, 10)[1], truth) >= 0.9


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw", "ivf"])
def test_seen_items_are_left_out(catalogue, exact, kind) -> None:
    items, users = catalogue[0][:2000], catalogue[1][:20]
    reference = VectorIndex(items, RetrievalConfig())
    _, top = reference.search(users, 40)
    seen = [row[: 5 + 3 * r] for r, row in enumerate(top)]  # each user's best items, seen
    # max_fetch=0: the first fetch cannot make up for the seen items, a deeper one must
    index = VectorIndex(items, RetrievalConfig(kind=kind, max_fetch=0, hnsw_m=16))
    scores, ids = index.search(users, 10, seen)
    _, truth = reference.search(users, 10, seen)
    for r in range(len(users)):
        assert not set(ids[r]) & set(seen[r].tolist())
        assert (ids[r] >= 0).all() and np.isfinite(scores[r]).all()
    assert overlap(ids, truth) >= (1.0 if kind in ("exact", "flat") else 0.9)


def test_short_catalogue_pads_with_minus_one() -> None:
    items, users = make_vectors(12, n_users=2, dim=4, n_clusters=2, seed=1)
    index = VectorIndex(items, RetrievalConfig(kind="flat"))
    scores, ids = index.search(users, 10, [np.arange(5), np.zeros(0, np.int64)])
    assert (ids[0, :7] >= 0).all() and (ids[0, 7:] == -1).all()
    assert np.isinf(scores[0, 7:]).all() and (ids[1] >= 0).all()


# ------------------------------------------------------------------ bundles
@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)


def fit_bundle(split, name: str, **config) -> Bundle:
    options = FitOptions(target="target", sources=("source",), seed=0, progress=False)
    model = MODELS[name](config).fit(split.train, options)
    spec = {"name": name, **model.config.model_dump()}
    return Bundle(model, split.train, {"model": spec, "target": "target",
                                       "sources": ["source"], "seed": 0})


def requests(split) -> tuple[list[str | None], list]:
    """Known users of both kinds, an unknown one, and anonymous users with histories."""
    train = split.train
    users = [str(u) for u in train.users.raw(np.arange(0, train.n_users, 7))]
    src = train.item_ids(np.arange(3) + train.domain_items("source").start).tolist()
    tgt = train.item_ids(np.arange(2) + train.domain_items("target").start).tolist()
    ids = [*users, "nobody", None, None]
    histories = [None] * (len(users) + 1) + [[("source", i) for i in src],
                                             [("target", i) for i in tgt]]
    return ids, histories


@pytest.fixture(scope="module")
def bpr(split) -> Bundle:
    return fit_bundle(split, "bpr", train_on="all", epochs=5)


@pytest.mark.parametrize("config", [RetrievalConfig(kind="hnsw"),
                                    RetrievalConfig(kind="ivf", vectors="fp16"),
                                    RetrievalConfig(kind="flat", vectors="int8")],
                         ids=lambda c: c.describe())
def test_bundle_through_an_index_answers_like_exact(split, bpr, config) -> None:
    ids, histories = requests(split)
    exact = bpr.recommend(ids, "target", 10, histories=histories)
    served = Bundle(bpr.model, bpr.train, bpr.config).use_retrieval(config)
    got = served.recommend(ids, "target", 10, histories=histories)
    assert [(r.strategy, r.basis, r.user_known) for r in got] == \
        [(r.strategy, r.basis, r.user_known) for r in exact]
    assert overlap([r.item_ids for r in got], [r.item_ids for r in exact]) >= 0.95
    full = split.train.user_items(None)
    for rec, uid in zip(got, ids, strict=True):
        if rec.strategy == "model" and uid not in (None, "nobody"):  # training items left out
            u = int(split.train.users.index([uid])[0])
            assert not set(rec.items) & set(full.indices[full.indptr[u]:full.indptr[u + 1]])
    # the other domain gets its own index on first use
    other = served.recommend(ids[:10], "source", 5)
    want = bpr.recommend(ids[:10], "source", 5)
    assert overlap([r.item_ids for r in other], [r.item_ids for r in want]) >= 0.9
    assert set(served.retrieval._indexes) == {"target", "source"}


def test_default_config_keeps_exact_scoring(bpr) -> None:
    assert Bundle(bpr.model, bpr.train, bpr.config).use_retrieval(RetrievalConfig()) \
        .retrieval is None


def test_model_without_vectors_falls_back_to_exact(split, caplog) -> None:
    knn = fit_bundle(split, "itemknn", train_on="all")
    ids, histories = requests(split)
    exact = knn.recommend(ids, "target", 10, histories=histories)
    with caplog.at_level(logging.INFO, logger="crossrec.serving.retrieval"):
        served = Bundle(knn.model, knn.train, knn.config).use_retrieval(
            RetrievalConfig(kind="hnsw", vectors="int8"))
        got = served.recommend(ids, "target", 10, histories=histories)
        served.recommend(ids, "target", 10)
    assert [r.item_ids for r in got] == [r.item_ids for r in exact]
    assert [r.scores for r in got] == [r.scores for r in exact]
    assert caplog.text.count("has no two-tower view") == 1


def test_int8_user_encoder(split) -> None:
    fast = {"embedding_size": 16, "epochs": 2, "batch_size": 64, "n_layers": 1}
    exact = fit_bundle(split, "sasrec", **fast)
    model = fit_bundle(split, "sasrec", **fast).model
    items = model.retrieval_items("target").clone()
    served = Bundle(model, split.train, exact.config).use_retrieval(
        RetrievalConfig(quantize_user_encoder=True))
    quantised = [n for n, m in model.named_modules() if "quantized" in type(m).__module__]
    assert quantised and all(".linear" in n for n in quantised)  # the Transformer's FFN
    # the index keeps the fp32 item vectors taken before quantising
    assert torch.equal(served.retrieval.index("target").items, items)
    ids, histories = requests(split)
    got = served.recommend(ids, "target", 10, histories=histories)
    want = exact.recommend(ids, "target", 10, histories=histories)
    assert [r.strategy for r in got] == [r.strategy for r in want]
    assert overlap([r.item_ids for r in got], [r.item_ids for r in want]) >= 0.8
    assert quantize_linear(fit_bundle(split, "bpr", epochs=1).model) == 0  # nothing to do


def test_serve_options_are_checked() -> None:
    from crossrec.cli_serve import _retrieval_config
    from crossrec.serving.settings import ServeSettings

    cfg = _retrieval_config("hnsw", "int8", True, 200, None)
    assert (cfg.kind, cfg.vectors, cfg.hnsw_ef_search, cfg.quantize_user_encoder) == \
        ("hnsw", "int8", 200, True)
    with pytest.raises(ConfigError, match="--retrieval"):
        _retrieval_config("annoy", "fp32", False, None, None)
    with pytest.raises(ConfigError, match="--vectors"):
        _retrieval_config("exact", "int4", False, None, None)
    settings = ServeSettings(retrieval=cfg)  # travels to --workers processes as JSON
    assert ServeSettings.model_validate_json(settings.model_dump_json()).retrieval == cfg


def test_http_request_through_an_hnsw_bundle(make_client, split, bpr) -> None:
    served = Bundle(bpr.model, bpr.train, bpr.config)
    client = make_client(served, retrieval=RetrievalConfig(kind="hnsw", vectors="int8"))
    assert served.retrieval is not None and served.retrieval.factorised
    uid = str(split.train.users.raw([int(split.train.domain_users("target")[0])])[0])
    r = client.post("/recommend", json={"user_id": uid, "domain": "target", "k": 5},
                    headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["strategy"] == "model" and out["basis"] == "target" and len(out["items"]) == 5
    want = bpr.recommend([uid], "target", 5)[0].item_ids
    assert len(set(want) & {i["item_id"] for i in out["items"]}) >= 4


def test_hot_reload_keeps_the_retrieval_settings(make_client, split, bpr, tmp_path) -> None:
    from crossrec.serving.store import BundleSource

    path = Bundle(bpr.model, bpr.train, bpr.config).save(tmp_path / "bundle")
    source = BundleSource(path)
    client = make_client(source.load(), retrieval=RetrievalConfig(kind="hnsw"))
    client.app.state.reloader.source = source
    before = client.app.state.reloader.current.bundle
    r = client.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "unchanged", r.text
    served = client.app.state.reloader.current.bundle
    assert served is not before  # loaded again, and given its index before the swap
    assert served.retrieval is not None and served.retrieval.config.kind == "hnsw"
