"""Hot reload: POST /admin/reload and SIGHUP swap the served version without dropping requests."""

from __future__ import annotations

import os
import signal
import threading
import time
from itertools import groupby

import httpx
import pytest
from serving_toy import ADMIN, ADMIN_KEY, AUTH, KEY
from test_server import start, stop
from update_toy import replay_setup

from crossrec.serving.store import BundleSource, BundleStore
from crossrec.serving.update import run_update

STREAM_TIMEOUT = 120.0  # seconds a phase of the real-server test may wait for answers


@pytest.fixture()
def replay(tmp_path):
    return replay_setup(tmp_path)


@pytest.fixture()
def store(replay, tmp_path) -> BundleStore:
    s = BundleStore.create(tmp_path / "store")
    s.activate(s.add_directory(tmp_path / "v1"))
    return s


@pytest.fixture()
def keys_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text(f"{KEY}\n")
    return f


@pytest.fixture()
def admin_args(tmp_path) -> tuple[str, str]:
    f = tmp_path / "admin-keys"
    f.write_text(f"# admin keys\n{ADMIN_KEY}\n")
    return "--admin-keys-file", str(f)


def a_user(store: BundleStore) -> str:
    train = store.load().train
    return str(train.users.raw(train.domain_users("target")[:1])[0])


def app_client(store: BundleStore, tmp_path):
    from fastapi.testclient import TestClient

    from crossrec.serving.app import create_app
    from crossrec.serving.auth import KeyRing, digest
    from crossrec.serving.settings import ServeSettings

    source = BundleSource(store.root)
    app = create_app(source.load(), ServeSettings(events=str(tmp_path / "ev.sqlite")),
                     keys=KeyRing([digest(KEY)]), admin_keys=KeyRing([digest(ADMIN_KEY)]),
                     source=source)
    return TestClient(app, raise_server_exceptions=False)


def test_reload_serves_the_new_live_version(replay, store, tmp_path):
    v1, user = store.live, a_user(store)
    v2 = run_update(store, _db(tmp_path, replay.events)).new_version  # written, not live
    with app_client(store, tmp_path) as c:
        assert c.post("/recommend", json={"user_id": user}, headers=AUTH
                      ).json()["model_version"] == v1
        assert c.post("/admin/reload").status_code == 401
        r = c.post("/admin/reload", headers=AUTH)  # a plain API key is not an admin key
        assert r.status_code == 403 and "admin key" in r.json()["detail"], r.text
        store.activate(v2)
        r = c.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "reloaded"
        assert (r.json()["model_version"], r.json()["previous_version"]) == (v2, v1)
        assert c.post("/recommend", json={"user_id": user}, headers=AUTH
                      ).json()["model_version"] == v2
        assert c.get("/healthz").json()["model_version"] == v2
        text = c.get("/metrics", headers=AUTH).text
        assert f'version="{v2}"' in text and f'version="{v1}"' not in text
        assert 'crossrec_model_reloads_total{result="ok"} 1.0' in text
        assert c.post("/admin/reload", headers=ADMIN).json()["status"] == "unchanged"


def test_failed_reload_keeps_the_old_version(replay, store, tmp_path):
    v1, user = store.live, a_user(store)
    v2 = run_update(store, _db(tmp_path, replay.events)).new_version
    with app_client(store, tmp_path) as c:
        store.activate(v2)
        model = store.path_of(v2) / "model.safetensors"
        model.write_bytes(model.read_bytes()[:64])  # damaged after it went live
        r = c.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 500
        assert r.json()["status"] == "failed" and r.json()["model_version"] == v1
        assert "checksum mismatch for model.safetensors" in r.json()["detail"]
        ok = c.post("/recommend", json={"user_id": user}, headers=AUTH)
        assert ok.status_code == 200 and ok.json()["model_version"] == v1
        assert 'crossrec_model_reloads_total{result="failed"} 1.0' in c.get(
            "/metrics", headers=AUTH).text


def test_rollback_route_restores_the_previous_version(replay, store, tmp_path):
    v1, user = store.live, a_user(store)
    v2 = run_update(store, _db(tmp_path, replay.events)).new_version
    with app_client(store, tmp_path) as c:
        r = c.post("/admin/rollback", headers=ADMIN)  # one activation so far: nothing to undo
        assert r.status_code == 409 and r.json()["status"] == "refused", r.text
        assert "nothing to roll back to" in r.json()["detail"] and store.live == v1
        store.activate(v2)
        assert c.post("/admin/reload", headers=ADMIN).json()["model_version"] == v2
        assert c.post("/admin/rollback", headers=AUTH).status_code == 403
        assert store.live == v2
        r = c.post("/admin/rollback", headers=ADMIN)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["model_version"], body["previous_version"]) == (
            "reloaded", v1, v2)
        assert store.live == v1 and f"rolled back from {v2} to {v1}" in body["detail"]
        assert c.post("/recommend", json={"user_id": user}, headers=AUTH
                      ).json()["model_version"] == v1
        assert c.post("/recommend", json={"user_id": user}, headers=ADMIN  # admin keys work
                      ).json()["model_version"] == v1


def test_admin_routes_closed_without_admin_keys_and_rollback_needs_a_store(
        replay, store, tmp_path):
    from fastapi.testclient import TestClient

    from crossrec.serving.app import create_app
    from crossrec.serving.auth import KeyRing, digest
    from crossrec.serving.settings import ServeSettings

    source = BundleSource(store.root)
    settings = ServeSettings(events=str(tmp_path / "ev.sqlite"), admin_keys_env="NO_SUCH_ENV")
    app = create_app(source.load(), settings, keys=KeyRing([digest(KEY)]), source=source)
    with TestClient(app, raise_server_exceptions=False) as c:
        for path in ("/admin/reload", "/admin/rollback"):
            r = c.post(path, headers=AUTH)
            assert r.status_code == 403 and "no admin key is configured" in r.json()["detail"]
    bundle_dir = BundleSource(store.path_of(store.live))  # a plain bundle, not a store
    app = create_app(bundle_dir.load(), ServeSettings(events=str(tmp_path / "ev2.sqlite")),
                     keys=KeyRing([digest(KEY)]), admin_keys=KeyRing([digest(ADMIN_KEY)]),
                     source=bundle_dir)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/admin/rollback", headers=ADMIN)
        assert r.status_code == 409 and "needs a bundle store" in r.json()["detail"], r.text


def test_reload_applies_the_apps_bundle_setup(replay, store, tmp_path):
    """The app's set-up of a bundle (e.g. its retrieval index) runs on reloaded ones too."""
    import asyncio

    from crossrec.serving.metrics import ServeMetrics
    from crossrec.serving.reload import Reloader, Served

    v1 = store.live
    v2 = run_update(store, _db(tmp_path, replay.events)).new_version
    prepared = []

    def prepare(b):  # noqa: ANN001, ANN202
        prepared.append(b.version)
        return Served.prepare(b)

    reloader = Reloader(prepare(store.load()), BundleSource(store.root), ServeMetrics(), prepare)
    store.activate(v2)
    out = asyncio.run(reloader.reload("test"))
    assert out["status"] == "reloaded" and reloader.current.bundle.version == v2
    assert prepared == [v1, v2]


def _db(tmp_path, events) -> str:
    from crossrec.serving.events import SQLiteEventStore

    db = SQLiteEventStore(tmp_path / "replayed.sqlite")
    db.add(events)
    db.close()
    return str(db.path)


class Stream:
    """A thread posting /recommend back to back on one keep-alive connection."""

    def __init__(self, url: str, user: str) -> None:
        self.url, self.user = url, user
        self.seen: list[str] = []  # model_version of every answer, in order
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0, headers=AUTH) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/recommend", json={"user_id": self.user, "k": 10})
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    self.seen.append(r.json()["model_version"])

    def wait_for(self, version: str, n: int = 10) -> None:
        """Until ``n`` answers in a row (the latest ones) came from ``version``."""
        deadline = time.monotonic() + STREAM_TIMEOUT
        while time.monotonic() < deadline:
            if len(self.seen) >= n and all(v == version for v in self.seen[-n:]):
                return
            assert not self.failures, self.failures[:3]
            time.sleep(0.05)
        raise AssertionError(f"no run of {n} answers from {version}: {self.seen[-20:]}")


def test_real_server_reloads_and_rolls_back_under_load(replay, store, keys_file, admin_args,
                                                       tmp_path):
    """Serve a store, replay events through POST /events, update, reload (API), roll back
    (POST /admin/rollback), reload again (SIGHUP), all while a client posts /recommend back to
    back: no request fails."""
    v1 = store.live
    events, log = tmp_path / "events.sqlite", tmp_path / "server.log"
    proc, url = start(store.root, keys_file, events, log, *admin_args)
    stream = Stream(url, a_user(store))
    try:
        stream.thread.start()
        stream.wait_for(v1)
        with httpx.Client(base_url=url, timeout=30.0, headers=AUTH) as http:
            body = [{"event_id": e.event_id, "user_id": e.user_id, "domain": e.domain,
                     "item_id": e.item_id, "timestamp": e.timestamp} for e in replay.events]
            for i in range(0, len(body), 200):
                assert http.post("/events", json={"events": body[i:i + 200]}).json()[
                    "stored"] == len(body[i:i + 200])
            result = run_update(store, str(events), activate=True)
            v2 = result.new_version
            assert result.counts.used == len(replay.events) and store.live == v2
            assert http.post("/admin/reload").status_code == 403  # not an admin key
            r = http.post("/admin/reload", headers=ADMIN)
            assert r.status_code == 200 and r.json()["model_version"] == v2, r.text
            stream.wait_for(v2)
            r = http.post("/admin/rollback", headers=ADMIN)
            assert r.status_code == 200, r.text
            assert (r.json()["status"], r.json()["model_version"]) == ("reloaded", v1)
            assert f"rolled back from {v2} to {v1}" in r.json()["detail"]
            assert store.live == v1
            stream.wait_for(v1)
            store.activate(v2)
            os.kill(proc.pid, signal.SIGHUP)
            stream.wait_for(v2)
            assert http.get("/healthz").json()["model_version"] == v2
            metrics = http.get("/metrics").text
    finally:
        stream.stop.set()
        stream.thread.join(timeout=30)
        stop(proc)
    assert not stream.failures, stream.failures[:5]
    assert [v for v, _ in groupby(stream.seen)] == [v1, v2, v1, v2]
    assert 'crossrec_model_reloads_total{result="ok"} 3.0' in metrics
    text = log.read_text()
    assert f"reload (api) from store {store.root}: {v1} -> {v2}" in text
    assert f"rollback (api) of store {store.root}: {v2} -> {v1}" in text
    assert f"reload (api) from store {store.root}: {v2} -> {v1}" in text
    assert f"reload (SIGHUP) from store {store.root}: {v1} -> {v2}" in text


@pytest.mark.slow
def test_two_workers_reload_by_rolling_restart(replay, store, keys_file, admin_args, tmp_path):
    """With --workers 2, POST /admin/reload asks the supervisor for a rolling restart: each
    worker is replaced by one serving the live version, while a client keeps posting."""
    v1 = store.live
    v2 = run_update(store, _db(tmp_path, replay.events)).new_version
    events, log = tmp_path / "events.sqlite", tmp_path / "server.log"
    proc, url = start(store.root, keys_file, events, log, "--workers", "2", *admin_args)
    stream = Stream(url, a_user(store))
    try:
        stream.thread.start()
        stream.wait_for(v1)
        store.activate(v2)
        with httpx.Client(base_url=url, timeout=30.0, headers=ADMIN) as http:
            r = http.post("/admin/reload")
            assert r.status_code == 202 and r.json()["status"] == "restarting", r.text
        stream.wait_for(v2)
        deadline = time.monotonic() + STREAM_TIMEOUT
        fresh: list[str] = []  # new connections: the kernel spreads them over the workers
        while time.monotonic() < deadline and fresh[-20:] != [v2] * 20:
            with httpx.Client(base_url=url, timeout=30.0, headers=AUTH) as one:
                fresh.append(one.get("/healthz").json()["model_version"])
        assert fresh[-20:] == [v2] * 20, fresh[-40:]
    finally:
        stream.stop.set()
        stream.thread.join(timeout=30)
        stop(proc)
    assert not stream.failures, stream.failures[:5]
    assert [v for v, _ in groupby(stream.seen)] == [v1, v2]
    assert "Received SIGHUP, restarting processes." in log.read_text()
