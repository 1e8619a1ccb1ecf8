"""Bad input gets a 4xx whose message names the field; never a 500."""

from __future__ import annotations

import json

import pytest
from serving_toy import AUTH

BAD_RECOMMEND = [
    ({"user_id": 123}, "body.user_id", 422),
    ({"user_id": "u1", "k": "5"}, "body.k", 422),
    ({"user_id": "u1", "k": 5.5}, "body.k", 422),
    ({"user_id": "u1", "k": 0}, "body.k", 422),
    ({"user_id": "u1", "k": 101}, "body.k", 422),  # above ServeSettings.max_k
    ({"user_id": "u1", "k": 10**9}, "body.k", 422),
    ({"user_id": "u1", "domain": "books"}, "body.domain", 422),
    ({"user_id": "u1", "exclude_seen": "yes"}, "body.exclude_seen", 422),
    ({"user_id": "u1", "explain": 1}, "body.explain", 422),
    ({"user_id": ""}, "body.user_id", 422),
    ({"user_id": "u1", "colour": "red"}, "body.colour", 422),
    ({}, "body: Value error, give user_id, history", 422),
    ({"history": []}, "body: Value error, give user_id, history", 422),
    ({"history": ["no-colon"]}, "body.history.0", 422),
    ({"history": [":t1"]}, "body.history.0", 422),
    ({"history": [{"domain": "source"}]}, "body.history.0.item_id", 422),
    ({"history": ["source:s1", "books:b1"]}, "body.history.1.domain", 422),
    ({"history": "source:s1"}, "body.history", 422),
    ({"history": ["source:s1"] * 501}, "body.history", 422),  # above max_history
    ([1, 2], "body", 422),
]


@pytest.mark.parametrize(("body", "field", "status"), BAD_RECOMMEND)
def test_bad_recommend_requests(client, body, field, status):
    r = client.post("/recommend", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    assert field in r.json()["message"]


def test_malformed_and_non_json_bodies(client):
    for raw in (b"{\"user_id\": ", b"not json", b"", b"\xff\xfe"):
        r = client.post("/recommend", content=raw, headers={**AUTH,
                        "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["message"].startswith("body"), (raw, r.text)
    r = client.post("/recommend", content=b"user_id=u1", headers={
        **AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500


def test_oversize_body_413(make_client):
    c = make_client(max_body_bytes=2048)
    body = json.dumps({"history": ["source:s1"] * 400}).encode()
    assert len(body) > 2048
    r = c.post("/recommend", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than 2048 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while reading
        for _ in range(8):
            yield b" " * 512

    r = c.post("/recommend", content=chunks(), headers={**AUTH,
               "Content-Type": "application/json"})
    assert r.status_code == 413
    assert c.post("/recommend", json={"user_id": "u1"}, headers=AUTH).status_code == 200


def test_bad_text_requests(client):
    for body, field in (({"text": ""}, "body.text"), ({"text": 5}, "body.text"),
                        ({"text": "x" * 2001}, "body.text"),
                        ({"text": "x", "domain": "books"}, "body.domain"),
                        ({"text": "x", "k": -1}, "body.k")):
        r = client.post("/recommend/text", json=body, headers=AUTH)
        assert r.status_code == 422 and field in r.json()["message"], r.text


def ev(**kw):
    return {"event_id": "e1", "user_id": "u1", "domain": "target", "item_id": "t1", **kw}


@pytest.mark.parametrize(("body", "field"), [
    ({"events": []}, "body.events"),
    ({"events": [ev(domain="books")]}, "body.events.0.domain"),
    ({"events": [ev(), ev(event_id=7)]}, "body.events.1.event_id"),
    ({"events": [ev(timestamp="yesterday")]}, "body.events.0.timestamp"),
    ({"events": [ev(timestamp=-1)]}, "body.events.0.timestamp"),
    ({"events": [ev(rating="5")]}, "body.events.0.rating"),
    ({"events": [{"event_id": "e1"}]}, "body.events.0.user_id"),
    ({"event": [ev()]}, "body.events"),
])
def test_bad_events(client, body, field):
    r = client.post("/events", json=body, headers=AUTH)
    assert r.status_code == 422 and field in r.json()["message"], r.text


def test_unknown_route_and_method(client):
    assert client.get("/nope", headers=AUTH).status_code == 404
    assert client.get("/recommend", headers=AUTH).status_code == 405
