"""Speed of full-ranking evaluation against its floor and against a per-user Python loop.

Run: ``python benchmarks/eval_speed.py [--users 10000] [--items 40000] [--json out.json]``.

A fake factor model scores ``U[users] @ V.T`` (random factors, ``d = 64``); every user has
about 20 random training items (masked) and 1-5 truth items. Three figures, in users per second:

* ``evaluate``: ``crossrec.eval.evaluate`` with ks = (10, 20) and its five default metrics;
* floor: the same batches of ``U[b] @ V.T`` followed by ``torch.topk`` and nothing else (no
  masking, no truth lookup, no metrics) — what any evaluation must at least spend;
* loop: one user at a time (score, mask, top-k, metrics in numpy), Cornac-style, on a subset
  of users, extrapolated.

``ratio_to_floor`` is the median, over the repeats, of floor time / evaluate time measured back
to back (robust on a shared machine); the users/s figures are the best of the repeats.
Peak memory is the process's ``ru_maxrss``; the score block of one batch is
``batch_size x items x 4`` bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from crossrec.data.dataset import SEP, MultiDomainDataset
from crossrec.data.split import Split
from crossrec.data.vocab import Vocabulary
from crossrec.eval import evaluate
from crossrec.models.base import FitOptions, Query, Recommender

DOMAIN = "items"


class Factors(Recommender):
    """``score = U[users] @ V.T``; nothing to fit."""

    name = "factors"

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        super().__init__()
        self.user_factors, self.item_factors = users, items

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Factors:
        return self

    def score(self, query: Query, domain: str) -> torch.Tensor:
        return self.user_factors[query.users] @ self.item_factors.T


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def make_split(n_users: int, n_items: int, n_train: int, rng: np.random.Generator) -> Split:
    """One domain; ``n_train`` +- 5 training items and 1-5 truth items per user, disjoint."""
    per_user = rng.integers(n_train - 5, n_train + 6, size=n_users)
    n_truth = rng.integers(1, 6, size=n_users)
    total = per_user + n_truth
    users = np.repeat(np.arange(n_users), total)
    # distinct items per user: random draws, duplicates within a user removed afterwards
    items = rng.integers(0, n_items, size=len(users))
    frame = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    rank = frame.groupby("user").cumcount().to_numpy()
    is_truth = rank < n_truth[frame["user"].to_numpy()]
    frame = frame.assign(domain=np.int8(0), rating=np.float32("nan"),
                         timestamp=np.int64(0)).astype({"user": "int32", "item": "int32"})
    dataset = MultiDomainDataset(
        name="eval-speed",
        users=Vocabulary(np.array([f"u{i}" for i in range(n_users)], dtype=object)),
        items=Vocabulary(np.array([f"{DOMAIN}{SEP}i{j}" for j in range(n_items)], dtype=object)),
        item_domain=np.zeros(n_items, np.int8),
        item_text=[""] * n_items,
        domains=(DOMAIN,),
        interactions=frame[~is_truth].reset_index(drop=True),
    )
    return Split(train=dataset, valid=frame.iloc[:0], test=frame[is_truth].reset_index(drop=True),
                 target=DOMAIN, name="synthetic")


def time_floor(model: Factors, users: np.ndarray, batch_size: int, k: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(users), batch_size):
            u = torch.as_tensor(users[s:s + batch_size])
            torch.topk(model.score(Query(u), DOMAIN), k, dim=1)
    return time.perf_counter() - start


def time_loop(model: Factors, split: Split, users: np.ndarray, k: int) -> float:
    """Per-user Python loop: score, mask, top-k, ndcg/recall/hr/mrr/precision in numpy."""
    seen = split.train.user_items(DOMAIN)
    test = split.test
    truth = {u: set(g) for u, g in test.groupby("user")["item"]}
    start = time.perf_counter()
    with torch.no_grad():
        for u in users:
            s = model.score(Query(torch.tensor([u])), DOMAIN)[0].numpy()
            s[seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = -np.inf
            top = torch.topk(torch.from_numpy(s), k).indices.numpy()
            t = truth[u]
            hits = np.array([i in t for i in top], dtype=np.float64)
            disc = 1 / np.log2(np.arange(2, k + 2))
            _ = ((hits * disc).sum() / disc[:min(len(t), k)].sum(), hits.sum() / len(t),
                 float(hits.any()), hits.sum() / k,
                 1 / (np.argmax(hits) + 1) if hits.any() else 0.0)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--items", type=int, default=40_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--train-per-user", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--loop-users", type=int, default=500)
    p.add_argument("--repeats", type=int, default=5, help="best of N timings")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--json", type=str, default=None, help="write the figures to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    split = make_split(args.users, args.items, args.train_per_user, rng)
    model = Factors(torch.randn(args.users, args.dim, generator=gen),
                    torch.randn(args.items, args.dim, generator=gen))
    ks = (10, 20)
    users = np.unique(split.test["user"].to_numpy())
    rss_setup = peak_rss_mb()

    evaluate(model, split, ks=ks, batch_size=args.batch_size, users=users[:args.batch_size])
    time_floor(model, users[:args.batch_size], args.batch_size, max(ks))  # warm-up
    t_eval, t_floor = [], []
    for i in range(args.repeats):  # interleaved pairs, order alternating: drifts hit both
        if i % 2:
            t_floor.append(time_floor(model, users, args.batch_size, max(ks)))
        start = time.perf_counter()
        result = evaluate(model, split, ks=ks, batch_size=args.batch_size)
        t_eval.append(time.perf_counter() - start)
        if not i % 2:
            t_floor.append(time_floor(model, users, args.batch_size, max(ks)))
    paired = np.array(t_floor) / np.array(t_eval)
    loop_users = users[:args.loop_users]
    t_loop = time_loop(model, split, loop_users, max(ks))

    n = len(users)
    figures = {
        "users": n,
        "items": args.items,
        "dim": args.dim,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "users_per_s": n / min(t_eval),
        "floor_users_per_s": n / min(t_floor),
        "ratio_to_floor": float(np.median(paired)),
        "loop_users_per_s": len(loop_users) / t_loop,
        "speedup_over_loop": (n / min(t_eval)) / (len(loop_users) / t_loop),
        "eval_seconds": min(t_eval),
        "floor_seconds": min(t_floor),
        "ratio_of_best_times": min(t_floor) / min(t_eval),
        "paired_ratios": [round(float(x), 3) for x in paired],
        "repeats": args.repeats,
        "load_avg_1m": os.getloadavg()[0],
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_setup_mb": rss_setup,
        "batch_scores_mb": args.batch_size * args.items * 4 / 2**20,
        "ndcg@10": result.value("ndcg", 10),
        "torch": torch.__version__,
    }
    table = Table(title=f"full-ranking evaluation: {n} users x {args.items} items, d={args.dim}")
    table.add_column("what")
    table.add_column("users/s", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row("floor (U@V.T + topk)", f"{figures['floor_users_per_s']:,.0f}",
                  f"{min(t_floor):.2f}")
    table.add_row("crossrec evaluate", f"{figures['users_per_s']:,.0f}", f"{min(t_eval):.2f}")
    table.add_row(f"per-user loop ({len(loop_users)} users)",
                  f"{figures['loop_users_per_s']:,.0f}", f"{t_loop:.2f}")
    console = Console()
    console.print(table)
    console.print(
        f"ratio to floor {figures['ratio_to_floor']:.2f}; {figures['speedup_over_loop']:.1f}x "
        f"the per-user loop; batch {args.batch_size} ({figures['batch_scores_mb']:.0f} MiB of "
        f"scores), {figures['torch_threads']} torch threads; peak RSS "
        f"{figures['peak_rss_mb']:.0f} MiB (after setup {rss_setup:.0f} MiB); users/s: best "
        f"of {args.repeats}; ratio: median of {args.repeats} back-to-back pairs (ratio of the "
        f"best times {figures['ratio_of_best_times']:.2f}); load average "
        f"{figures['load_avg_1m']:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
