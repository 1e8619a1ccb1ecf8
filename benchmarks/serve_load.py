"""Load test of ``POST /recommend`` over loopback HTTP: QPS, p50, p99 and errors per concurrency.

Run: ``python benchmarks/serve_load.py [--bundle DIR] [--modes exact,ann]
[--concurrency 1,16,64] [--requests 2000] [--repeats 3] [--workers 1]
[--server-args '--batch-users 1'] [--json out.json]``. ``--rankings out.json`` writes the
in-process top 10 of 200 of the same users (alone and in batches of 16) instead: run it before
and after a speed-up that must not move a ranking and compare the two files.

Bundle: ``--bundle`` serves any bundle directory. Without it, the bpr(all) model of
``configs/arts_office_cold.toml`` (Arts->Office, seed 0: a factor model, so approximate
retrieval applies) is trained once with ``crossrec train`` and cached in ``runs/serve-load/``.

Modes: ``exact`` serves the bundle as is (every item of the domain scored per request);
``ann`` serves the same bundle with ``--retrieval hnsw`` (plus ``--ann-vectors`` when given).
When ``crossrec serve`` has no ``--retrieval`` option the ann mode is reported as skipped,
with the reason. Both modes use the same bundle and the same users, so they compare.

Server: ``crossrec serve`` in a subprocess on a free loopback port (auth on, SQLite event
store, log level warning, ``--workers``, then ``--server-args``; by default the server scores
concurrent requests together, ``--batch-users 1`` turns that off). Each request posts
``{"user_id", "k": 10}`` (plus ``"explain": true`` with ``--explain``) for a user drawn
(seeded, with replacement) from the bundle's training users; a request is an error when the
answer is not a 200, or the connection fails or times out (30 s). When the ann server does
not start (e.g. a model that is not factorised), the ann mode is reported as skipped with the
end of the server's log.

Load generator (designed not to compete with the server for CPU): one separate process runs
every client as an asyncio task (uvloop when installed) on its own raw keep-alive HTTP/1.1
connection: the request bytes (headers and JSON body) are built before the clock starts, a
response is read as status line + headers up to the blank line, then exactly
``Content-Length`` body bytes, and only the status code is parsed. No HTTP library, no
threads, no per-request JSON encoding; the client's own CPU time per request is reported
(``client CPU ms``). Clients are closed-loop: each sends its next request when the previous
answer arrives; ``c`` clients share the request list, so each level sends ``--requests``.

Figures per level and repeat: requests/s (completed requests / wall time of the level), p50
and p99 latency (ms, send to last byte), errors, and the server processes' user + system CPU
per request (Linux ``/proc``; steadier than latency on a shared machine, though cache and core
contention still raise it). The table gives mean ± std over repeats (errors summed), the
in-process row times ``Bundle.recommend([user])`` one at a time in this process, and the load
average is printed with each mode: on a shared machine wall-clock latency includes waiting
for a core.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

KEY = "benchmark-key-" + "0" * 16
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "arts_office_cold.toml"
TIMEOUT = 30.0


# ---------------------------------------------------------------------- load generator process
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (Linux ``/proc``)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(proc.name) == pid or int(fields[1]) == pid:  # fields[1]: parent pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bool]:
    """Send one request, read its response; ``(status, keep_alive)``."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = None, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length is None:
        raise ConnectionError("response without Content-Length")
    await reader.readexactly(length)
    return status, keep


async def _level(host: str, port: int, requests: list[bytes], concurrency: int) -> dict:
    """Closed loop: ``concurrency`` clients share ``requests``; latency per request."""
    latencies: list[float] = []
    errors = 0
    position = 0

    async def client() -> None:
        nonlocal errors, position
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while position < len(requests):
            request = requests[position]
            position += 1
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                status, keep = await asyncio.wait_for(_exchange(*conn, request), TIMEOUT)
                ok = status == 200
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError, IndexError):
                ok, keep = False, False
            latencies.append(time.perf_counter() - t0)
            errors += not ok
            if not keep and conn is not None:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1e3
    return {"qps": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": int(errors), "requests": len(lat)}


def run_client(spec: dict) -> dict[str, list[dict]]:
    """The load generator's work: every level ``spec["repeats"]`` times, after a warm-up."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    host, port, pid = spec["host"], spec["port"], spec["server_pid"]
    requests = [build_request(host, port, body) for body in spec["bodies"]]
    asyncio.run(_level(host, port, requests[: spec["warmup"]], 4))
    out: dict[str, list[dict]] = {str(c): [] for c in spec["levels"]}
    for _ in range(spec["repeats"]):
        for c in spec["levels"]:
            cpu0, own0 = cpu_seconds(pid), time.process_time()
            r = asyncio.run(_level(host, port, requests, c))
            r["cpu_ms"] = (cpu_seconds(pid) - cpu0) / r["requests"] * 1e3
            r["client_cpu_ms"] = (time.process_time() - own0) / r["requests"] * 1e3
            r["loadavg"] = os.getloadavg()[0]
            out[str(c)].append(r)
    return out


def build_request(host: str, port: int, body: str) -> bytes:
    data = body.encode()
    return (f"POST /recommend HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


# ---------------------------------------------------------------------- server and bundle
def _shown(value: object) -> str:
    """An argument as written into the JSON: paths inside the project relative to it."""
    if isinstance(value, Path) and value.is_absolute():
        try:
            return str(value.relative_to(ROOT))
        except ValueError:
            return str(value)
    return str(value)


def default_bundle(config: Path, label: str) -> Path:
    """The cached bundle of model ``label`` in ``config`` (trained with ``crossrec train``)."""
    models = tomllib.loads(config.read_text()).get("models", [])
    labels = [m.get("label", m.get("name")) for m in models]
    if label not in labels:
        raise SystemExit(f"{config}: no [[models]] table with label {label!r} "
                         f"(labels: {', '.join(map(str, labels))})")
    out = ROOT / "runs" / "serve-load" / f"{config.stem}-{label.replace('(', '-').strip(')')}"
    if not (out / "bundle" / "meta.json").exists():
        print(f"training {label} of {config} once -> {out}/bundle", flush=True)
        cmd = [sys.executable, "-c", "from crossrec.cli import app; app()", "train",
               str(config), "--model", str(labels.index(label)), "--out", str(out)]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"crossrec train failed for {config} --model {labels.index(label)}")
    return out / "bundle"


def serve_has(option: str) -> bool:
    """Whether this ``crossrec serve`` takes ``--<option>`` (an older version may not)."""
    import inspect

    from crossrec.cli import serve

    return option in inspect.signature(serve).parameters


class ServerFailed(Exception):
    """``crossrec serve`` exited or did not answer; ``reason`` is the end of its log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _log_tail(log: Path, n: int = 3) -> str:
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-n:])


def start_server(bundle: Path, work: Path, workers: int,
                 extra: list[str]) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "keys").write_text(KEY + "\n")  # also the admin key (POST /admin/reload)
    log = work / f"server-{port}.log"
    cmd = [sys.executable, "-c", "from crossrec.cli import app; app()", "serve", str(bundle),
           "--port", str(port), "--keys-file", str(work / "keys"), "--admin-keys-file",
           str(work / "keys"), "--events",
           str(work / f"events-{port}.sqlite"), "--log-level", "warning", "--processes",
           str(workers), *extra]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"server exited ({' '.join(cmd[3:])}):\n{log.read_text()}",
                               _log_tail(log))
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise ServerFailed(f"server did not start in 300 s:\n{log.read_text()}",
                       "no answer from /readyz in 300 s")


def load_server(bundle: Path, work: Path, args: argparse.Namespace, extra: list[str],
                bodies: list[str]) -> dict[str, Any]:
    """Start a server, drive it from a client process, stop it; the client's figures."""
    proc, port = start_server(bundle, work, args.workers, extra)
    spec = {"host": "127.0.0.1", "port": port, "server_pid": proc.pid, "bodies": bodies,
            "levels": args.levels, "repeats": args.repeats, "warmup": min(200, len(bodies))}
    (work / "spec.json").write_text(json.dumps(spec))
    load0 = os.getloadavg()[0]
    try:
        client = subprocess.run([sys.executable, __file__, "--client", str(work / "spec.json")],
                                capture_output=True, text=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    if client.returncode != 0:
        raise SystemExit(f"load client failed:\n{client.stderr}")
    return {"runs": json.loads(client.stdout), "loadavg": [load0, os.getloadavg()[0]]}


def in_process(bundle: Any, users: list[str], domain: str, repeats: int,
               explain: int = 0) -> list[dict]:
    out = []
    for _ in range(repeats):
        lat = []
        cpu0, t0 = time.process_time(), time.perf_counter()
        for u in users:
            t = time.perf_counter()
            bundle.recommend([u], domain, 10, explain=explain)
            lat.append(time.perf_counter() - t)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        ms = np.asarray(lat) * 1e3
        out.append({"qps": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)), "errors": 0,
                    "cpu_ms": cpu / len(lat) * 1e3, "client_cpu_ms": 0.0,
                    "loadavg": os.getloadavg()[0]})
    return out


def rankings(bundle: Any, users: list[str], domain: str, explain: int, n: int = 200) -> dict:
    """The top 10 (item ids, scores, strategy) of the first ``n`` distinct users, each scored
    alone and in batches of 16 (what the server's batcher does): run with the code before and
    after a change that must not move a ranking, and compare the two files (``cmp``).
    Explanations are asked for (the served path) but not written: they may change."""
    distinct = list(dict.fromkeys(users))[:n]
    row = lambda r: [r.user_id, r.item_ids, r.scores, r.strategy]  # noqa: E731
    single = [row(bundle.recommend([u], domain, 10, explain=explain)[0]) for u in distinct]
    batched = [row(r) for a in range(0, len(distinct), 16)
               for r in bundle.recommend(distinct[a:a + 16], domain, 10, explain=explain)]
    return {"users": len(distinct), "single": single, "batches_of_16": batched}


def summarise(runs: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {"errors": int(sum(r["errors"] for r in runs))}
    for k in ("qps", "p50_ms", "p99_ms", "cpu_ms", "client_cpu_ms", "loadavg"):
        vals = [r[k] for r in runs]
        out[k], out[f"{k}_std"] = float(np.mean(vals)), float(np.std(vals))
    return out


# ---------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="bundle directory (default: bpr(all) of "
                    "--config, trained once and cached under runs/serve-load/)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--model-label", default="bpr(all)", help="[[models]] label in --config")
    ap.add_argument("--modes", default="exact,ann", help="comma-separated: exact, ann")
    ap.add_argument("--ann-retrieval", default="hnsw", help="--retrieval of the ann mode")
    ap.add_argument("--ann-vectors", default=None, help="--vectors of the ann mode (fp32, ...)")
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=2000, help="requests per level and repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--server-args", default="", help="more `crossrec serve` options for "
                    "both modes, e.g. '--batch-users 1'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--explain", action="store_true",
                    help='ask for explanations ("explain": true) in every request')
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rankings", type=Path, help="write the in-process top 10 of 200 of the "
                    "users (alone and in batches of 16) to this JSON and exit: compare the "
                    "files written before and after a change")
    ap.add_argument("--client", type=Path, help=argparse.SUPPRESS)  # internal: load generator
    args = ap.parse_args()
    if args.client:
        json.dump(run_client(json.loads(args.client.read_text())), sys.stdout)
        return
    from rich.console import Console
    from rich.table import Table

    from crossrec.bundle import Bundle

    args.levels = [int(c) for c in args.concurrency.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if bad := set(modes) - {"exact", "ann"}:
        raise SystemExit(f"--modes: unknown mode(s) {', '.join(sorted(bad))} (exact, ann)")
    path = args.bundle or default_bundle(args.config, args.model_label)
    bundle = Bundle.load(path)
    domain = bundle.target
    rng = np.random.default_rng(args.seed)
    users = [str(u) for u in rng.choice(bundle.train.users.ids, size=args.requests)]
    bodies = [json.dumps({"user_id": u, "k": 10, **({"explain": True} if args.explain else {})})
              for u in users]
    if args.rankings:
        out = rankings(bundle, users, domain, 3 if args.explain else 0)
        args.rankings.parent.mkdir(parents=True, exist_ok=True)
        args.rankings.write_text(json.dumps(out, indent=0) + "\n")
        print(f"{args.rankings}: top 10 of {out['users']} users, alone and in batches of 16")
        return
    result: dict[str, Any] = {}
    ann_extra = ["--retrieval", args.ann_retrieval] + (
        ["--vectors", args.ann_vectors] if args.ann_vectors else [])
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            extra = ([] if mode == "exact" else ann_extra) + shlex.split(args.server_args)
            if mode == "ann" and not serve_has("retrieval"):
                result[mode] = {"skipped": "this crossrec serve has no --retrieval option "
                                           "(approximate retrieval not available)"}
                continue
            print(f"{mode}: serving {path} {' '.join(extra)}", flush=True)
            try:
                served = load_server(path, Path(tmp), args, extra, bodies)
            except ServerFailed as e:
                if mode == "exact":
                    raise SystemExit(str(e)) from None
                result[mode] = {"skipped": f"crossrec serve {' '.join(extra)} did not start: "
                                           f"{e.reason}"}
                continue
            result[mode] = {c: summarise(rs) for c, rs in served["runs"].items()}
            result[mode]["loadavg_start_end"] = served["loadavg"]
            result[mode]["runs"] = served["runs"]
    if "exact" in modes:
        bundle.recommend(users[:50], domain, 10)  # warm caches
        runs = in_process(bundle, users, domain, args.repeats, 3 if args.explain else 0)
        result["in_process"] = summarise(runs) | {"runs": runs}

    n_items = bundle.train.info.n_domain_items(domain)
    table = Table(title=f"POST /recommend k=10, {bundle.config['model']['name']} on "
                        f"{bundle.train.name} ({domain}: {n_items:,} items), {args.requests} "
                        f"requests x {args.repeats} repeats, {args.workers} worker(s), "
                        f"{os.cpu_count()} cores")
    for col in ("mode", "clients", "requests/s", "p50 ms", "p99 ms", "errors",
                "server CPU ms/req", "client CPU ms/req", "load avg"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    rows = [(m, c, result[m][c]) for m in modes if "skipped" not in result[m]
            for c in map(str, args.levels)]
    if "in_process" in result:
        rows.append(("in-process", "1", result["in_process"]))
    for mode, c, s in rows:
        table.add_row(mode, c, f"{s['qps']:.0f} ± {s['qps_std']:.0f}",
                      f"{s['p50_ms']:.2f} ± {s['p50_ms_std']:.2f}",
                      f"{s['p99_ms']:.2f} ± {s['p99_ms_std']:.2f}", str(s["errors"]),
                      f"{s['cpu_ms']:.2f} ± {s['cpu_ms_std']:.2f}", f"{s['client_cpu_ms']:.2f}",
                      f"{s['loadavg']:.1f}")
    console = Console(width=160)
    if rows:
        console.print(table)
    for m in modes:
        if "skipped" in result[m]:
            console.print(f"{m}: skipped ({result[m]['skipped']})")
    if args.json:
        result["meta"] = {"bundle": str(path), "model": bundle.config["model"]["name"],
                          "domain": domain, "n_items": n_items, "cores": os.cpu_count(),
                          "args": {k: _shown(v) for k, v in vars(args).items() if k != "client"}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp_json.write_text(json.dumps(result, indent=2))
        tmp_json.replace(args.json)


if __name__ == "__main__":
    main()
