"""POST /events and the event stores: idempotent ids, durable once answered."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time

import pytest
from serving_toy import AUTH

from crossrec.serving.events import Event, SQLiteEventStore, open_event_store


def ev(event_id: str, **kw) -> dict:
    return {"event_id": event_id, "user_id": "u1", "domain": "target", "item_id": "t1", **kw}


def test_post_events_dedupes_and_is_committed_when_answered(make_client, tmp_path, bundle):
    db = tmp_path / "events.sqlite"
    c = make_client(events=str(db))
    r = c.post("/events", json={"events": [ev("a", timestamp=123, rating=4.5),
                                           ev("b", domain="source", item_id="s3"), ev("a")]},
               headers=AUTH)
    assert r.status_code == 200 and r.json() == {"stored": 2, "duplicates": 1}
    # another connection (another process would do the same) sees the events at once
    rows = sqlite3.connect(db).execute(
        "SELECT event_id, domain, item_id, rating, timestamp, model_version FROM events "
        "ORDER BY event_id").fetchall()
    assert rows[0] == ("a", "target", "t1", 4.5, 123, bundle.version)
    assert rows[1][:3] == ("b", "source", "s3") and rows[1][4] > 1_700_000_000
    r = c.post("/events", json={"events": [ev("a", item_id="t9"), ev("c")]}, headers=AUTH)
    assert r.json() == {"stored": 1, "duplicates": 1}
    store = c.app.state.events
    assert store.count() == 3 and store.get("a").item_id == "t1"  # the first one is kept


def store_roundtrip(store, reopen) -> None:
    """Shared checks of an event store: dedupe, order, durability across a reopen."""
    e = [Event(f"e{i}", f"u{i % 2}", "target", f"t{i}", None if i % 2 else 1.0, 100 + i,
               1000.0 + i, "v1") for i in range(5)]
    assert [x.event_id for x in store.add(e[:3])] == ["e0", "e1", "e2"]
    assert [x.event_id for x in store.add([e[2], e[3], e[3], e[4]])] == ["e3", "e4"]
    assert store.count() == 5 and store.ping()
    assert [x.event_id for x in store.since(1001.5)] == ["e2", "e3", "e4"]
    assert [x.event_id for x in store.since(0.0, limit=2)] == ["e0", "e1"]
    store.close()
    again = reopen()
    assert again.count() == 5 and again.get("e0") == e[0] and again.get("e1") == e[1]
    assert again.get("missing") is None
    again.close()


def test_sqlite_store_durable_across_reopen(tmp_path):
    path = tmp_path / "sub" / "events.sqlite"
    store = open_event_store(path)
    assert isinstance(store, SQLiteEventStore)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store_roundtrip(store, lambda: open_event_store(path))


def test_events_survive_app_restart(make_client, tmp_path):
    db = tmp_path / "restart.sqlite"
    first = make_client(events=str(db))
    assert first.post("/events", json={"events": [ev("x1")]}, headers=AUTH).status_code == 200
    first.__exit__(None, None, None)  # shutdown closes the store
    second = make_client(events=str(db))
    r = second.post("/events", json={"events": [ev("x1"), ev("x2")]}, headers=AUTH)
    assert r.json() == {"stored": 1, "duplicates": 1}


# ----------------------------------------------------------------------------- PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A throw-away PostgreSQL server in a temporary directory on a free local port."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install "
                        "'crossrec[postgres]')")
    pg_ctl, initdb = shutil.which("pg_ctl"), shutil.which("initdb")
    if not pg_ctl or not initdb:
        pytest.skip("PostgreSQL server binaries (pg_ctl, initdb) not found on PATH")
    run_as: list[str] = []
    root = tmp_path_factory.mktemp("pg")
    if os.geteuid() == 0:  # initdb refuses to run as root: use the postgres account
        if not shutil.which("runuser"):
            pytest.skip("running as root and runuser is not available for initdb")
        run_as = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o777)
        for parent in root.parents:  # the postgres account must reach the directory
            if str(parent) in ("/", "/tmp"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    data, port = root / "data", _free_port()
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "crossrec", "--auth=trust",
                    "--no-sync"], check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"),
                    "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=90)
    try:
        yield f"postgresql://crossrec@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)


@pytest.mark.postgres
def test_postgres_store(postgres_url):
    from crossrec.serving.events import PostgresEventStore

    store = open_event_store(postgres_url)
    assert isinstance(store, PostgresEventStore)
    store_roundtrip(store, lambda: open_event_store(postgres_url))


@pytest.mark.postgres
def test_post_events_to_postgres(make_client, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        conn.execute("DROP TABLE IF EXISTS crossrec_events")
    c = make_client(events=postgres_url)
    r = c.post("/events", json={"events": [ev("p1"), ev("p1"), ev("p2", rating=2)]},
               headers=AUTH)
    assert r.json() == {"stored": 2, "duplicates": 1}
    with psycopg.connect(postgres_url) as conn:  # committed before the answer
        n = conn.execute("SELECT COUNT(*) FROM crossrec_events").fetchone()[0]
    assert n == 2
    assert c.get("/readyz").status_code == 200
    t0 = time.time()
    assert c.app.state.events.since(t0 - 60)[0].event_id in ("p1", "p2")
