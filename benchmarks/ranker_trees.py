"""The ranker's trees: LightGBM's predict against the compiled trees (lleaves), same rows.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ranker_trees.py --bundle runs/ranker-bundle/bundle
[--users 256] [--batch 16] [--repeats 5] [--json PATH]``.

Builds the candidate feature rows of ``--users`` training users of the bundle's target domain
(in batches of ``--batch``, as the server's batcher scores them), then times the ensemble's
prediction of every batch with LightGBM (one ``predict`` per bagged booster, one thread) and
with the compiled trees (the boosters merged, one native call), alternating which goes first
in each repeat. Prints the milliseconds per user (median over repeats), the ratio, the largest
score difference and whether every user's top 10 is the same, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="a ranker bundle directory")
    p.add_argument("--users", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def top10_same(cands: list, a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Whether every batch row's 10 best candidates are the same, in the same order."""
    for c, x, y in zip(cands, a, b, strict=True):
        for r in np.unique(c.rows):
            at = np.flatnonzero(c.rows == r)
            if not np.array_equal(at[np.argsort(-x[at], kind="stable")[:10]],
                                  at[np.argsort(-y[at], kind="stable")[:10]]):
                return False
    return True


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    from crossrec.bundle import Bundle, BundleError
    from crossrec.models.base import Query
    from crossrec.models.ranker.compiled import available, compile_trees

    args = parse()
    if args.users < 1 or args.batch < 1 or args.repeats < 1:
        raise SystemExit("--users, --batch and --repeats must be at least 1")
    if not available():
        raise SystemExit("lleaves is not installed: pip install 'crossrec[trees]'")
    try:
        bundle = Bundle.load(args.bundle)
    except BundleError as exc:
        raise SystemExit(str(exc)) from None
    model, domain = bundle.model, bundle.target
    if not hasattr(model, "booster"):
        raise SystemExit(f"{args.bundle}: not a ranker bundle ({bundle.config['model']['name']})")
    users = np.random.default_rng(args.seed).choice(
        bundle.train.n_users, min(args.users, bundle.train.n_users), replace=False)
    batches = [users[a:a + args.batch] for a in range(0, len(users), args.batch)]
    cands, rows = [], []
    for b in batches:
        c, x = model._candidates(model.train_data, Query(torch.from_numpy(b)), domain)
        cands.append(c)
        rows.append(x)
    start = time.perf_counter()
    trees = compile_trees(model.booster.boosters)
    compile_s = time.perf_counter() - start
    contenders = {"lightgbm": lambda x: model.booster.predict(x, num_threads=1),
                  "compiled": trees.predict}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    loads = []
    for rep in range(args.repeats):
        order = list(contenders) if rep % 2 == 0 else list(contenders)[::-1]
        for name in order:
            start = time.perf_counter()
            for x in rows:
                contenders[name](x)
            times[name].append((time.perf_counter() - start) * 1000 / len(users))
        loads.append(os.getloadavg()[0])
    a = [contenders["lightgbm"](x) for x in rows]
    b = [contenders["compiled"](x) for x in rows]
    ms = {k: float(np.median(v)) for k, v in times.items()}
    out = {"bundle": str(args.bundle), "users": len(users), "batch": args.batch,
           "rows_per_user": float(sum(len(x) for x in rows) / len(users)),
           "trees": int(sum(bst.num_trees() for bst in model.booster.boosters)),
           "ms_per_user": ms, "ratio": ms["lightgbm"] / ms["compiled"],
           "max_abs_diff": float(max(np.abs(x - y).max() for x, y in zip(a, b, strict=True))),
           "top10_same": top10_same(cands, a, b), "compile_s": compile_s,
           "loadavg": [min(loads), max(loads)]}
    table = Table(title=f"ranker trees: {out['trees']} trees, {out['rows_per_user']:.0f} "
                        f"candidate rows a user, batches of {args.batch}, {len(users)} users")
    for col in ("predict", "ms a user (median)", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("LightGBM", f"{ms['lightgbm']:.3f}", "1.00")
    table.add_row("compiled (lleaves)", f"{ms['compiled']:.3f}", f"{out['ratio']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"largest score difference {out['max_abs_diff']:.2e}; every top 10 the same: "
                  f"{out['top10_same']}; compile {compile_s:.1f} s (cached after the first); "
                  f"load {out['loadavg'][0]:.1f}-{out['loadavg'][1]:.1f}")
    if args.json:
        try:
            args.json.write_text(json.dumps(out, indent=2))
        except OSError as exc:
            raise SystemExit(f"--json {args.json}: {exc.strerror}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
