"""Key roles (read / write / admin, 403 for the wrong one, checked before the body), the key id
stored with each event, and `crossrec update --exclude-key` dropping one key's events."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from serving_toy import ADMIN
from typer.testing import CliRunner
from update_toy import pairs, replay_setup

from crossrec.cli import app
from crossrec.errors import ConfigError
from crossrec.serving.auth import ApiKey, KeyRing, digest
from crossrec.serving.events import SQLiteEventStore
from crossrec.serving.store import BundleStore
from crossrec.serving.update import run_update

READER = "reader-key-000000000000"
WRITER = "writer-key-111111111111"


def ring() -> KeyRing:
    return KeyRing([ApiKey(digest(READER), "read", "frontend"),
                    ApiKey(digest(WRITER), "write", "ingest")])


@pytest.fixture()
def roles_client(bundle, tmp_path):
    from fastapi.testclient import TestClient

    from crossrec.serving.app import create_app
    from crossrec.serving.settings import ServeSettings

    events = tmp_path / "events.sqlite"
    app_ = create_app(bundle, ServeSettings(events=str(events)), keys=ring(),
                      admin_keys=KeyRing([digest("admin-key-fedcba9876543210")]))
    with TestClient(app_, raise_server_exceptions=False) as c:
        yield c, events


def event(eid: str, user: str) -> dict:
    return {"event_id": eid, "user_id": user, "domain": "target", "item_id": "t1"}


def test_each_role_opens_its_routes_only(roles_client, users):
    c, _ = roles_client
    rd, wr = {"X-API-Key": READER}, {"X-API-Key": WRITER}
    body = {"user_id": users["target"]}
    assert c.post("/recommend", json=body, headers=rd).status_code == 200
    assert c.get("/metrics", headers=rd).status_code == 200
    r = c.post("/events", json={"events": [event("e1", "u1")]}, headers=rd)
    assert r.status_code == 403 and "role write" in r.json()["message"]
    assert "this key's role: read" in r.json()["message"]
    assert c.post("/events", json={"events": [event("e1", "u1")]}, headers=wr).status_code == 200
    assert c.post("/recommend", json=body, headers=wr).status_code == 200  # write >= read
    for h in (rd, wr):
        r = c.post("/admin/reload", headers=h)
        assert r.status_code == 403 and "admin key" in r.json()["message"]
    assert c.post("/events", json={"events": [event("e2", "u1")]}, headers=ADMIN
                  ).status_code == 200


def test_role_is_checked_before_the_body_is_parsed(roles_client):
    c, _ = roles_client
    r = c.post("/events", content=b"{not json", headers={"X-API-Key": READER,
                                                          "content-type": "application/json"})
    assert r.status_code == 403 and "loc" not in r.text  # never reached the JSON parser


def test_events_carry_the_key_id_never_the_key(roles_client):
    c, events = roles_client
    assert c.post("/events", json={"events": [event("w1", "u1")]},
                  headers={"X-API-Key": WRITER}).status_code == 200
    assert c.post("/events", json={"events": [event("a1", "u2")]}, headers=ADMIN
                  ).status_code == 200
    db = SQLiteEventStore(events)
    try:
        assert db.get("w1").key_id == "ingest"
        assert db.get("a1").key_id == hashlib.sha256(ADMIN["Authorization"].split()[1]
                                                     .encode()).hexdigest()[:12]
    finally:
        db.close()
    assert WRITER not in events.read_bytes().decode("latin-1")


def test_without_auth_events_are_stored_under_dash(make_client):
    c = make_client(auth=False)
    assert c.post("/events", json={"events": [event("n1", "u1")]}).status_code == 200
    assert c.app.state.events.get("n1").key_id == "-"


def test_plain_key_defaults_to_write_and_files_parse_roles(tmp_path, monkeypatch):
    f = tmp_path / "keys"
    d = hashlib.sha256(b"hashed-key-cccccccccccc").hexdigest()
    f.write_text(f"plain-key-aaaaaaaaaaaa\nread-key-bbbbbbbbbbbbbb role=read name=web\n"
                 f"sha256:{d} role=admin\n")
    monkeypatch.setenv("TEST_KEYS", "env-key-dddddddddddddd role=read, env-key-eeeeeeeeeeeee")
    r = KeyRing.load(f, "TEST_KEYS")
    got = {k: (r.lookup(k).role, r.lookup(k).id) for k in
           ("plain-key-aaaaaaaaaaaa", "read-key-bbbbbbbbbbbbbb", "hashed-key-cccccccccccc",
            "env-key-dddddddddddddd", "env-key-eeeeeeeeeeeee")}
    assert got["plain-key-aaaaaaaaaaaa"][0] == "write"  # the documented default
    assert got["read-key-bbbbbbbbbbbbbb"] == ("read", "web")
    assert got["hashed-key-cccccccccccc"] == ("admin", d[:12])
    assert got["env-key-dddddddddddddd"][0] == "read" and got["env-key-eeeeeeeeeeeee"][0] == "write"
    admin = KeyRing.load(f, role="admin")  # the admin keys file: admin whatever is written
    assert admin.lookup("read-key-bbbbbbbbbbbbbb").role == "admin"
    for bad, msg in (("k" * 20 + " role=owner", "role 'owner' is not one of"),
                     ("k" * 20 + " colour=red", "unexpected 'colour=red'"),
                     ("k" * 20 + " name=a/b", "name 'a/b' must be")):
        f.write_text(f"# header\n{bad}\n")
        with pytest.raises(ConfigError, match=f"line 2: {msg}"):
            KeyRing.load(f)


def test_update_exclude_key_drops_that_keys_events(tmp_path):
    replay = replay_setup(tmp_path)
    store = BundleStore.create(tmp_path / "store")
    store.activate(store.add_directory(tmp_path / "v1"))
    half = len(replay.events) // 2
    tagged = [dataclasses.replace(e, key_id="spammer" if i < half else "ingest")
              for i, e in enumerate(replay.events)]
    db = SQLiteEventStore(tmp_path / "events.sqlite")
    db.add(tagged)
    db.close()
    result = run_update(store, str(tmp_path / "events.sqlite"), exclude_keys=["spammer"])
    c = result.counts
    assert c.excluded == half and c.read == len(tagged)
    assert c.read == c.used + c.duplicates + c.unknown_items + c.unknown_domains + c.excluded
    assert store.versions()[result.new_version]["excluded_keys"] == ["spammer"]
    new = store.load(result.new_version)
    assert len(new.train.interactions) == len(replay.v1.train.interactions) + c.used
    added = pairs(new.train) - pairs(replay.v1.train)
    kept = {(e.user_id, e.domain, e.item_id) for e in tagged[half:]}
    assert len(added) == c.used > 0 and added <= kept  # only the other key's events went in
    r = CliRunner().invoke(app, ["update", str(store.root), "--events",
                                 str(tmp_path / "events.sqlite"), "--all-events",
                                 "--exclude-key", "spammer", "--exclude-key", "ingest"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "no new interaction" in r.output  # every event excluded: nothing to refit
