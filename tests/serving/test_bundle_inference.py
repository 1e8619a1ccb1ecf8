"""What serving added to Bundle: a version id, request histories, the no-signal fallback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crossrec.bundle import Bundle, bundle_version
from crossrec.errors import DataError
from crossrec.models import MODELS, FitOptions


def test_version_is_a_content_hash(bundle_path, bundle, tmp_path):
    meta = json.loads((bundle_path / "meta.json").read_text())
    assert bundle.version == meta["version"] == bundle_version(meta["sha256"])
    copy = tmp_path / "copy"
    shutil.copytree(bundle_path, copy)
    del meta["version"]  # a bundle written before versions existed still loads, same id
    (copy / "meta.json").write_text(json.dumps(meta))
    assert Bundle.load(copy).version == bundle.version
    resaved = Bundle.load(copy).save(tmp_path / "again")
    assert Bundle.load(resaved).version == bundle.version  # same content, same version


def test_history_and_unknown_items(bundle, users):
    ids, unknown = bundle.history_index([("source", "s1"), ("target", "t2"), ("source", "s1"),
                                         ("source", "zzz")])
    assert unknown == 1 and len(ids) == 2
    assert bundle.train.item_ids(ids).tolist() == ["s1", "t2"]
    with pytest.raises(DataError, match="unknown domain 'books'"):
        bundle.history_index([("books", "b1")])
    # a known user with extra history: both are the evidence, and both are excluded
    uid = users["target"]
    plain = bundle.recommend([uid], "target", 5)[0]
    extra = bundle.recommend([uid], "target", 5, histories=[[("target", plain.item_ids[0])]])[0]
    assert extra.basis == "request_history" and plain.item_ids[0] not in extra.item_ids


def test_batch_mixes_every_kind_of_user(bundle, users):
    recs = bundle.recommend([users["target"], None, "nobody", users["source_only"]], "target",
                            4, histories=[None, [("source", "s1")], None, None])
    assert [r.basis for r in recs] == ["target", "request_history", "none", "source_only"]
    assert [r.strategy for r in recs] == ["model", "model", "popular_fallback", "model"]
    assert [r.user_known for r in recs] == [True, False, False, True]
    alone = [bundle.recommend([users["target"]], "target", 4)[0].item_ids,
             bundle.recommend([None], "target", 4, histories=[[("source", "s1")]])[0].item_ids]
    assert [recs[0].item_ids, recs[1].item_ids] == alone


def test_model_without_signal_falls_back(bundle, users):
    """A target-only ItemKNN has nothing for a source-only user (all-equal scores)."""
    model = MODELS["itemknn"](train_on="target").fit(bundle.train, FitOptions(target="target"))
    b = Bundle(model, bundle.train, {"model": {"name": "itemknn"}, "target": "target"})
    rec = b.recommend([users["source_only"]], "target", 5)[0]
    assert rec.strategy == "popular_fallback" and rec.basis == "none"
    pop = bundle.train.item_popularity("target")
    assert rec.scores == sorted(pop, reverse=True)[:5]
    assert b.recommend([users["target"]], "target", 5)[0].strategy == "model"


def test_history_items_are_not_recommended_back(bundle):
    order = np.argsort(-bundle.train.item_popularity("target"), kind="stable")
    top = bundle.train.item_ids(order[:2] + bundle.train.domain_items("target").start).tolist()
    rec = bundle.recommend(["nobody"], "target", 3,
                           histories=[[("target", top[0])]])[0]
    assert rec.strategy == "model"  # a known item is evidence for the model
    pop_model = MODELS["pop"]().fit(bundle.train, FitOptions(target="target"))
    b = Bundle(pop_model, bundle.train, {"model": {"name": "pop"}, "target": "target"})
    rec = b.recommend(["nobody"], "target", 3, histories=[[("target", top[0])]])[0]
    assert top[0] not in rec.item_ids and rec.item_ids[0] == top[1]
