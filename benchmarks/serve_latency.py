"""Latency and throughput of ``POST /recommend`` over real HTTP, against in-process calls.

Run: ``python benchmarks/serve_latency.py [--bundle runs/x/bundle] [--concurrency 1,16]
[--requests 1000] [--repeats 3] [--json out.json]``.

A real server (``crossrec serve``, uvicorn, one worker, auth on, SQLite event store) is started
on a free loopback port in a subprocess; closed-loop clients (threads, one keep-alive HTTP
connection each) post ``{"user_id", "k": 10}`` for users drawn from the bundle's training users
(seeded), each client waiting for an answer before its next request. The baseline calls
``Bundle.recommend([user], k=10)`` in this process for the same users, one at a time. Without
``--bundle``, an ItemKNN(all) bundle is trained on the synthetic two-domain data.

Figures per repeat: requests/s, p50 and p99 latency (ms), errors (non-200 answers or
transport failures) and CPU time per request (the server processes' user + system time from
``/proc``; for the baseline, this process's). The table gives mean ± std over the repeats and
the ratio of HTTP to in-process p50. Clients and server share the machine's cores, so on a
loaded machine wall-clock latency is mostly waiting for a core; CPU ms per request is the
figure that does not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from crossrec.bundle import Bundle

KEY = "benchmark-key-" + "0" * 16


def synthetic_bundle(path: Path) -> Path:
    from crossrec.data.split import cold_start_users
    from crossrec.models import MODELS, FitOptions
    from crossrec.testing import make_two_domain

    ds = make_two_domain(n_users=3000, n_items=(2000, 1500), n_overlap=2000, n_clusters=8)
    split = cold_start_users(ds, "source", "target", 0.2, seed=0)
    model = MODELS["itemknn"](train_on="all").fit(split.train, FitOptions(target="target"))
    config = {"model": {"name": "itemknn", "train_on": "all"}, "target": "target",
              "sources": ["source"], "seed": 0}
    return Bundle(model, split.train, config).save(path)


def start_server(bundle: Path, work: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "keys").write_text(KEY + "\n")
    cmd = [sys.executable, "-c", "from crossrec.cli import app; app()", "serve", str(bundle),
           "--port", str(port), "--keys-file", str(work / "keys"), "--events",
           str(work / "events.sqlite"), "--log-level", "warning", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=open(work / "server.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{(work / 'server.log').read_text()}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("server did not start in 180 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children alive (Linux ``/proc``)."""
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


def load(url: str, users: list[str], concurrency: int, domain: str, pid: int) -> dict:
    """Closed loop: ``concurrency`` clients share the list of users; latency per request."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    position = [0]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30.0,
                          headers={"Authorization": f"Bearer {KEY}"}) as http:
            while True:
                with lock:
                    if position[0] >= len(users):
                        return
                    user = users[position[0]]
                    position[0] += 1
                t0 = time.perf_counter()
                try:
                    ok = http.post("/recommend", json={"user_id": user, "domain": domain,
                                                       "k": 10}).status_code == 200
                except httpx.TransportError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    lat = np.asarray(latencies) * 1e3
    return {"qps": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": int(errors[0]),
            "cpu_ms": cpu / len(lat) * 1e3}


def in_process(bundle: Bundle, users: list[str], domain: str) -> dict:
    lat = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for u in users:
        t = time.perf_counter()
        bundle.recommend([u], domain, 10)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    lat_ms = np.asarray(lat) * 1e3
    return {"qps": len(lat) / wall, "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)), "errors": 0,
            "cpu_ms": cpu / len(lat) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="bundle directory (default: synthetic)")
    ap.add_argument("--concurrency", default="1,16", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=1000, help="requests per level and repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = args.bundle or synthetic_bundle(work / "bundle")
        bundle = Bundle.load(path)
        domain = bundle.target
        rng = np.random.default_rng(args.seed)
        all_users = bundle.train.users.ids
        users = [str(u) for u in rng.choice(all_users, size=args.requests, replace=True)]
        bundle.recommend(users[:20], domain, 10)  # warm caches
        levels = [int(c) for c in args.concurrency.split(",")]
        runs: dict[str, list[dict]] = {"in-process": []} | {f"http c={c}": [] for c in levels}
        proc, url = start_server(path, work, args.workers)
        try:
            load(url, users[:50], 1, domain, proc.pid)  # warm-up
            for _ in range(args.repeats):
                runs["in-process"].append(in_process(bundle, users, domain))
                for c in levels:
                    runs[f"http c={c}"].append(load(url, users, c, domain, proc.pid))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    base = np.mean([r["p50_ms"] for r in runs["in-process"]])
    n_items = bundle.train.info.n_domain_items(domain)
    table = Table(title=f"POST /recommend, {bundle.config['model']['name']} on "
                        f"{bundle.train.name} ({domain}: {n_items:,} items), "
                        f"{args.requests} requests x {args.repeats} repeats, "
                        f"{args.workers} worker(s); load average "
                        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for col in ("path", "requests/s", "p50 ms", "p99 ms", "errors", "CPU ms/request",
                "p50 / in-process"):
        table.add_column(col, justify="left" if col == "path" else "right")
    summary = {}
    for name, rs in runs.items():
        cols = {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                for k in ("qps", "p50_ms", "p99_ms", "cpu_ms")}
        errs = int(sum(r["errors"] for r in rs))
        summary[name] = {**{k: v[0] for k, v in cols.items()},
                         **{f"{k}_std": v[1] for k, v in cols.items()}, "errors": errs}
        cell = {k: f"{cols[k][0]:.1f} ± {cols[k][1]:.1f}" if k == "qps" else
                f"{cols[k][0]:.2f} ± {cols[k][1]:.2f}" for k in cols}
        table.add_row(name, cell["qps"], cell["p50_ms"], cell["p99_ms"], str(errs),
                      cell["cpu_ms"], f"{cols['p50_ms'][0] / base:.1f}x")
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "runs": runs,
                                         "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))


if __name__ == "__main__":
    main()
