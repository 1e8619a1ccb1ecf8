"""GET /metrics: Prometheus exposition of requests, latency, errors, strategies, events, model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from serving_toy import AUTH


def sample(text: str, name: str, **labels: str) -> float:
    """Value of one sample of the exposition text (labels matched as given, any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in\n{text}")


def test_metrics_exposition(make_client, bundle, users):
    c = make_client()
    c.post("/recommend", json={"user_id": users["target"]}, headers=AUTH)
    c.post("/recommend", json={"user_id": users["source_only"]}, headers=AUTH)
    c.post("/recommend", json={"user_id": "stranger", "k": 3}, headers=AUTH)
    c.post("/recommend", json={"history": ["source:s1"]}, headers=AUTH)
    c.post("/recommend", json={"user_id": "u1", "k": 0}, headers=AUTH)
    c.post("/events", json={"events": [
        {"event_id": "m1", "user_id": "u", "domain": "target", "item_id": "t1"},
        {"event_id": "m2", "user_id": "u", "domain": "source", "item_id": "s1"},
        {"event_id": "m1", "user_id": "u", "domain": "target", "item_id": "t1"}]}, headers=AUTH)
    r = c.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    req = "crossrec_http_requests_total"
    assert sample(text, req, route="/recommend", method="POST", status="200") == 4
    assert sample(text, req, route="/recommend", method="POST", status="422") == 1
    assert sample(text, "crossrec_http_request_duration_seconds_count", route="/recommend") == 5
    assert sample(text, "crossrec_http_request_duration_seconds_bucket", route="/recommend",
                  le="+Inf") == 5
    rec = "crossrec_recommendations_total"
    assert sample(text, rec, domain="target", strategy="model", basis="target") == 1
    assert sample(text, rec, domain="target", strategy="model", basis="source_only") == 1
    assert sample(text, rec, domain="target", strategy="model", basis="request_history") == 1
    assert sample(text, rec, domain="target", strategy="popular_fallback", basis="none") == 1
    usr = "crossrec_recommend_users_total"
    assert sample(text, usr, domain="target", user="known") == 2
    assert sample(text, usr, domain="target", user="unknown") == 1
    assert sample(text, usr, domain="target", user="anonymous") == 1
    assert sample(text, "crossrec_events_total", domain="target") == 1
    assert sample(text, "crossrec_events_total", domain="source") == 1
    assert sample(text, "crossrec_events_duplicate_total") == 1
    assert sample(text, "crossrec_model_info", version=bundle.version, model="itemknn",
                  target="target") == 1
    assert "# TYPE crossrec_http_errors_total counter" in text
    assert users["target"] not in text  # no user ids in labels


def test_server_errors_are_counted(make_client, bundle, monkeypatch):
    c = make_client()

    def broken(*a, **k):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(bundle, "recommend", broken)
    r = c.post("/recommend", json={"user_id": "u1"}, headers=AUTH)
    assert r.status_code == 500
    monkeypatch.undo()
    text = c.get("/metrics", headers=AUTH).text
    assert sample(text, "crossrec_http_errors_total", route="/recommend") == 1
    assert sample(text, "crossrec_http_requests_total", route="/recommend", status="500") == 1


def test_two_apps_have_separate_registries(make_client):
    a, b = make_client(), make_client()
    a.post("/recommend", json={"user_id": "u1"}, headers=AUTH)
    assert 'route="/recommend"' in a.get("/metrics", headers=AUTH).text
    assert 'route="/recommend"' not in b.get("/metrics", headers=AUTH).text


def test_alert_rules_use_exposed_metrics(make_client, users):
    """examples/alerts.yml parses and every metric it names is one the app exposes."""
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((Path(__file__).parents[2] / "examples" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {"CrossrecHighErrorRate", "CrossrecSlowRecommendations",
            "CrossrecHighFallbackRate"} <= alerts
    c = make_client()
    c.post("/recommend", json={"user_id": users["target"]}, headers=AUTH)
    c.post("/recommend", json={"user_id": "stranger"}, headers=AUTH)
    names = {line.split("{")[0].split(" ")[0]
             for line in c.get("/metrics", headers=AUTH).text.splitlines()
             if line and not line.startswith("#")}
    used = {n for e in exprs for n in re.findall(r"\bcrossrec_[a-z_]+", e)}
    assert used and used <= names | {"crossrec_http_errors_total"}, used - names
