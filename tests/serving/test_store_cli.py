"""`crossrec store add|list|activate|rollback`, and `update --add/--rollback` still working."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from update_toy import fit_bundle

from crossrec.cli import app
from crossrec.serving.store import BundleStore


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture()
def v2_dir(bundle, tmp_path):
    inter = bundle.train.interactions
    path = tmp_path / "v2"
    fit_bundle(bundle.train.with_interactions(inter.iloc[: len(inter) - 40])).save(path)
    return path


def test_store_commands_end_to_end(bundle_path, bundle, v2_dir, tmp_path):
    store = tmp_path / "store"
    r = run("store", "add", store, bundle_path)
    assert r.exit_code == 0, r.output
    v1 = bundle.version
    assert f"added {v1}" in r.output and f"live: {v1}" in r.output
    r = run("store", "add", store, v2_dir)  # not live: the store has a live version
    assert r.exit_code == 0, r.output
    v2 = BundleStore(store).resolve(next(v for v in BundleStore(store).versions() if v != v1))
    assert BundleStore(store).live == v1
    r = run("store", "list", store, "--json")
    listed = json.loads(r.stdout)
    assert r.exit_code == 0 and listed["live"] == v1 and set(listed["versions"]) == {v1, v2}
    r = run("store", "activate", store, v2[:8])  # a unique prefix
    assert r.exit_code == 0 and f"{v2} is live (was {v1})" in r.output
    assert "reload the server" in r.output
    assert "already live" in run("store", "activate", store, v2).output
    r = run("store", "list", store)
    assert r.exit_code == 0 and f"{v1} -> {v2}" in r.output
    r = run("store", "rollback", store)
    assert r.exit_code == 0 and f"{v1} is live again (was {v2})" in r.output
    assert BundleStore(store).live == v1


def test_update_add_and_rollback_still_work_and_point_to_store(bundle_path, v2_dir, tmp_path):
    store = tmp_path / "store"
    r = run("update", store, "--add", bundle_path)
    assert r.exit_code == 0 and "crossrec store add" in r.output, r.output
    r = run("update", store, "--add", v2_dir, "--activate")
    assert r.exit_code == 0, r.output
    r = run("update", store, "--rollback")
    assert r.exit_code == 0 and "crossrec store rollback" in r.output
    assert "is live again" in r.output


@pytest.mark.parametrize(("args", "message"), [
    (["store", "list", "{tmp}/nowhere"], "not a bundle store"),
    (["store", "activate", "{store}", "ffff"], "version 'ffff' not found"),
    (["store", "rollback", "{store}"], "nothing to roll back to"),
    (["store", "add", "{store}", "{tmp}"], "not a crossrec bundle (no meta.json)"),
    (["store", "add", "{bundle}", "{bundle}"], "is a bundle directory, not a store"),
    (["update", "{store}"], "give --events"),
])
def test_store_errors_are_one_line_on_stderr(bundle_path, tmp_path, args, message):
    store = tmp_path / "store"
    assert run("store", "add", store, bundle_path).exit_code == 0
    r = run(*(a.format(tmp=tmp_path, store=store, bundle=bundle_path) for a in args))
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.output
