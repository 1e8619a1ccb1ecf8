"""A real ``crossrec serve`` against hostile clients, over loopback, bounded in count and time.

Run: ``python benchmarks/hostile_clients.py [--slow 120] [--timeout 2] [--fuzz 10000]
[--flood 1500] [--schemathesis-path DIR] [--time-limit 900] [--json PATH]``.

Bundle: ItemKNN(all) on the synthetic two-domain data set (``crossrec.testing``), trained here
in a few seconds and saved to a temporary directory. Server: ``python -m crossrec serve`` in a
subprocess on a free 127.0.0.1 port (auth on; a keys file with one read key, one flood key, 8
fuzz keys of role write and an admin key; ``--header-timeout``/``--body-timeout`` set to
``--timeout``; rate limit ``--rate`` a second per key, burst ``--burst``). Phases:

1. slowloris: ``--slow`` sockets at once, a third idle, a third trickling a request head one
   byte every 0.4 s, a third sending a head then trickling the body; each socket's time to be
   closed by the server is measured (the limit: the timeout + 1 s of slack).
2. oversized: a 32 MiB header, 1 MiB of many small headers, a 10 MiB body (Content-Length and
   chunked), a header over the app's cap (431) -- each must get a 4xx or a close, never a 5xx.
3. flood: ``--flood`` requests as fast as 8 keep-alive connections allow, all with one key: the
   number of 429s (each with ``Retry-After``), and the read key still answered meanwhile.
4. fuzz: schemathesis (``crossrec[bench]``, or an isolated install given with
   ``--schemathesis-path``) against the app's OpenAPI schema, 40 raw-socket malformed requests
   (bad request lines, headers, lengths, chunking, HTTP/2 and TLS preambles, NUL bytes) each
   sent repeatedly, and seeded JSON bodies mutated from valid ones until the fuzz requests
   number ``--fuzz`` in all.

Figures: 5xx answers seen by the clients and counted by the server (``/metrics``), slow sockets
closed in time, 429s, and the server's RSS growth (VmRSS after warm-up vs at the end). Exit
status 1 when a target is missed (any 5xx, a slow socket not closed in time, no 429, RSS growth
>= 50 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hostile_payloads import FUZZ_KEYS, encode, malformed_cases, oversized_cases

READ_KEY, FLOOD_KEY, ADMIN_KEY = ("read-key-" + "r" * 16, "flood-key-" + "l" * 16,
                                  "admin-key-" + "a" * 16)


# ---------------------------------------------------------------------- server
def train_bundle(where: Path) -> Path:
    from crossrec.bundle import Bundle
    from crossrec.models import MODELS, FitOptions
    from crossrec.testing import make_two_domain

    ds = make_two_domain(seed=1)
    model = MODELS["itemknn"](train_on="all").fit(ds, FitOptions(target="target"))
    Bundle(model, ds, {"model": {"name": "itemknn", "train_on": "all"}, "target": "target",
                       "sources": ["source"], "seed": 0}).save(where / "bundle")
    return where / "bundle"


def openapi_schema(bundle: Path, where: Path) -> Path:
    from crossrec.bundle import Bundle
    from crossrec.serving.app import create_app
    from crossrec.serving.settings import ServeSettings

    api = create_app(Bundle.load(bundle), ServeSettings(auth=False, events=str(where / "s.db")))
    path = where / "openapi.json"
    path.write_text(json.dumps(api.openapi()))
    return path


def start_server(bundle: Path, where: Path, args: argparse.Namespace) -> tuple[Any, int]:
    keys = where / "keys"
    keys.write_text("\n".join([f"{READ_KEY} role=read name=reader",
                               f"{FLOOD_KEY} role=read name=flood",
                               *(f"{k} role=write name=fuzz{i}" for i, k in enumerate(FUZZ_KEYS)),
                               f"{ADMIN_KEY} role=admin name=ops"]) + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("CROSSREC_API_KEYS", "PYTHONPATH")}
    cmd = [sys.executable, "-m", "crossrec", "serve", str(bundle), "--host", "127.0.0.1",
           "--port", str(port), "--keys-file", str(keys), "--events", str(where / "ev.sqlite"),
           "--log-level", "warning", "--header-timeout", str(args.timeout), "--body-timeout",
           str(args.timeout), "--rate-limit", str(args.rate), "--rate-burst", str(args.burst)]
    proc = subprocess.Popen(cmd, stdout=open(where / "server.log", "wb"),
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(where / 'server.log').read_text()[-2000:]}")
        try:
            if asyncio.run(request(port, "GET", "/healthz"))[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server not up after 120 s")


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def server_counts(port: int) -> dict[str, float]:
    """Requests and 5xx the server counted, from /metrics."""
    _, body = asyncio.run(request(port, "GET", "/metrics", key=ADMIN_KEY))
    out = {"requests": 0.0, "errors": 0.0, "aborted": 0.0}
    for line in body.decode().splitlines():
        for name, metric in (("requests", "crossrec_http_requests_total"),
                             ("errors", "crossrec_http_errors_total"),
                             ("aborted", "crossrec_http_aborted_total")):
            if line.startswith(metric + "{") or line.startswith(metric + " "):
                out[name] += float(line.rsplit(" ", 1)[1])
    return out


# ---------------------------------------------------------------------- raw HTTP client
async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one answer; status 0 when the server closed first."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def request(port: int, method: str, path: str, key: str | None = None,
                  body: bytes | None = None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(encode(method, path, key, body))
        status, _, data = await asyncio.wait_for(read_answer(reader), 30)
        return status, data
    finally:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, or None when still open after ``seconds``."""
    got = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                got += chunk
        return got
    except TimeoutError:
        return None
    except ConnectionError:
        return got


# ---------------------------------------------------------------------- phases
async def slow_socket(port: int, kind: str, limit: float) -> float | None:
    """Seconds until the server closed a slow client, or None if it outlived ``limit``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    if kind == "body":
        writer.write(encode("POST", "/events", FUZZ_KEYS[0]).replace(
            b"\r\n\r\n", b"\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{"))
    trickle = b"POST /recommend HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 5000
    i = 0
    try:
        while time.monotonic() - start < limit:
            if kind != "idle":
                writer.write(trickle[i:i + 1] if kind == "head" else b" ")
                await writer.drain()
                i += 1
            if await closed_within(reader, 0.4) is not None:
                return time.monotonic() - start
        return None
    except ConnectionError:
        return time.monotonic() - start
    finally:
        writer.close()


async def slowloris(port: int, n: int, timeout: float) -> dict[str, Any]:
    kinds = ["idle", "head", "body"]
    times = await asyncio.gather(*(slow_socket(port, kinds[i % 3], timeout + 5)
                                   for i in range(n)))
    closed = [t for t in times if t is not None]
    in_time = [t for t in closed if t <= timeout + 1.0]
    return {"sockets": n, "closed": len(closed), "closed_in_time": len(in_time),
            "max_close_s": round(max(closed, default=0.0), 2), "timeout_s": timeout}


async def raw(port: int, payload: bytes, wait: float = 5.0) -> int:
    """Status of the answer to raw bytes (0: closed without an answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
    except ConnectionError:
        pass
    got = await closed_within(reader, wait) or b""
    writer.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
    return int(m.group(1)) if m else 0


def mutated_bodies(rng: random.Random, users: list[str]) -> tuple[str, bytes]:
    """A route and a JSON body: a valid one, then a few seeded mutations."""
    route = rng.choice(["/recommend", "/recommend", "/events", "/recommend/text"])
    if route == "/recommend":
        obj: Any = {"user_id": rng.choice(users), "k": rng.randint(1, 50),
                    "domain": rng.choice(["target", "source"]), "explain": rng.random() < 0.3}
        if rng.random() < 0.3:
            obj["history"] = [f"source:s{rng.randint(0, 60)}" for _ in range(rng.randint(0, 5))]
    elif route == "/events":
        obj = {"events": [{"event_id": f"e{rng.getrandbits(40)}", "user_id": rng.choice(users),
                           "domain": "target", "item_id": f"t{rng.randint(0, 60)}"}
                          for _ in range(rng.randint(1, 4))]}
    else:
        obj = {"text": "x" * rng.randint(0, 100), "k": rng.randint(1, 20)}
    junk = [None, -1, 0, 10**30, 1.5, "", "é😀\u0000", [], {}, True, "a" * 3000]
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        events = obj.get("events")
        nested = isinstance(events, list) and events and isinstance(events[0], dict)
        target = events[0] if nested and rng.random() < 0.7 else obj
        field = rng.choice([*target.keys(), "unknown_field"])
        if rng.random() < 0.2:
            target.pop(field, None)
        else:
            target[field] = rng.choice(junk)
    body = json.dumps(obj).encode()
    if rng.random() < 0.05:
        body = body[: rng.randint(0, len(body))]
    return route, body


async def flood(port: int, n: int) -> dict[str, Any]:
    body = json.dumps({"user_id": "u1", "k": 5}).encode()
    codes: dict[int, int] = {}
    retry_after = 0

    async def client(count: int) -> None:
        nonlocal retry_after
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(encode("POST", "/recommend", FLOOD_KEY, body))
            status, headers, _ = await read_answer(reader)
            codes[status] = codes.get(status, 0) + 1
            retry_after += status == 429 and "retry-after" in headers
        writer.close()

    await asyncio.gather(*(client(n // 8) for _ in range(8)))
    other, _ = await request(port, "POST", "/recommend", READ_KEY, body)
    return {"requests": sum(codes.values()), "status": {str(k): v for k, v in codes.items()},
            "429": codes.get(429, 0), "429_with_retry_after": retry_after,
            "other_key_during_flood": other}


async def json_fuzz(port: int, n: int, seed: int, deadline: float) -> dict[str, int]:
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(40)] + ["never-seen", ""]
    codes: dict[int, int] = {}
    per = n // len(FUZZ_KEYS) + 1

    async def client(key: str) -> None:
        reader = writer = None
        for _ in range(per):
            if time.monotonic() > deadline:
                break
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            route, body = mutated_bodies(rng, users)
            writer.write(encode("POST", route, key, body))
            try:
                status, headers, _ = await read_answer(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                status, headers = 0, {"connection": "close"}
            codes[status] = codes.get(status, 0) + 1
            if headers.get("connection") == "close":
                writer.close()
                reader = writer = None

    await asyncio.gather(*(client(k) for k in FUZZ_KEYS))
    return codes


def schemathesis_run(schema: Path, port: int, seconds: int, extra_path: str | None,
                     where: Path) -> dict[str, Any]:
    """schemathesis against the schema (one fuzz key), bounded by ``seconds``."""
    boot = ("import sys; sys.path.append(sys.argv.pop(1)) if sys.argv[1] else sys.argv.pop(1); "
            "from schemathesis.cli import schemathesis; schemathesis()")
    cmd = [sys.executable, "-c", boot, extra_path or "", "run", str(schema), "--url",
           f"http://127.0.0.1:{port}", "-H", f"Authorization: Bearer {FUZZ_KEYS[7]}",
           "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
           "--mode", "all", "-n", "3000", "--max-time", str(seconds), "--seed", "0",
           "--suppress-health-check", "all", "--generation-database", "none", "--no-shrink",
           "--workers", "2", "--warnings", "off", "--no-color",
           "--exclude-path-regex", "^/admin/"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120,
                              env=env, cwd=where)
    except subprocess.TimeoutExpired:
        return {"ran": False, "reason": "timed out"}
    if "No module named 'schemathesis'" in done.stderr:
        return {"ran": False, "reason": "schemathesis is not installed (crossrec[bench])"}
    text = done.stdout + done.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", text)
    return {"ran": True, "exit_code": done.returncode, "seconds": round(time.monotonic() - start),
            "cases": int(cases.group(1)) if cases else None,
            "passed": int(cases.group(2)) if cases else None,
            "output_tail": text.replace(str(where), "<tmp>").strip().splitlines()[-40:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slow", type=int, default=120, help="slowloris sockets at once")
    ap.add_argument("--timeout", type=float, default=2.0, help="server header/body timeout")
    ap.add_argument("--rate", type=float, default=100.0, help="server rate limit per key")
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--flood", type=int, default=1600, help="requests of the flood key")
    ap.add_argument("--fuzz", type=int, default=10_000, help="requests the server must count")
    ap.add_argument("--malformed-repeats", type=int, default=5)
    ap.add_argument("--schemathesis-seconds", type=int, default=240)
    ap.add_argument("--schemathesis-path", help="folder of an isolated schemathesis install")
    ap.add_argument("--time-limit", type=float, default=1200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit
    argv = ["DIR" if a == args.schemathesis_path else a for a in sys.argv]
    out: dict[str, Any] = {"command": " ".join(["python", *argv]),
                           "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                           "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        where = Path(tmp)
        bundle = train_bundle(where)
        schema = openapi_schema(bundle, where)
        proc, port = start_server(bundle, where, args)
        try:
            for i in range(200):  # warm-up: every route once, then RSS
                asyncio.run(request(port, "POST", "/recommend", READ_KEY,
                                    json.dumps({"user_id": f"u{i % 40}"}).encode()))
            rss0 = rss_mb(proc.pid)
            out["slowloris"] = asyncio.run(slowloris(port, args.slow, args.timeout))
            out["oversized"] = {name: asyncio.run(raw(port, payload))
                                for name, payload in oversized_cases().items()}
            out["flood"] = asyncio.run(flood(port, args.flood))
            raw_codes: dict[str, int] = {}
            for _ in range(args.malformed_repeats):
                for payload in malformed_cases():
                    code = str(asyncio.run(raw(port, payload, wait=args.timeout + 2)))
                    raw_codes[code] = raw_codes.get(code, 0) + 1
            out["malformed"] = raw_codes
            left = int(min(args.schemathesis_seconds, deadline - time.monotonic() - 60))
            out["schemathesis"] = (schemathesis_run(schema, port, left, args.schemathesis_path,
                                                    where) if left > 10
                                   else {"ran": False, "reason": "no time left"})
            fuzzed = (out["schemathesis"].get("cases") or 0) + sum(raw_codes.values())
            need = max(0, args.fuzz - fuzzed)  # mutated JSON bodies make up the rest
            out["json_fuzz"] = {str(k): v for k, v in asyncio.run(
                json_fuzz(port, need, args.seed, deadline)).items()}
            out["fuzz_requests"] = fuzzed + sum(out["json_fuzz"].values())
            out["server"] = server_counts(port)
            rss1 = rss_mb(proc.pid)
            out["rss_mb"] = {"after_warmup": round(rss0, 1), "end": round(rss1, 1),
                             "growth": round(rss1 - rss0, 1)}
            out["server_alive"] = asyncio.run(request(port, "GET", "/healthz"))[0] == 200
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    out["load_after"] = os.getloadavg()[0]
    seen = [out["oversized"], out["malformed"], out["flood"]["status"], out["json_fuzz"]]
    client_5xx = sum(v for d in seen[1:] for k, v in d.items() if k.startswith("5")) + sum(
        1 for v in out["oversized"].values() if v >= 500)
    sl = out["slowloris"]
    out["verdict"] = {
        "5xx_seen_by_clients": client_5xx, "5xx_counted_by_server": int(out["server"]["errors"]),
        "slow_sockets_closed_in_time": f"{sl['closed_in_time']}/{sl['sockets']}",
        "429s": out["flood"]["429"], "rss_growth_mb": out["rss_mb"]["growth"],
        "fuzz_requests": out["fuzz_requests"],
        "requests_counted_by_server": int(out["server"]["requests"]),
        "passed": bool(client_5xx == 0 and out["server"]["errors"] == 0
                       and sl["closed_in_time"] == sl["sockets"] and out["flood"]["429"] > 0
                       and out["rss_mb"]["growth"] < 50 and out["server_alive"]
                       and out["fuzz_requests"] >= args.fuzz)}
    for name, value in out["verdict"].items():
        print(f"{name:32s} {value}")
    print("oversized:", out["oversized"])
    print("malformed (status: count):", out["malformed"])
    print("schemathesis:", out["schemathesis"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.json.with_suffix(".tmp")
        tmp_json.write_text(json.dumps(out, indent=2))
        tmp_json.replace(args.json)
    sys.exit(0 if out["verdict"]["passed"] else 1)


if __name__ == "__main__":
    main()
