"""The real thing: `crossrec serve` in a subprocess on a free loopback port, plain HTTP."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving_toy import AUTH, KEY, cluster_of_user, cluster_share

START_TIMEOUT = 90.0  # seconds; the process imports torch on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle_path: Path, keys: Path, events: Path, log: Path,
          *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "from crossrec.cli import app; app()", "serve",
           str(bundle_path), "--host", "127.0.0.1", "--port", str(port), "--keys-file",
           str(keys), "--events", str(events), "--log-level", "info", *extra]
    env = {k: v for k, v in os.environ.items()
           if k not in ("CROSSREC_API_KEYS", "PROMETHEUS_MULTIPROC_DIR")}
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server not up after {START_TIMEOUT}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


@pytest.fixture()
def keys_file(tmp_path) -> Path:
    f = tmp_path / "keys"
    f.write_text(f"{KEY}\n")
    return f


def test_real_server_answers_and_events_survive_kill_9(bundle_path, bundle, users, keys_file,
                                                        tmp_path):
    events, log = tmp_path / "events.sqlite", tmp_path / "server.log"
    proc, url = start(bundle_path, keys_file, events, log)
    try:
        with httpx.Client(base_url=url, timeout=10.0) as http:
            assert http.get("/readyz").json()["status"] == "ready"
            assert http.post("/recommend", json={"user_id": users["source_only"]}
                             ).status_code == 401
            r = http.post("/recommend", json={"user_id": users["source_only"], "k": 10},
                          headers=AUTH)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["basis"] == "source_only" and out["model_version"] == bundle.version
            ids = [i["item_id"] for i in out["items"]]
            assert cluster_share(bundle, "target", ids,
                                 cluster_of_user(bundle, users["source_only"])) >= 0.8
            assert http.post("/recommend", json={"user_id": "u1", "k": "x"},
                             headers=AUTH).status_code == 422
            assert http.post("/recommend", content=b"{" * 100_000, headers={
                **AUTH, "Content-Type": "application/json"}).status_code == 413
            r = http.post("/events", json={"events": [{"event_id": "k9", "user_id": "u1",
                          "domain": "target", "item_id": "t1"}]}, headers=AUTH)
            assert r.json() == {"stored": 1, "duplicates": 0}
            assert 'crossrec_events_total{domain="target"} 1.0' in http.get(
                "/metrics", headers=AUTH).text
    finally:
        stop(proc, signal.SIGKILL)  # no clean shutdown: the event must already be durable
    assert proc.returncode == -signal.SIGKILL
    assert sqlite3.connect(events).execute(
        "SELECT user_id, item_id FROM events WHERE event_id = 'k9'").fetchone() == ("u1", "t1")
    text = log.read_text()
    assert users["source_only"] not in text and KEY not in text  # hashed ids, no keys
    assert "POST /recommend 200" in text


@pytest.mark.slow
def test_two_workers_one_port_same_version_shared_events(bundle_path, bundle, users, keys_file,
                                                         tmp_path):
    events, log = tmp_path / "events.sqlite", tmp_path / "server.log"
    proc, url = start(bundle_path, keys_file, events, log, "--workers", "2")
    try:
        n = 40
        with httpx.Client(base_url=url, timeout=20.0, headers=AUTH) as http:
            for i in range(n):  # new connections: the kernel spreads them over the workers
                with httpx.Client(base_url=url, timeout=20.0, headers=AUTH) as one:
                    r = one.post("/recommend", json={"user_id": users["source_only"]})
                    assert r.status_code == 200 and r.json()["model_version"] == bundle.version
                    r = one.post("/events", json={"events": [{"event_id": f"w{i}",
                                 "user_id": "u1", "domain": "target", "item_id": "t1"}]})
                    assert r.json()["stored"] == 1
            text = http.get("/metrics").text
        # the metrics of both workers are summed, whichever worker answers the scrape
        line = [x for x in text.splitlines() if x.startswith("crossrec_http_requests_total{")
                and 'route="/recommend"' in x and 'status="200"' in x]
        assert len(line) == 1 and float(line[0].rsplit(" ", 1)[1]) == n
    finally:
        stop(proc)
    assert sqlite3.connect(events).execute("SELECT COUNT(*) FROM events").fetchone()[0] == n
    pids = {ln.split("Started server process [")[1].split("]")[0]
            for ln in log.read_text().splitlines() if "Started server process [" in ln}
    assert len(pids) == 2, log.read_text()[-2000:]
