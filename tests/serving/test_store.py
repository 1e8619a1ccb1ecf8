"""The versioned bundle store: add, activate, roll back; damaged versions never go live."""

from __future__ import annotations

import json

import pytest
from update_toy import fit_bundle

from crossrec.bundle import Bundle
from crossrec.serving.store import BundleSource, BundleStore, StoreError, is_store


@pytest.fixture()
def two(bundle_path, bundle, tmp_path):
    """A store with v1 (the session bundle, live) and a different v2 (not live)."""
    store = BundleStore.create(tmp_path / "store")
    v1 = store.add_directory(bundle_path)
    store.activate(v1)
    inter = bundle.train.interactions
    v2 = store.add(fit_bundle(bundle.train.with_interactions(inter.iloc[: len(inter) - 50])),
                   origin="test")
    return store, v1, v2


def test_add_activate_rollback(two, bundle):
    store, v1, v2 = two
    assert v1 == bundle.version and v2 != v1 and store.live == v1
    assert store.activate(v2) == (v1, v2) and store.live == v2
    assert store.load().version == v2
    assert store.state()["history"] == [v1, v2]
    assert store.rollback() == (v2, v1) and store.live == v1
    with pytest.raises(StoreError, match="nothing to roll back to"):
        store.rollback()
    assert store.activate(v2[:6]) == (v1, v2)  # a unique prefix names a version
    assert [e["action"] for e in store.state()["log"]] == ["activate", "activate", "rollback",
                                                          "activate"]
    # the same content twice: one version, one directory, no staging left behind
    assert store.add(Bundle.load(store.path_of(v1))) == v1
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == sorted([v1, v2])


def test_damaged_version_never_becomes_live(two):
    store, v1, v2 = two
    model = store.path_of(v2) / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])  # truncated after it was written
    with pytest.raises(StoreError, match=f"version {v2} is damaged.*checksum mismatch"):
        store.activate(v2)
    assert store.live == v1 and store.load().version == v1


def test_failed_write_leaves_no_version(two, bundle, monkeypatch):
    store, v1, v2 = two
    before = json.loads((store.root / "store.json").read_text())

    def crash(self, path):  # noqa: ANN001 - dies half way through writing the dataset
        path.mkdir()
        (path / "interactions.parquet").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(type(bundle.train), "save", crash)
    with pytest.raises(OSError, match="disk full"):
        store.add(fit_bundle(bundle.train.with_interactions(bundle.train.interactions[:-9])))
    assert json.loads((store.root / "store.json").read_text()) == before
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == sorted([v1, v2])


def test_malformed_store_file_is_named(two):
    store, v1, _ = two
    (store.root / "store.json").write_text(json.dumps({"format_version": 1, "live": "nope",
                                                       "history": [], "versions": {},
                                                       "log": []}))
    with pytest.raises(StoreError, match="store.json: field 'live' names 'nope'"):
        store.live  # noqa: B018
    (store.root / "store.json").write_text("{")
    with pytest.raises(StoreError, match="store.json: cannot read"):
        BundleSource(store.root).load()


def test_source_is_a_store_or_a_plain_bundle(two, bundle_path, tmp_path):
    store, v1, _ = two
    assert is_store(store.root) and not is_store(bundle_path)
    assert BundleSource(store.root).load().version == v1
    assert BundleSource(bundle_path).describe() == f"bundle {bundle_path}"
    with pytest.raises(StoreError, match="is a bundle directory, not a store"):
        BundleStore.create(bundle_path)
    with pytest.raises(StoreError, match="not a bundle store"):
        BundleStore(tmp_path)
