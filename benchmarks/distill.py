"""Knowledge distillation on Arts -> Office cold-start users: teacher vs its MF and MLP students.

Run: ``OMP_NUM_THREADS=1 python benchmarks/distill.py [--teacher text_transfer] [--seed 0]
[--json PATH]``.

The split is ``configs/arts_office_cold.toml``'s (Office cold-start users, ratio 0.2, seed
``--seed``). The teacher (``--teacher``: ``text_transfer`` by default, about 12 min to fit on a
2-core CPU; ``text_zero_shot`` or ``ease`` (train_on="all") for a quick run — EASE inverts a
38k x 38k Gram matrix, which is not quick here) is fitted once with early stopping / weight
choice on the validation users, then each student (``distill`` with ``student = "mf"`` and
``"mlp"``) is fitted on its scores (``fitted_teacher``: the teacher is not refitted).

For each model: parameters and bytes (the values ``state()`` holds, and its safetensors size:
what a bundle stores), the frozen text table it needs besides (rebuilt from the encoder cache,
not stored), scoring latency per user (``model.score`` of every Office item for cold test
users, one user per call and 256 per call; best of ``--repeats`` calls, CPU ms of this process
(``time.process_time``), which does not count other jobs on a shared machine), test NDCG@10 of
the cold test users (full ranking, ``crossrec.eval.ranking.evaluate``), and for the students
the share of the teacher's NDCG@10 kept and their latency over the teacher's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "arts_office_cold.toml"
TEACHERS: dict[str, dict[str, Any]] = {
    "text_transfer": {"name": "text_transfer", "pop_weights": [0.0, 0.5, 1.0]},
    "text_zero_shot": {"name": "text_zero_shot"},
    "ease": {"name": "ease", "train_on": "all"},
}


def state_size(model: Any) -> tuple[int, int]:
    """Values in ``model.state()`` and the bytes of its safetensors file."""
    from safetensors.numpy import save

    state = {k: np.ascontiguousarray(v) for k, v in model.state().items()}
    return sum(int(v.size) for v in state.values()), len(save(state))


def text_table_bytes(model: Any) -> int:
    """Bytes of the frozen text vectors the model scores with but does not store (0: none)."""
    text = getattr(model, "text", None)
    return int(text.numel() * text.element_size()) if isinstance(text, torch.Tensor) else 0


def latency_ms(model: Any, users: np.ndarray, target: str, batch: int, repeats: int) -> float:
    """Best CPU ms per user of ``model.score`` over ``repeats`` calls of ``batch`` users."""
    from crossrec.models.base import Query

    best = float("inf")
    with torch.no_grad():
        model.score(Query(torch.from_numpy(users[:batch])), target)  # warm-up (caches)
        for r in range(repeats):
            start = (r * batch) % max(1, len(users) - batch + 1)
            query = Query(torch.from_numpy(users[start : start + batch]))
            t0 = time.process_time()
            model.score(query, target)
            best = min(best, time.process_time() - t0)
    return 1000.0 * best / batch


def measure(label: str, model: Any, split: Any, users: np.ndarray, fit_s: float,
            repeats: int) -> dict[str, Any]:
    """One table row: sizes, latency at batch 1 and 256, test NDCG@10 (cold users)."""
    from crossrec.eval.ranking import evaluate

    params, nbytes = state_size(model)
    ndcg = evaluate(model, split, part="test", ks=(10,), metrics=("ndcg",)).value("ndcg@10")
    return {"model": label, "parameters": params, "bytes": nbytes,
            "text_table_bytes": text_table_bytes(model), "fit_s": round(fit_s, 1),
            "batch1_ms": latency_ms(model, users, split.target, 1, repeats),
            "batch256_ms": latency_ms(model, users, split.target, 256, max(3, repeats // 10)),
            "ndcg10": ndcg}


def table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in ("model", "params", "bytes MB", "+ text MB", "fit s", "ms/user b=1",
                "ms/user b=256", "NDCG@10", "kept", "time b=1", "time b=256"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        kept = f"{100 * r['kept']:.1f} %" if "kept" in r else ""
        t1 = f"{100 * r['time_ratio_b1']:.1f} %" if "kept" in r else ""
        t256 = f"{100 * r['time_ratio_b256']:.1f} %" if "kept" in r else ""
        t.add_row(r["model"], f"{r['parameters']:,}", f"{r['bytes'] / 2**20:.2f}",
                  f"{r['text_table_bytes'] / 2**20:.1f}", f"{r['fit_s']:.0f}",
                  f"{r['batch1_ms']:.3f}", f"{r['batch256_ms']:.4f}", f"{r['ndcg10']:.4f}",
                  kept, t1, t256)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", choices=sorted(TEACHERS), default="text_transfer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--students", default="mf,mlp")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--embedding-size", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--n-candidates", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=50, help="timed calls at batch 1")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from crossrec.atomic import atomic_file
    from crossrec.config import load_config
    from crossrec.experiment import build_model, fit_options, load_dataset, make_split
    from crossrec.models.distill import Distill

    console = Console(width=160)
    cfg = load_config(CONFIG)
    split = make_split(load_dataset(cfg.data), cfg.split, args.seed)
    options = fit_options(cfg, split, args.seed, progress=False)
    users = np.unique(split.truth("test")["user"].to_numpy()).astype(np.int64)
    rng = np.random.default_rng(args.seed)
    users = rng.permutation(users)
    spec = TEACHERS[args.teacher]
    console.print(f"teacher {spec}; {len(users)} cold test users, "
                  f"{split.train.info.n_domain_items(split.target)} {split.target} items")
    teacher = build_model(spec)
    t0 = time.perf_counter()
    teacher.fit(split.train, options)
    rows = [measure(args.teacher, teacher, split, users, time.perf_counter() - t0,
                    args.repeats)]
    console.print(rows[-1])
    for student in args.students.split(","):
        model = Distill({"teacher": spec, "student": student, "epochs": args.epochs,
                         "embedding_size": args.embedding_size, "alpha": args.alpha,
                         "temperature": args.temperature, "n_candidates": args.n_candidates},
                        fitted_teacher=teacher)
        t0 = time.perf_counter()
        model.fit(split.train, options)
        row = measure(f"distill({student})", model, split, users, time.perf_counter() - t0,
                      args.repeats)
        stage = model.training_summary.stages[-1]
        row.update(kept=row["ndcg10"] / rows[0]["ndcg10"],
                   time_ratio_b1=row["batch1_ms"] / rows[0]["batch1_ms"],
                   time_ratio_b256=row["batch256_ms"] / rows[0]["batch256_ms"],
                   epochs=stage.epochs, best_epoch=stage.best_epoch,
                   config=model.config.model_dump())
        rows.append(row)
        console.print({k: v for k, v in row.items() if k != "config"})
    console.print(table(rows, f"Distillation, Arts -> Office cold users, seed {args.seed}"))
    if args.json:
        out = {"command": " ".join(["python", *sys.argv]), "seed": args.seed,
               "threads": os.environ.get("OMP_NUM_THREADS"),
               "torch_threads": torch.get_num_threads(), "rows": rows}
        atomic_file(args.json, lambda p: p.write_text(json.dumps(out, indent=2, default=str)))


if __name__ == "__main__":
    main()
