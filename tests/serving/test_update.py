"""crossrec update: stored events -> a refitted new version, evaluated beside the old one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from update_toy import fit_bundle, pairs, replay_setup

from crossrec.bundle import Bundle
from crossrec.cli import app
from crossrec.models.base import Query
from crossrec.serving.events import Event, SQLiteEventStore
from crossrec.serving.store import BundleStore
from crossrec.serving.update import merge_events, run_update


@pytest.fixture()
def replay(tmp_path):
    return replay_setup(tmp_path)


@pytest.fixture()
def store(replay, tmp_path) -> BundleStore:
    s = BundleStore.create(tmp_path / "store")
    s.activate(s.add_directory(tmp_path / "v1"))
    return s


def event_db(path, events: list[Event]) -> str:
    db = SQLiteEventStore(path)
    db.add(events)
    db.close()
    return str(path)


def test_merge_counts_dedupes_skips_unknown_and_adds_users(replay):
    train = replay.v1.train
    known = replay.events[:5]
    extra = [Event("x1", known[0].user_id, known[0].domain, known[0].item_id, None, 7, 2000.0),
             Event("x2", "brand-new-user", known[1].domain, known[1].item_id, 4.0, 8, 2001.0),
             Event("x3", "brand-new-user", "target", "no-such-item", None, 9, 2002.0),
             Event("x4", "u1", "no-such-domain", known[1].item_id, None, 9, 2003.0)]
    u, i, d = (int(train.interactions[c].iloc[0]) for c in ("user", "item", "domain"))
    extra.append(Event("x5", str(train.users.raw([u])[0]), train.domains[d],  # in training
                       str(train.item_ids([i])[0]), None, 1, 2004.0))
    merged, c = merge_events(train, known + extra)
    assert (c.read, c.used, c.duplicates, c.unknown_items, c.unknown_domains, c.new_users) == (
        10, 6, 2, 1, 1, 1)
    assert c.cursor == 2004.0
    assert len(merged.interactions) == len(train.interactions) + 6
    assert merged.users.raw(np.arange(train.n_users)).tolist() == train.users.ids.tolist()
    assert merged.users.ids[-1] == "brand-new-user" and merged.n_users == train.n_users + 1
    assert ("brand-new-user", known[1].domain, known[1].item_id) in pairs(merged)
    new_row = merged.interactions.iloc[-1]
    assert new_row["rating"] == 4.0 and new_row["timestamp"] == 8
    assert merged.interactions.dtypes.equals(train.interactions.dtypes)


def test_update_replays_held_back_rows_into_a_new_version(replay, store, tmp_path):
    db = event_db(tmp_path / "events.sqlite",
                  replay.events + [Event("bad", "u1", "target", "unknown-item", None, 1, 5e3)])
    v1 = store.live
    result = run_update(store, db, eval_config=replay.config_path)
    c = result.counts
    assert (c.read, c.used, c.unknown_items) == (len(replay.events) + 1, len(replay.events), 1)
    assert result.new_version not in (None, v1) and store.live == v1  # written, not live
    new = store.load(result.new_version)
    # the new training data hold exactly the full training data (v1 + the replayed rows) ...
    assert pairs(new.train) == pairs(replay.split.train)
    assert pairs(new.train) - pairs(replay.v1.train) == {
        (e.user_id, e.domain, e.item_id) for e in replay.events}
    # ... and the refit (from scratch, same spec and seed) equals a fit on them directly
    direct = fit_bundle(replay.split.train)
    q = Query(users=torch.arange(0, replay.split.train.n_users, 7))
    assert torch.allclose(new.model.score(q, "target"), direct.model.score(q, "target"))
    rec = store.versions()[result.new_version]
    assert rec["parent"] == v1 and rec["events_used"] == len(replay.events)
    ev = result.evaluation
    assert ev.checks == {"old": {"truth_dropped": 0, "truth_in_train": 0},
                         "new": {"truth_dropped": 0, "truth_in_train": 0}}
    assert ev.n_users["test"] == replay.split.test["user"].nunique()
    o, n = ev.values["test"]["ndcg@10"]
    assert 0 < o < 1 and 0 < n < 1 and rec["metrics"]["test"]["ndcg@10"] == {"old": o, "new": n}
    # v1 still live: the same update again is the same content, hence the same version
    assert run_update(store, db).new_version == result.new_version
    assert len(store.versions()) == 2
    # once the new version is live, its cursor says every event is in: nothing to refit
    store.activate(result.new_version)
    again = run_update(store, db)
    assert again.new_version is None and "nothing to refit" in again.message


def test_cli_update_guard_activate_rollback(replay, store, tmp_path):
    db = event_db(tmp_path / "events.sqlite", replay.events)
    v1 = store.live
    runner = CliRunner()
    base = ["update", str(store.root), "--events", db, "--eval-config",
            str(replay.config_path), "--json", str(tmp_path / "u.json")]
    # a guard no refit can pass (the new version must be better by 1.0): written, not live
    out = runner.invoke(app, [*base, "--activate", "--tolerance", "-1"])
    assert out.exit_code == 3, out.output
    assert "not activated" in out.output and "unknown items" in out.output
    summary = json.loads((tmp_path / "u.json").read_text())
    v2 = summary["new_version"]
    assert summary["guard"]["passed"] is False and store.live == v1
    out = runner.invoke(app, [*base, "--all-events", "--activate", "--force", "--tolerance",
                              "-1"])
    assert out.exit_code == 0, out.output
    assert "forced past the metric guard" in out.output and store.live == v2
    out = runner.invoke(app, ["update", str(store.root), "--rollback"])
    assert out.exit_code == 0 and f"{v1} is live again" in out.output and store.live == v1
    out = runner.invoke(app, ["update", str(store.root), "--events", str(tmp_path / "none.db")])
    assert out.exit_code == 2 and "does not exist" in out.output


def test_cli_add_creates_a_store(tmp_path, bundle_path):
    out = CliRunner().invoke(app, ["update", str(tmp_path / "s"), "--add", str(bundle_path)])
    assert out.exit_code == 0, out.output
    assert BundleStore(tmp_path / "s").live == Bundle.load(bundle_path).version
