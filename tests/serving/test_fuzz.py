"""Schema-driven fuzzing: 1,000+ requests generated from the app's OpenAPI spec, no 5xx.

A seeded generator walks the JSON schema of each request body and draws values that are mostly
valid (so requests reach the model and the event store) and often not: wrong types, values
just outside the bounds, missing required and unknown fields, odd strings, raw junk bodies.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from serving_toy import AUTH

N_REQUESTS = 1200
TIME_LIMIT = 120.0  # seconds: a bound, not a target

STRINGS = ["", "x", "source", "target", "books", "source:s1", "target:t2", "source:", ":t1",
           "s3", "t5", "u1", "u7", "never-seen", "é∂ƒ😀", "\u0000\u202e", "' OR 1=1 --",
           "a" * 70, "b" * 300, "c" * 2100, "{}", "null"]
WRONG = [None, 0, -1, 1.5, True, "s", [], {}, [1, "a"], {"k": 1}, 10**30, -(10**30)]


def generate(schema: dict, defs: dict, rng: np.random.Generator, users: list[str],
             depth: int = 0) -> Any:
    if rng.random() < 0.06:
        return WRONG[rng.integers(len(WRONG))]
    if "$ref" in schema:
        return generate(defs[schema["$ref"].rsplit("/", 1)[1]], defs, rng, users, depth)
    if "anyOf" in schema:
        options = schema["anyOf"]
        return generate(options[rng.integers(len(options))], defs, rng, users, depth)
    kind = schema.get("type")
    if kind == "object":
        out = {}
        for name, sub in schema.get("properties", {}).items():
            p = 0.95 if name in schema.get("required", ()) else 0.5
            if rng.random() < p:
                if name == "user_id" and rng.random() < 0.5:
                    out[name] = users[rng.integers(len(users))]
                else:
                    out[name] = generate(sub, defs, rng, users, depth + 1)
        if rng.random() < 0.05:
            out["unexpected"] = 1
        return out
    if kind == "array":
        n = int(rng.integers(0, 6 if depth < 2 else 2))
        return [generate(schema.get("items", {}), defs, rng, users, depth + 1) for _ in range(n)]
    if kind == "string":
        return STRINGS[rng.integers(len(STRINGS))]
    if kind == "integer":
        lo, hi = int(schema.get("minimum", -5)), int(schema.get("maximum", 10**6))
        picks = [lo - 1, lo, lo + 1, 5, 10, 50, 100, 101, hi, hi + 1,
                 int(rng.integers(lo, hi + 1))]
        return picks[rng.integers(len(picks))]
    if kind == "number":
        return float(rng.choice([0.0, -1.5, 3.0, 1e308, rng.normal()]))
    if kind == "boolean":
        return bool(rng.random() < 0.5)
    if kind == "null":
        return None
    return WRONG[rng.integers(len(WRONG))]


def test_fuzz_no_server_errors(make_client, users):
    client = make_client()
    spec = client.app.openapi()
    defs = spec["components"]["schemas"]
    routes = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            routes.append((method, path, body.get("schema")))
    assert {p for _, p, s in routes if s} == {"/recommend", "/recommend/text", "/events"}
    rng = np.random.default_rng(0)
    ids = [users["target"], users["source_only"], "u0", "nobody"]
    statuses: dict[int, int] = {}
    failures = []
    start = time.monotonic()
    for i in range(N_REQUESTS):
        method, path, schema = routes[rng.integers(len(routes))]
        headers = dict(AUTH) if rng.random() > 0.05 else {}
        if schema is None:
            r = client.request(method, path, headers=headers)
        elif rng.random() < 0.05:  # junk bytes
            junk = rng.bytes(int(rng.integers(0, 200)))
            r = client.request(method, path, content=junk,
                               headers={**headers, "Content-Type": "application/json"})
        else:
            body = generate(schema, defs, rng, ids)
            r = client.request(method, path, content=json.dumps(body),
                               headers={**headers, "Content-Type": "application/json"})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if r.status_code >= 500:
            failures.append((method, path, r.status_code, r.text[:200]))
        assert time.monotonic() - start < TIME_LIMIT, f"fuzzing exceeded {TIME_LIMIT}s at {i}"
    assert not failures, failures[:5]
    assert sum(statuses.values()) == N_REQUESTS
    # the generator reached both the model (2xx) and the validation (4xx)
    assert statuses.get(200, 0) > 100 and statuses.get(422, 0) > 100, statuses
