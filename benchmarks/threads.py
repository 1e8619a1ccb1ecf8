"""crossrec's default thread count against 1 and 2 threads, quiet and under a competing load.

Run: ``python benchmarks/threads.py [--repeats 5] [--epochs 3] [--json PATH]``.

Two steps are timed on MovieLens-100k, Comedy -> Drama cold-start users
(``configs/movielens_genre_cold.toml``, seed 0): one BPR epoch (``train_on = "all"``, the
median of ``--epochs`` epochs) and the full-ranking evaluation of the test users (the mean of
ten in a row, the best of three such blocks). Each contender runs in a fresh process, so torch
starts with the thread count it was given: ``default`` (no ``CROSSREC_THREADS`` /
``OMP_NUM_THREADS``: ``crossrec.threads`` decides), ``1`` and ``2`` (``CROSSREC_THREADS``).
The contenders run in an order that changes every repeat (each goes first once in three
repeats), and the figure of each is its best repeat. The *loaded* phase keeps one busy-loop
process per CPU running throughout (what another user's job does to a shared machine).

The ratio is ``min(t1, t2) / t_default``: 1.0 means the default is as fast as the better fixed
count; the target is >= 0.95 in both steps and both phases. The load average (1 minute) at the
start and end of each phase and the CPUs found busy just before it are printed with the table:
a machine shared with other work is never quiet, and the figures say how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "movielens_genre_cold.toml"
CONTENDERS = ("default", "1", "2")
TARGET = 0.95
STEPS = ("epoch_s", "eval_s")
EVALS = 10


def child(epochs: int) -> dict[str, Any]:
    """Time one BPR epoch and one evaluation in this process (the env sets the threads)."""
    from crossrec.threads import configure

    used = configure()  # what `crossrec ...` does first
    import torch

    from crossrec.config import load_config
    from crossrec.data.load import load_dataset, make_split
    from crossrec.eval.run import run
    from crossrec.models import build_model
    from crossrec.models.base import FitOptions
    from crossrec.training.trainer import Trainer

    cfg = load_config(CONFIG)
    split = make_split(load_dataset(cfg.data), cfg.split, 0)
    times: list[float] = []
    losses: list[float] = []
    inner = Trainer._epoch

    def timed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        start = time.perf_counter()
        loss = inner(self, *args, **kwargs)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
        return loss

    Trainer._epoch = timed  # instrumentation of this benchmark process only
    model = build_model({"name": "bpr", "train_on": "all", "epochs": epochs})
    model.fit(split.train, FitOptions(target=split.target, sources=tuple(cfg.split.source),
                                      seed=0, progress=False))
    evals, ndcg = [], 0.0
    for _ in range(3):  # blocks of EVALS evaluations (one is ~15 ms)
        start = time.perf_counter()
        for _ in range(EVALS):
            res = run(model, split, cfg.eval, part="test", seed=0)
        evals.append((time.perf_counter() - start) / EVALS)
        ndcg = float(res.value("ndcg@10"))
    return {"threads": used, "torch_threads": torch.get_num_threads(),
            "epoch_s": statistics.median(times), "epochs_s": times, "eval_s": min(evals),
            "last_loss": losses[-1], "ndcg@10": ndcg}


def run_child(contender: str, epochs: int) -> dict[str, Any]:
    """One contender in a fresh process: its JSON line."""
    from crossrec.threads import ENV, THREAD_VARS

    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARS, ENV)}
    if contender != "default":
        env[ENV] = contender
    out = subprocess.run([sys.executable, __file__, "--child", "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"contender {contender} failed: {out.stderr[-2000:]}")
    return {"contender": contender, **json.loads(out.stdout.strip().splitlines()[-1])}


def start_load(n: int) -> list[subprocess.Popen]:
    """``n`` busy-loop processes (one per CPU): a competing load."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def phase(loaded: bool, repeats: int, epochs: int) -> dict[str, Any]:
    """All contenders, ``repeats`` times in a changing order, quiet or under load."""
    from crossrec.threads import allowed_cpus, busy_cpus

    cpus = allowed_cpus()
    busy_before = busy_cpus(1.0)
    load = start_load(cpus) if loaded else []
    try:
        if loaded:
            time.sleep(1.0)
        load_start = os.getloadavg()[0]
        runs: list[dict[str, Any]] = []
        for r in range(repeats):
            k = r % len(CONTENDERS)
            order = CONTENDERS[k:] + CONTENDERS[:k]
            order = order if r % 2 == 0 else order[::-1]
            runs.extend({"repeat": r, **run_child(c, epochs)} for c in order)
        load_end = os.getloadavg()[0]
    finally:
        for p in load:
            p.kill()
            p.wait()
    best = {c: {s: min(x[s] for x in runs if x["contender"] == c) for s in STEPS}
            for c in CONTENDERS}
    chosen = sorted({x["threads"] for x in runs if x["contender"] == "default"})
    ratio = {s: min(best["1"][s], best["2"][s]) / best["default"][s] for s in STEPS}
    return {"phase": "loaded" if loaded else "quiet", "busy_loops": len(load),
            "busy_cpus_before": round(busy_before, 2), "load_avg_start": load_start,
            "load_avg_end": load_end, "default_threads": chosen, "best_s": best,
            "ratio": ratio, "meets_target": all(v >= TARGET for v in ratio.values()),
            "runs": runs}


def print_table(result: dict[str, Any]) -> None:
    """The summary table on stdout."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"threads: BPR epoch and evaluation, MovieLens-100k genre cold, best of "
                    f"{result['repeats']} (ratio = best of 1/2 threads / default)")
    for col in ("phase", "load 1m start/end", "step", "default s (threads)", "1 thread s",
                "2 threads s", "ratio", ">= 0.95"):
        t.add_column(col)
    for p in result["phases"]:
        for s in STEPS:
            b = p["best_s"]
            t.add_row(p["phase"], f"{p['load_avg_start']:.2f}/{p['load_avg_end']:.2f}",
                      "BPR epoch" if s == "epoch_s" else "evaluation",
                      f"{b['default'][s]:.3f} ({','.join(map(str, p['default_threads']))})",
                      f"{b['1'][s]:.3f}", f"{b['2'][s]:.3f}", f"{p['ratio'][s]:.2f}",
                      "yes" if p["ratio"][s] >= TARGET else "NO")
    Console(width=160).print(t)
    print(f"{result['machine']}; {result['date']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs of every contender per phase")
    ap.add_argument("--epochs", type=int, default=3, help="BPR epochs per run (median taken)")
    ap.add_argument("--phases", default="quiet,loaded", help="quiet, loaded or both")
    ap.add_argument("--json", type=Path, help="also write the figures and every run here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.epochs)))
        return
    import torch

    from crossrec.threads import allowed_cpus

    result = {
        "command": "python benchmarks/threads.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {allowed_cpus()} CPUs "
                   f"allowed of {os.cpu_count()}, torch {torch.__version__}, "
                   f"nice {os.nice(0)}",
        "repeats": args.repeats, "epochs": args.epochs, "target": TARGET,
        "phases": [phase(p == "loaded", args.repeats, args.epochs)
                   for p in args.phases.split(",")],
    }
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
