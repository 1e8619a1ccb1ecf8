"""Bundles and stores against tampering: every path meta.json / store.json names stays inside
the directory and is a regular file, every file the load reads is listed, and the version is
recomputed from the content and compared."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from crossrec.bundle import Bundle, BundleError, read_meta
from crossrec.serving.store import BundleStore, StoreError


@pytest.fixture()
def copy(pristine, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(pristine, dst)
    return dst


def edit_meta(path: Path, change) -> None:  # noqa: ANN001 - change(meta) edits in place
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def sha(f: Path) -> str:
    return hashlib.sha256(f.read_bytes()).hexdigest()


def test_a_saved_bundle_lists_every_file_and_its_version_is_its_content(pristine):
    meta = read_meta(pristine)
    assert "dataset/meta.json" in meta["sha256"]  # the dataset's own meta.json is hashed too
    b = Bundle.load(pristine)
    assert b.version == meta["version"] == json.loads((pristine / "meta.json").read_text()
                                                      )["version"]


@pytest.mark.parametrize(("rel", "message"), [
    ("../outside.txt", "leaves the directory"),
    ("dataset/../../outside.txt", "leaves the directory"),
    ("/dev/zero", "leaves the directory"),
    ("/etc/hostname", "leaves the directory"),
    ("", "not a non-empty string"),
])
def test_paths_in_meta_json_stay_inside_the_bundle(copy, rel, message):
    (copy.parent / "outside.txt").write_text("secret")
    edit_meta(copy, lambda m: m["sha256"].__setitem__(rel, "0" * 64))
    start = time.monotonic()
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy)
    assert time.monotonic() - start < 5  # /dev/zero is never opened


def test_a_link_leaving_the_bundle_is_refused(copy):
    outside = copy.parent / "model-elsewhere.safetensors"
    shutil.move(copy / "model.safetensors", outside)
    os.symlink(outside, copy / "model.safetensors")  # same bytes, same digest
    with pytest.raises(BundleError, match=r"model.safetensors is a link to .*outside"):
        Bundle.load(copy)
    (copy / "model.safetensors").unlink()
    os.symlink("/dev/zero", copy / "model.safetensors")
    with pytest.raises(BundleError, match="outside"):
        Bundle.load(copy)


def test_only_regular_files_are_hashed(copy):
    os.mkfifo(copy / "dataset" / "pipe")  # reading it would block for ever
    edit_meta(copy, lambda m: m["sha256"].__setitem__("dataset/pipe", "0" * 64))
    with pytest.raises(BundleError, match="dataset/pipe is not a regular file"):
        Bundle.load(copy)


def test_a_file_the_load_reads_must_be_listed(copy):
    (copy / "dataset" / "extra.parquet").write_bytes(b"x")
    with pytest.raises(BundleError, match="dataset/extra.parquet is read by the load but not"):
        Bundle.load(copy)
    (copy / "dataset" / "extra.parquet").unlink()
    edit_meta(copy, lambda m: m["sha256"].pop("config.json"))
    with pytest.raises(BundleError, match="config.json is read by the load but not listed"):
        Bundle.load(copy)


def test_the_version_is_recomputed_from_the_content(copy):
    config = copy / "config.json"
    cfg = json.loads(config.read_text())
    cfg["seed"] = 7  # tampered: the file and its digest changed, the version left alone
    config.write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="checksum mismatch for config.json"):
        Bundle.load(copy)
    edit_meta(copy, lambda m: m["sha256"].__setitem__("config.json", sha(config)))
    with pytest.raises(BundleError, match=r"'version' is '[0-9a-f]{16}' but the files hash to"):
        Bundle.load(copy)


def test_store_versions_stay_inside_the_store(pristine, tmp_path):
    store = BundleStore.create(tmp_path / "store")
    v = store.add_directory(pristine)
    store.activate(v)
    state_file = store.root / "store.json"
    good = state_file.read_text()
    for bad in ("../../escape", "/tmp/x", "a/b", ".."):
        state = json.loads(good)
        state["versions"][bad] = {}
        state["history"].append(bad)
        state_file.write_text(json.dumps(state))
        with pytest.raises(StoreError, match="is not a plain name"):
            store.load()
    state_file.write_text(good)
    folder = store.root / "versions" / v
    shutil.move(folder, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", folder)  # the version, moved out and linked back
    with pytest.raises(StoreError, match="not a folder of the store"):
        store.load()
    with pytest.raises(StoreError, match="not a folder of the store"):
        store.activate(v)


def test_store_refuses_a_version_whose_content_is_another(pristine, tmp_path):
    store = BundleStore.create(tmp_path / "store")
    v = store.add_directory(pristine)
    store.activate(v)
    fake = "0123456789abcdef"
    shutil.copytree(store.root / "versions" / v, store.root / "versions" / fake)
    state = json.loads((store.root / "store.json").read_text())
    state["versions"][fake] = {}
    (store.root / "store.json").write_text(json.dumps(state))
    with pytest.raises(StoreError, match=f"version {fake}: its meta.json says version"):
        store.activate(fake)
    state["live"] = fake  # store.json edited by hand to point at it
    (store.root / "store.json").write_text(json.dumps(state))
    with pytest.raises(StoreError, match=f"version {fake}: its files hash to {v}"):
        store.load()


def test_add_copies_only_the_listed_files(pristine, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(pristine, src)
    (src / "notes.txt").write_text("not part of the bundle")
    os.symlink("/dev/zero", src / "zero")  # would hang a plain copytree
    store = BundleStore.create(tmp_path / "store")
    v = store.add_directory(src)
    copied = {p.relative_to(store.path_of(v)).as_posix()
              for p in store.path_of(v).rglob("*") if p.is_file()}
    assert copied == {"meta.json", *read_meta(pristine)["sha256"]}
