"""Few-shot target users: NDCG@10 against n, the target interactions each test user brings.

Run: ``OMP_NUM_THREADS=1 python benchmarks/fewshot.py CONFIG [--shots 0,1,2,5,10]
[--seeds 0,1,2] [--only LABELS] [--set key=value ...] [--out DIR] [--json PATH]``.

CONFIG is a benchmark config whose split has cold truth users (``cold_start_users`` or CDRIB's
``predefined``). For every ``n`` in ``--shots`` the split is made few-shot
(``crossrec.data.split.few_shot``: ``split.n_shots = n``, ``split.shot_pool = max(shots)``),
so every ``n`` is scored on the same users and the same truth items: the users with more than
``max(shots)`` target interactions held out, each bringing its first ``n`` to training. Every
model of the config (or of ``--only``) is fitted and evaluated with ``crossrec.experiment
.benchmark`` for every seed (model choices on the validation users, as everywhere); finished
(model, seed, n) runs are kept in ``OUT/runs`` and read back on a rerun. The report group is
``all`` (at n > 0 the test users are no longer cold).

Prints the table (mean +/- std over seeds), writes ``OUT/fewshot.png`` (error bars: std over
seeds) and, with ``--json``, ``{"shots": [...], "metric": ..., "test_users": ...,
"models": {label: {"mean": [...], "std": [...]}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crossrec.config import load_config
from crossrec.experiment import benchmark, model_label


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--shots", default="0,1,2,5,10")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", default=None, help="comma-separated model labels or names")
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def main() -> int:
    args = parse()
    console = Console()
    shots = sorted({int(s) for s in args.shots.split(",")})
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / f"fewshot-{base.name}"
    out.mkdir(parents=True, exist_ok=True)
    specs = base.model_specs()
    if args.only:
        wanted = set(args.only.split(","))
        specs = [s for s in specs if model_label(s) in wanted or s["name"] in wanted]
        if not specs:
            console.print(f"[red]--only {args.only}: no such model in {args.config}")
            return 2
    metric, k = args.metric.split("@")
    results: dict[str, dict[str, list[float]]] = {model_label(s): {"mean": [], "std": []}
                                                  for s in specs}
    test_users: list[int] = []
    for n in shots:
        cfg = base.model_copy(update={
            "models": specs, "model": None,
            "split": base.split.model_copy(update={"n_shots": n, "shot_pool": max(shots)}),
            "train": base.train.model_copy(update={"seeds": seeds}),
            "eval": base.eval.model_copy(update={"report_group": "all"})})
        start = time.perf_counter()
        console.rule(f"n = {n} target interactions per test user")
        res = benchmark(cfg, progress=False, runs=out / "runs",
                        log=lambda line: console.print(line, highlight=False))
        rows = res.rows[(res.rows["group"] == "all") & (res.rows["metric"] == metric)
                        & (res.rows["k"] == int(k))].set_index("model")
        for label, r in results.items():
            r["mean"].append(float(rows.loc[label, "mean"]))
            r["std"].append(float(rows.loc[label, "std"]))
        test_users.append(int(rows["n_users"].iloc[0]))
        console.print(f"n = {n}: {time.perf_counter() - start:.0f} s, "
                      f"{test_users[-1]} test users")
    table = Table(title=f"{base.name}: {args.metric} of the test users against n "
                        f"(pool {max(shots)}, seeds {args.seeds})")
    table.add_column("model")
    for n in shots:
        table.add_column(f"n = {n}", justify="right")
    for label, r in results.items():
        table.add_row(label, *(f"{m:.4f} ± {s:.4f}" for m, s in zip(r["mean"], r["std"],
                                                                      strict=True)))
    console.print(table)
    plot(out / "fewshot.png", shots, results, f"{base.name}: {args.metric} vs n "
         f"({test_users[0]} test users, {len(seeds)} seeds)", args.metric)
    console.print(f"plot: {out / 'fewshot.png'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "config": str(args.config), "shots": shots, "shot_pool": max(shots), "seeds": seeds,
            "metric": args.metric, "test_users": test_users, "models": results}, indent=2))
    return 0


def plot(path: Path, shots: list[int], results: dict[str, dict[str, list[float]]],
         title: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, r in results.items():
        ax.errorbar(shots, r["mean"], yerr=r["std"], marker="o", capsize=3, label=label)
    ax.set_xlabel("target interactions per test user in training (n)")
    ax.set_ylabel(metric)
    ax.set_xticks(shots)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
