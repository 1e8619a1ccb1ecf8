import json
import os

import numpy as np
import pandas as pd
import pytest

import crossrec.atomic as atomic_module
from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError


def with_parts_and_attrs() -> MultiDomainDataset:
    rows = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2", "u3"],
        "item_id": ["b1", "m1", "b2", "m1", "b1"],
        "domain": ["books", "movies", "books", "movies", "books"],
        "rating": [5, 4, None, 3, 1],
        "timestamp": [1, 2, 3, 4, 5],
        "part": ["train", "train", "valid", "test", "train"],
    })
    builder = DatasetBuilder("saved").add_interactions(rows)
    builder.add_items(pd.DataFrame({"item_id": ["b1", "b3"], "title": ["Book one", "Three"],
                                    "brand": ["P", ""]}), domain="books")
    return builder.build()


def assert_same(a: MultiDomainDataset, b: MultiDomainDataset) -> None:
    assert a.name == b.name and a.domains == b.domains
    assert a.users == b.users and a.items == b.items
    np.testing.assert_array_equal(a.item_domain, b.item_domain)
    assert a.item_text == b.item_text
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.item_attrs, b.item_attrs, check_column_type=False)
    assert a.report == b.report


def test_save_load_round_trip(tmp_path):
    ds = with_parts_and_attrs()
    out = ds.save(tmp_path / "ds")
    assert sorted(p.name for p in out.iterdir()) == [
        "interactions.parquet", "items.parquet", "meta.json", "users.parquet"]
    loaded = MultiDomainDataset.load(out)
    assert_same(ds, loaded)
    assert loaded.stats() == ds.stats()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stats"]["interactions"] == 5


def test_save_overwrites(tmp_path, two_domain):
    with_parts_and_attrs().save(tmp_path / "ds")
    two_domain.save(tmp_path / "ds")
    assert_same(two_domain, MultiDomainDataset.load(tmp_path / "ds"))
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp or .old folder left


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch, two_domain):
    old = with_parts_and_attrs()
    old.save(tmp_path / "ds")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()}
    calls = {"n": 0}
    real = pd.DataFrame.to_parquet

    def failing_to_parquet(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # interactions written, then the disk "fills up"
            raise OSError("No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing_to_parquet)
    with pytest.raises(OSError, match="No space left"):
        two_domain.save(tmp_path / "ds")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    assert_same(old, MultiDomainDataset.load(tmp_path / "ds"))


def test_save_is_atomic_when_the_final_rename_fails(tmp_path, monkeypatch, two_domain):
    old = with_parts_and_attrs()
    old.save(tmp_path / "ds")
    real = os.rename

    def failing_rename(src, dst):
        if str(src).startswith(str(tmp_path / ".ds.")) and not str(src).endswith(".old"):
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(atomic_module.os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        two_domain.save(tmp_path / "ds")
    monkeypatch.undo()
    assert_same(old, MultiDomainDataset.load(tmp_path / "ds"))


def test_load_errors(tmp_path, two_domain):
    with pytest.raises(DataError, match="is not a crossrec dataset directory"):
        MultiDomainDataset.load(tmp_path)
    two_domain.save(tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "ds" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format version 99"):
        MultiDomainDataset.load(tmp_path / "ds")


def test_views(two_domain):
    ds = two_domain
    books = ds.domain_items("books")
    mat = ds.user_items("books")
    assert mat.shape == (ds.n_users, books.stop - books.start)
    assert mat.nnz == len(ds.domain_interactions("books"))
    assert ds.user_items().shape == (ds.n_users, ds.n_items)
    overlap = ds.users.raw(ds.overlap_users("books", "movies"))
    assert sorted(overlap) == sorted(f"u{i}" for i in range(40))
    assert len(ds.domain_users("books")) == 50
    assert ds.item_popularity("movies").sum() == len(ds.domain_interactions("movies"))
    info = ds.info
    assert info.n_items == ds.n_items and info.domains == ("books", "movies")
    with pytest.raises(DataError, match="unknown domain 'music'; known: books, movies"):
        ds.domain_items("music")
    stats = ds.stats()
    assert stats["overlap"] == {"books|movies": 40}
    assert stats["domains"]["books"]["users"] == 50
    sub = ds.with_interactions(ds.interactions.iloc[:10], note="head")
    assert len(sub.interactions) == 10 and sub.report["note"] == "head"
    assert sub.n_items == ds.n_items  # id spaces unchanged
