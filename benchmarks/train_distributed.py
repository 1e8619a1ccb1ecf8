"""Epoch time of ``crossrec train`` in one process, under ``torchrun`` and on Ray Train workers.

Run: ``python benchmarks/train_distributed.py [--model bpr|sasrec] [--users 20000] [--epochs 5]
[--json out.json]``.

A synthetic two-domain set (``make_two_domain``, 3000 + 2000 items) is saved as a prepared
dataset and one model is trained for ``--epochs`` epochs (no early stop): BPR-MF (d = 64,
global batch 4096; little compute per step, dense embedding tables) or SASRec (2 Transformer
layers, d = 64, L = 20, full softmax over the 5000 items, global batch 256; compute-bound). The
same command runs four ways, each in its own process tree:

* ``1 process, 1 thread`` and ``1 process, 2 threads`` (``OMP_NUM_THREADS``);
* ``torchrun 2`` (``torchrun --standalone --nproc_per_node 2 -m crossrec train``, 1 thread each);
* ``ray 2`` (``crossrec train --workers 2``, a local Ray cluster started by the command).

``epoch s`` is the median of the epochs after the first in ``train_log.jsonl`` (training plus
rank 0's validation); ``wall s`` is the whole command (imports, data, Ray start-up,
evaluation, bundle). NDCG@10 is on the valid and test users of the split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crossrec.testing import make_two_domain

MODELS = {
    "bpr": {"name": "bpr", "train_on": "all", "batch_size": 4096, "embedding_size": 64},
    "sasrec": {"name": "sasrec", "embedding_size": 64, "max_seq_len": 20, "n_layers": 2,
               "batch_size": 256},
}


def _config(root: Path, model: str, users: int, epochs: int) -> Path:
    data = make_two_domain(n_users=users, n_items=(3000, 2000), n_overlap=int(0.7 * users),
                           seed=0)
    data.save(root / "data")
    cfg = root / "exp.toml"
    cfg.write_text(f"""name = "train-distributed"
[data]
prepared = "{(root / 'data').as_posix()}"
[split]
kind = "cold_start_users"
source = ["source"]
target = "target"
ratio = 0.3
[eval]
ks = [10]
[[models]]
epochs = {epochs}
patience = {epochs}
""" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in MODELS[model].items()) + "\n")
    return cfg


def _ndcg(out: Path, part: str) -> float:
    summary = json.loads((out / "metrics.json").read_text())[part]["summary"]
    return next(r["value"] for r in summary
                if r["metric"] == "ndcg" and r["k"] == 10 and r["group"] == "all")


def _run(name: str, command: list[str], threads: int, root: Path) -> dict:
    out = root / name.replace(" ", "-").replace(",", "")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "CROSSREC_CACHE": str(root / "cache")}
    start = time.perf_counter()
    r = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {"run": name, "epochs": len(log),
            "epoch_s": round(statistics.median(x["seconds"] for x in log[1:] or log), 3),
            "wall_s": round(wall, 1), "valid_ndcg@10": round(_ndcg(out, "valid"), 4),
            "test_ndcg@10": round(_ndcg(out, "test"), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="bpr")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--runs", default="1t,2t,torchrun,ray",
                    help="which runs: 1t, 2t (one process, 1 or 2 threads), torchrun, ray")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="crossrec-train-distributed-") as tmp:
        root = Path(tmp)
        cfg = _config(root, args.model, args.users, args.epochs)
        train = [sys.executable, "-m", "crossrec", "train", str(cfg)]
        runs = {"1t": ("1 process, 1 thread", train, 1),
                "2t": ("1 process, 2 threads", train, 2),
                "torchrun": ("torchrun 2", [sys.executable, "-m", "torch.distributed.run",
                                            "--standalone", "--nproc_per_node", "2", "-m",
                                            "crossrec", "train", str(cfg)], 1),
                "ray": ("ray 2", [*train, "--workers", "2"], 1)}
        rows = [_run(*runs[key.strip()], root) for key in args.runs.split(",")]
        stats = json.loads((root / "data" / "meta.json").read_text())["stats"]
        n_inter = sum(d["interactions"] for d in stats["domains"].values())
    spec = MODELS[args.model]
    table = Table(title=f"{args.model}, {args.users} users, {n_inter} interactions, global "
                        f"batch {spec['batch_size']}, {args.epochs} epochs, {os.cpu_count()} CPUs")
    for col in rows[0]:
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": spec, "users": args.users,
                                         "interactions": n_inter,
                                         "epochs": args.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
