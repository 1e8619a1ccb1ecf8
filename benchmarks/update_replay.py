"""Continuous update on Arts → Office: held-back interactions replayed through ``POST /events``.

Run: ``python benchmarks/update_replay.py [--config configs/arts_office_cold.toml]
[--model "itemknn(all)"] [--share 0.1] [--json out.json]``.

1. The config's split (seed 0): Office cold-start users; their Office rows are the truth.
2. Every *training user* (a user with no valid/test truth) loses the newest ``share`` of their
   interactions (by timestamp, per user; the Arts-Office timestamps are positions in the
   user's sequence): these rows are held back. The test users keep their Arts history, so
   both versions see the same inputs for them.
3. v1 = the model (``[[models]]`` entry ``--model``) fitted on the rest, saved as a bundle and
   put into a store (``crossrec update STORE --add``); a real server (``crossrec serve STORE``)
   is started and a client thread posts ``/recommend`` back to back for the whole run.
4. The held-back rows are replayed through ``POST /events`` (batches of ``--batch``).
5. ``crossrec update STORE --events DB --eval-config CONFIG --activate`` refits from scratch
   on v1's data plus the events → v2, evaluated beside v1 on the same held-out users.
6. ``POST /admin/reload`` → the server answers with v2; ``crossrec update --rollback`` and
   SIGHUP → v1 again. Versions are checked in the answers.

Printed: NDCG@10 / Recall@10 of v1, v2 (and of the model fitted directly on all training rows,
which v2 must equal) on the test users; event counts; the client's requests and failures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from itertools import groupby
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from serve_load import KEY, start_server

AUTH = {"Authorization": f"Bearer {KEY}"}
CLI = [sys.executable, "-c", "from crossrec.cli import app; app()"]


def crossrec(*args: str) -> str:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    if out.returncode != 0:
        raise SystemExit(f"crossrec {' '.join(args)} failed ({out.returncode}):\n"
                         f"{out.stdout}\n{out.stderr}")
    return out.stdout


class Stream(threading.Thread):
    """POST /recommend back to back on one keep-alive connection; versions and failures."""

    def __init__(self, url: str, user: str) -> None:
        super().__init__(daemon=True)
        self.url, self.user, self.stop = url, user, threading.Event()
        self.seen: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0, headers=AUTH) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/recommend", json={"user_id": self.user, "k": 10})
                    if r.status_code == 200:
                        self.seen.append(r.json()["model_version"])
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))

    def wait_for(self, version: str, n: int = 10, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.seen) >= n and self.seen[-n:] == [version] * n:
                return
            time.sleep(0.05)
        raise SystemExit(f"the server did not answer with {version}: {self.seen[-10:]}")


def hold_back(split, share: float) -> np.ndarray:  # noqa: ANN001 - crossrec Split
    """Mask of split.train rows held back: per training user, the newest ``share``."""
    inter = split.train.interactions
    held_users = np.union1d(split.valid["user"], split.test["user"])
    trainee = ~np.isin(inter["user"].to_numpy(), held_users)
    rank = inter.groupby("user")["timestamp"].rank(method="first", ascending=False)
    size = inter.groupby("user")["user"].transform("size")
    return trainee & (rank.to_numpy() <= np.round(share * size.to_numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("configs/arts_office_cold.toml"))
    ap.add_argument("--model", default="itemknn(all)", help="label of a [[models]] entry")
    ap.add_argument("--share", type=float, default=0.1, help="newest share held back per user")
    ap.add_argument("--batch", type=int, default=250, help="events per POST /events")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console(width=130)

    from crossrec.bundle import Bundle
    from crossrec.config import load_config
    from crossrec.eval.ranking import evaluate
    from crossrec.experiment import build_model, load_dataset, make_split, model_label
    from crossrec.models.base import FitOptions

    cfg = load_config(args.config)
    spec = next((s for s in cfg.model_specs() if model_label(s) == args.model), None)
    if spec is None:
        raise SystemExit(f"{args.config}: no [[models]] entry labelled {args.model!r}")
    split = make_split(load_dataset(cfg.data), cfg.split, args.seed)
    back = hold_back(split, args.share)
    inter = split.train.interactions
    trainee_rows = int((~np.isin(inter["user"], np.union1d(split.valid["user"],
                                                           split.test["user"]))).sum())
    options = FitOptions(target=split.target, sources=tuple(cfg.split.source), seed=args.seed,
                         progress=False)
    config = {"experiment": cfg.model_dump(), "model": spec, "seed": args.seed,
              "target": split.target, "sources": list(cfg.split.source),
              "split": split.describe()}

    def test_eval(model, train):  # noqa: ANN001, ANN202 - per-user NDCG@10 / Recall@10
        from crossrec.data.split import Split

        s = Split(train, split.valid, split.test, split.target, split.name)
        return evaluate(model, s, part="test", ks=(10,), metrics=("ndcg", "recall"),
                        batch_size=cfg.eval.batch_size)

    reference = build_model(spec).fit(split.train, options)
    ref_eval = test_eval(reference, split.train)
    ref = {"ndcg@10": ref_eval.value("ndcg", 10), "recall@10": ref_eval.value("recall", 10),
           "users": int(ref_eval.per_user["user"].nunique())}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        v1_train = split.train.with_interactions(inter[~back])
        t0 = time.perf_counter()
        v1_model = build_model(spec).fit(v1_train, options)
        v1_fit = time.perf_counter() - t0
        Bundle(v1_model, v1_train, config).save(work / "v1")
        from crossrec.eval.significance import paired_test

        paired = paired_test(ref_eval, test_eval(v1_model, v1_train), "ndcg@10")
        store = work / "store"
        crossrec("update", str(store), "--add", str(work / "v1"))
        v1 = Bundle.load(work / "v1").version
        proc, port = start_server(store, work, 1, [])
        url = f"http://127.0.0.1:{port}"
        user = str(split.train.users.raw(split.test["user"].to_numpy()[:1])[0])
        stream = Stream(url, user)
        stream.start()
        try:
            stream.wait_for(v1)
            rows = inter[back]
            users = split.train.users.raw(rows["user"].to_numpy())
            items = split.train.item_ids(rows["item"].to_numpy())
            domains = np.asarray(split.train.domains, dtype=object)[rows["domain"].to_numpy()]
            body = [{"event_id": f"replay-{i}", "user_id": str(u), "domain": str(d),
                     "item_id": str(it), "timestamp": int(t)}
                    for i, (u, d, it, t) in enumerate(zip(users, domains, items,
                                                          rows["timestamp"], strict=True))]
            t0 = time.perf_counter()
            with httpx.Client(base_url=url, timeout=60.0, headers=AUTH) as http:
                stored = 0
                for i in range(0, len(body), args.batch):
                    r = http.post("/events", json={"events": body[i:i + args.batch]})
                    r.raise_for_status()
                    stored += r.json()["stored"]
                replay_s = time.perf_counter() - t0
                command = ["update", str(store), "--events", str(work / "events.sqlite"),
                           "--eval-config", str(args.config), "--activate", "--json",
                           str(work / "update.json")]
                t0 = time.perf_counter()
                crossrec(*command)
                update_s = time.perf_counter() - t0
                summary = json.loads((work / "update.json").read_text())
                v2 = summary["new_version"]
                reload = http.post("/admin/reload").json()
                stream.wait_for(v2)
                crossrec("update", str(store), "--rollback")
                os.kill(proc.pid, signal.SIGHUP)
                stream.wait_for(v1)
                health = http.get("/healthz").json()["model_version"]
        finally:
            stream.stop.set()
            stream.join(timeout=60)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    ev = summary["evaluation"]["values"]
    phases = [v for v, _ in groupby(stream.seen)]
    c = summary["counts"]
    result = {
        "config": str(args.config), "model": args.model, "seed": args.seed, "share": args.share,
        "held_back_rows": int(back.sum()), "training_user_rows": trainee_rows,
        "events_posted": len(body), "events_stored": stored, "replay_seconds": replay_s,
        "counts": c, "update_seconds": update_s, "fit_seconds_v2": summary["fit_seconds"],
        "fit_seconds_v1": v1_fit, "train_rows": summary["train_rows"],
        "v1": v1, "v2": v2, "reload": reload, "health_after_rollback": health,
        "test": {"v1": {m: ev["test"][m][0] for m in ("ndcg@10", "recall@10")},
                 "v2": {m: ev["test"][m][1] for m in ("ndcg@10", "recall@10")},
                 "reference": ref},
        "valid": {"v1": {m: ev["valid"][m][0] for m in ("ndcg@10", "recall@10")},
                  "v2": {m: ev["valid"][m][1] for m in ("ndcg@10", "recall@10")}},
        "paired_test_ndcg@10_v2_minus_v1": paired,
        "valid_guard": summary["guard"], "test_users": summary["evaluation"]["n_users"]["test"],
        "stream": {"requests": len(stream.seen) + len(stream.failures),
                   "failures": len(stream.failures), "versions_in_order": phases},
        "command": "crossrec " + " ".join(command[:1] + ["STORE"] + command[2:3] + ["DB"]
                                          + command[4:7]),
    }
    t = Table(title=f"{args.model} on {split.name} ({cfg.name}, seed {args.seed}): newest "
                    f"{args.share:.0%} of the training users' rows replayed as events; "
                    f"{result['test_users']} test users")
    for col in ("version", "training rows", "test NDCG@10", "test Recall@10",
                "valid NDCG@10"):
        t.add_column(col, justify="left" if col == "version" else "right")
    t.add_row(f"v1 {v1} (without the held-back rows)", f"{summary['train_rows'][0]:,}",
              f"{result['test']['v1']['ndcg@10']:.4f}", f"{result['test']['v1']['recall@10']:.4f}",
              f"{result['valid']['v1']['ndcg@10']:.4f}")
    t.add_row(f"v2 {v2} (crossrec update, events replayed)", f"{summary['train_rows'][1]:,}",
              f"{result['test']['v2']['ndcg@10']:.4f}", f"{result['test']['v2']['recall@10']:.4f}",
              f"{result['valid']['v2']['ndcg@10']:.4f}")
    t.add_row("reference: fitted directly on all training rows", f"{len(inter):,}",
              f"{ref['ndcg@10']:.4f}", f"{ref['recall@10']:.4f}", "")
    console.print(t)
    console.print(f"held back {result['held_back_rows']:,} of {trainee_rows:,} training-user rows; "
                  f"replayed {len(body):,} events in {len(body) // args.batch + 1} POSTs, "
                  f"{replay_s:.1f}s; update read {c['read']:,}, used {c['used']:,}, duplicates "
                  f"{c['duplicates']}, unknown items {c['unknown_items']}; update {update_s:.1f}s "
                  f"(refit {summary['fit_seconds']:.1f}s); reload {reload.get('seconds')}s")
    console.print(f"test NDCG@10 v2 - v1: {paired['mean_diff']:+.4f} over {paired['n']} users, "
                  f"paired Wilcoxon p = {paired['p_wilcoxon']:.2g}, t-test p = "
                  f"{paired['p_ttest']:.2g}; metric guard (valid): "
                  f"{'passed' if summary['guard']['passed'] else 'failed'}")
    console.print(f"client: {result['stream']['requests']:,} requests, "
                  f"{result['stream']['failures']} failed; versions answered in order: "
                  f"{' -> '.join(phases)} (reload by API, rollback by SIGHUP)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
