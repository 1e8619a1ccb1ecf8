"""Tampered bundles, stores and key files through the command line: each is refused with exit
code 2, one `error:` line on stderr naming what is wrong, no traceback, and nothing on disk
changed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.serving.store import BundleStore


def meta_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(b: Path) -> None:
        meta = json.loads((b / "meta.json").read_text())
        change(meta)
        (b / "meta.json").write_text(json.dumps(meta))
    return apply


def link_out(b: Path) -> None:
    shutil.move(b / "config.json", b.parent / "config-elsewhere.json")
    os.symlink(b.parent / "config-elsewhere.json", b / "config.json")


def meta_link(b: Path) -> None:
    (b / "meta.json").unlink()
    os.symlink("/dev/zero", b / "meta.json")


def fifo(b: Path) -> None:
    os.mkfifo(b / "dataset" / "pipe")
    meta_edit(lambda m: m["sha256"].__setitem__("dataset/pipe", "0" * 64))(b)


def retitle(b: Path) -> None:  # a file changed and its digest updated, the version not
    cfg = json.loads((b / "config.json").read_text())
    cfg["seed"] = 3
    (b / "config.json").write_text(json.dumps(cfg))
    import hashlib

    digest = hashlib.sha256((b / "config.json").read_bytes()).hexdigest()
    meta_edit(lambda m: m["sha256"].__setitem__("config.json", digest))(b)


BUNDLE_CASES = {
    "dotdot": (meta_edit(lambda m: m["sha256"].__setitem__("../x", "0" * 64)),
               "leaves the directory"),
    "absolute": (meta_edit(lambda m: m["sha256"].__setitem__("/dev/zero", "0" * 64)),
                 "leaves the directory"),
    "link-out": (link_out, "is a link to"),
    "meta-link": (meta_link, "is a link to /dev/zero"),
    "fifo": (fifo, "is not a regular file"),
    "unlisted": (lambda b: (b / "dataset" / "x.parquet").write_bytes(b"x"),
                 "read by the load but not listed"),
    "sha-not-object": (meta_edit(lambda m: m.__setitem__("sha256", ["config.json"])),
                       "field 'sha256' missing or not an object"),
    "version-edited": (meta_edit(lambda m: m.__setitem__("version", "f" * 16)),
                       "but the files hash to"),
    "content-edited": (retitle, "but the files hash to"),
    "not-json": (lambda b: (b / "meta.json").write_text("{"), "not valid JSON"),
}


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if (p.is_dir() or p.is_symlink() or
                                                not p.is_file()) else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def refused(r, message: str) -> None:  # noqa: ANN001
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr


def invoke(*args: object):  # noqa: ANN201
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


@pytest.mark.parametrize("case", sorted(BUNDLE_CASES))
def test_tampered_bundle_is_refused_by_recommend(pristine, tmp_path, case):
    bundle = tmp_path / "bundle"
    shutil.copytree(pristine, bundle)
    tamper, message = BUNDLE_CASES[case]
    tamper(bundle)
    before = snapshot(tmp_path)
    refused(invoke("recommend", bundle, "-u", "u1"), message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["dotdot", "link-out", "version-edited"])
def test_tampered_bundle_is_not_added_to_a_store(pristine, tmp_path, case):
    bundle = tmp_path / "bundle"
    shutil.copytree(pristine, bundle)
    tamper, message = BUNDLE_CASES[case]
    tamper(bundle)
    refused(invoke("store", "add", tmp_path / "store", bundle), message)
    versions = tmp_path / "store" / "versions"
    assert not versions.exists() or not any(versions.iterdir())


@pytest.mark.parametrize(("name", "message"), [("../../etc", "is not a plain name"),
                                               ("a/b", "is not a plain name")])
def test_store_json_naming_a_path_is_refused_by_serve(pristine, tmp_path, name, message):
    store = BundleStore.create(tmp_path / "store")
    store.activate(store.add_directory(pristine))
    state = json.loads((store.root / "store.json").read_text())
    state["versions"][name] = {}
    state["live"] = name
    (store.root / "store.json").write_text(json.dumps(state))
    before = snapshot(tmp_path)
    refused(invoke("serve", store.root, "--no-auth", "--events", tmp_path / "e.sqlite"),
            message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("line", "message"), [
    ("key-aaaaaaaaaaaaaaaa role=root", "line 1: role 'root' is not one of read, write, admin"),
    ("key-aaaaaaaaaaaaaaaa name=../x", "line 1: name '../x' must be"),
    ("key-aaaaaaaaaaaaaaaa admin", "line 1: unexpected 'admin' after the key"),
    ("short role=read", "line 1: API key shorter than 16"),
])
def test_bad_keys_file_is_refused_by_serve(pristine, tmp_path, line, message):
    keys = tmp_path / "keys"
    keys.write_text(line + "\n")
    refused(invoke("serve", pristine, "--keys-file", keys, "--events", tmp_path / "e.sqlite"),
            message)
    assert "aaaaaaaaaaaa" not in invoke("serve", pristine, "--keys-file", keys, "--events",
                                        tmp_path / "e.sqlite").stderr  # no key echoed
