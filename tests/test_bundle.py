"""Bundle: atomic save, load through MODELS, clear errors, the popularity fallback."""

import json

import numpy as np
import pytest

from crossrec.bundle import Bundle, BundleError
from crossrec.data.split import cold_start_users
from crossrec.models import MODELS, FitOptions
from crossrec.testing import make_two_domain


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    ds = make_two_domain(seed=1)
    split = cold_start_users(ds, "source", "target", 0.3, seed=0)
    model = MODELS["itemknn"](train_on="all").fit(split.train, FitOptions(target="target"))
    config = {"model": {"name": "itemknn", "train_on": "all"}, "target": "target",
              "sources": ["source"], "seed": 0}
    path = tmp_path_factory.mktemp("b") / "bundle"
    Bundle(model, split.train, config).save(path)
    return path, split


def test_recommend_known_and_unknown(bundle_dir):
    path, split = bundle_dir
    b = Bundle.load(path)
    cold_user = b.train.users.raw(split.test["user"].to_numpy()[:1])[0]
    known, unknown = b.recommend([cold_user, "never-seen"], k=5)
    assert known.strategy == "model" and len(known.item_ids) == 5
    assert unknown.strategy == "popular_fallback" and len(unknown.item_ids) == 5
    assert known.scores == sorted(known.scores, reverse=True)
    # exclude_seen: a warm user never gets back an item they have in training
    warm = split.train.domain_interactions("target")["user"].to_numpy()[0]
    warm_id = b.train.users.raw([warm])[0]
    seen = set(b.train.item_ids(split.train.domain_interactions("target")
                                .query("user == @warm")["item"].to_numpy()))
    rec = b.recommend([warm_id], k=20)[0]
    assert not seen & set(rec.item_ids)


def test_missing_file_named(bundle_dir, tmp_path):
    path, _ = bundle_dir
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="missing file model.safetensors"):
        Bundle.load(copy)


def test_tampered_file_detected(bundle_dir, tmp_path):
    path, _ = bundle_dir
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="checksum mismatch for model.safetensors"):
        Bundle.load(copy)


def test_other_format_version(bundle_dir, tmp_path):
    path, _ = bundle_dir
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["format_version"] = 99
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="format 99"):
        Bundle.load(copy)
    with pytest.raises(BundleError, match="not a crossrec bundle"):
        Bundle.load(tmp_path)


def test_failed_save_keeps_previous_bundle(bundle_dir, tmp_path, monkeypatch):
    path, split = bundle_dir
    b = Bundle.load(path)
    target = tmp_path / "bundle"
    b.save(target)
    before = (target / "meta.json").read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("crossrec.data.dataset.MultiDomainDataset.save", boom)
    with pytest.raises(OSError, match="disk full"):
        b.save(target)
    assert (target / "meta.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]
    np.testing.assert_array_equal(Bundle.load(target).model.state()["target.data"],
                                  b.model.state()["target.data"])


def test_bundle_keeps_the_trained_config_when_a_default_changes(tmp_path, monkeypatch):
    """The bundle stores every resolved field: a later default does not change what loads."""
    from typing import Literal

    from crossrec.models.baselines.itemknn import ItemKNN

    ds = make_two_domain(seed=1)
    split = cold_start_users(ds, "source", "target", 0.3, seed=0)
    model = MODELS["itemknn"](neighbors=20).fit(split.train, FitOptions(target="target"))
    config = {"model": {"name": "itemknn", "label": "knn", "neighbors": 20}, "target": "target",
              "sources": ["source"], "seed": 0}
    saved = Bundle(model, split.train, config).save(tmp_path / "bundle")
    stored = json.loads((saved / "config.json").read_text())["model"]
    assert stored == {"name": "itemknn", "label": "knn",
                      **model.config.model_dump(mode="json")}
    assert stored["train_on"] == "target" and stored["shrink"] == 10.0

    class Changed(ItemKNN.Config):  # today's defaults differ from those it was trained with
        train_on: Literal["target", "all"] = "all"
        shrink: float = 0.0

    monkeypatch.setattr(ItemKNN, "Config", Changed)
    assert ItemKNN().config.train_on == "all"
    loaded = Bundle.load(saved)
    assert loaded.model.config.train_on == "target" and loaded.model.config.shrink == 10.0
    users = split.test["user"].unique()[:5]
    ids = loaded.train.users.raw(users)
    before = Bundle(model, split.train, config).recommend(list(ids), k=10)
    after = loaded.recommend(list(ids), k=10)
    assert [r.item_ids for r in after] == [r.item_ids for r in before]
    assert [r.scores for r in after] == [r.scores for r in before]
