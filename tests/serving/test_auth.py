"""API keys: required on every route but health/readiness, hashed, constant-time, never logged."""

from __future__ import annotations

import hashlib
import logging

import pytest
from serving_toy import AUTH, KEY

from crossrec.errors import ConfigError
from crossrec.serving.auth import KeyRing, presented_key, user_hash

PROTECTED = [("post", "/recommend", {"user_id": "u1"}), ("post", "/recommend/text",
             {"text": "x"}), ("post", "/events", {"events": []}), ("get", "/metrics", None)]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_missing_key_401_wrong_key_403(client, method, path, body):
    r = client.request(method, path, json=body)
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.request(method, path, json=body, headers={"Authorization": "Bearer wrong-key"})
    assert r.status_code == 403 and r.json()["detail"] == "invalid API key"
    r = client.request(method, path, json=body, headers={"Authorization": "Basic " + KEY})
    assert r.status_code == 401


def test_key_in_either_header(client, users):
    for headers in (AUTH, {"X-API-Key": KEY}):
        r = client.post("/recommend", json={"user_id": users["target"]}, headers=headers)
        assert r.status_code == 200, r.text


def test_health_and_readiness_need_no_key(client, bundle):
    assert client.get("/healthz").json() == {"status": "ok", "model_version": bundle.version,
                                             "detail": None}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_auth_off(make_client, users):
    c = make_client(auth=False)
    assert c.post("/recommend", json={"user_id": users["target"]}).status_code == 200
    assert c.get("/metrics").status_code == 200


def test_auth_on_without_keys_refuses_to_start(bundle, tmp_path, monkeypatch):
    from crossrec.serving.app import create_app
    from crossrec.serving.settings import ServeSettings

    monkeypatch.delenv("CROSSREC_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="no API key configured"):
        create_app(bundle, ServeSettings(events=str(tmp_path / "e.sqlite")))


def test_keyring_from_file_and_env_stores_digests(tmp_path, monkeypatch):
    plain, other = "file-key-aaaaaaaaaaaa", "env-key-bbbbbbbbbbbbbb"
    hashed = "digest-key-cccccccccccc"
    f = tmp_path / "keys"
    f.write_text(f"# service keys\n{plain}\n\nsha256:{hashlib.sha256(hashed.encode()).hexdigest()}"
                 "  # ops\n")
    monkeypatch.setenv("TEST_KEYS", f" {other} ,")
    ring = KeyRing.load(f, "TEST_KEYS")
    assert len(ring) == 3
    assert ring.check(plain) and ring.check(other) and ring.check(hashed)
    assert not ring.check("file-key-aaaaaaaaaaab") and not ring.check("")
    assert plain not in repr(ring) and plain not in str(vars(ring))  # only digests kept
    f.write_text("short\n")
    with pytest.raises(ConfigError, match=r"line 1: API key shorter than 16") as e:
        KeyRing.load(f)
    assert "short" not in str(e.value).replace("shorter", "")
    f.write_text("ok-key-dddddddddddddd\nsha256:zz\n")
    with pytest.raises(ConfigError, match="line 2: malformed key digest"):
        KeyRing.load(f)
    with pytest.raises(ConfigError, match="not found"):
        KeyRing.load(tmp_path / "absent")


def test_served_with_keys_from_env(bundle, tmp_path, monkeypatch, users):
    from fastapi.testclient import TestClient

    from crossrec.serving.app import create_app
    from crossrec.serving.settings import ServeSettings

    monkeypatch.setenv("CROSSREC_API_KEYS", KEY)
    app = create_app(bundle, ServeSettings(events=str(tmp_path / "e.sqlite")))
    with TestClient(app) as c:
        assert c.post("/recommend", json={"user_id": users["target"]}).status_code == 401
        assert c.post("/recommend", json={"user_id": users["target"]},
                      headers=AUTH).status_code == 200


def test_presented_key():
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key(None, "xyz") == "xyz"
    assert presented_key("Basic abc", None) is None and presented_key(None, None) is None


def test_logs_carry_keyed_hash_never_raw_ids_or_keys(make_client, users, caplog, monkeypatch):
    monkeypatch.setenv("CROSSREC_LOG_KEY", "log-secret")
    c = make_client()
    uid = users["source_only"]
    with caplog.at_level(logging.INFO, logger="crossrec.serving"):
        assert c.post("/recommend", json={"user_id": uid}, headers=AUTH).status_code == 200
        c.post("/recommend", json={"user_id": uid}, headers={"X-API-Key": "wrong-key-xyz"})
        c.post("/events", json={"events": [{"event_id": "e1", "user_id": uid,
                                            "domain": "target", "item_id": "t1"}]},
               headers=AUTH)
    text = caplog.text
    assert f"user={user_hash(b'log-secret', uid)}" in text
    assert uid not in text and KEY not in text and "wrong-key-xyz" not in text
    assert "POST /recommend 200" in text and "POST /recommend 403" in text
