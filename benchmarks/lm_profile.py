"""Language-model user profiles in text_zero_shot: Arts -> Office cold-start users, with and
without a SmolLM2-135M-Instruct profile of each cold user's Arts titles.

Run: ``python benchmarks/lm_profile.py [--config configs/text-arts-office.toml] [--seed 0]
[--max-seconds 900] [--max-users N] [--batch-size 8] [--max-new-tokens 32] [--threads 1]
[--json PATH]``.

The data and split come from CONFIG (``cold_start_users``, ratio 0.2: the cold users' Office
interactions are held out, half validate, half test; full ranking of every Office item).
``text_zero_shot`` is fitted twice with ``crossrec.experiment.fit_and_evaluate`` (popularity
weight chosen on the valid users, as in the config): as it is, and with ``profile`` on, where
the model profiles its cold users (Arts history, no Office history: exactly the valid + test
users of this split) and chooses the profile weight on the valid users. Generation is bounded
by ``--max-seconds`` (and ``--max-users``): with a bound, the profiled users are a sample in
titles-hash order (pseudo-random); profiles are cached under ``$CROSSREC_CACHE/profiles``, so a
rerun generates only what is missing. Metrics (NDCG@10, Recall@10) are printed for all cold
users and for the profiled ones (the only users whose scores can change).

``--threads`` sets torch's CPU threads for the whole process (1 is the fast setting when other
jobs keep the cores busy: two threads on two busy cores ran the language model ~15x slower).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

METRICS = ("ndcg@10", "recall@10")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=Path("configs/text-arts-office.toml"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=900.0,
                   help="generation bound in seconds (model loading included)")
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fixed-weights", default="",
                   help="comma-separated profile weights also evaluated as fixed (not chosen)")
    p.add_argument("--examples", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def subset_means(result, users: np.ndarray) -> dict[str, float]:  # noqa: ANN001
    """Mean of each metric over the rows of ``result.per_user`` whose user is in ``users``."""
    frame = result.per_user[result.per_user["user"].isin(users)]
    return {m: float(frame[m].mean()) if len(frame) else float("nan") for m in METRICS}


def main() -> int:
    args = parse()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from crossrec.config import load_config
    from crossrec.data.sequence import user_sequences
    from crossrec.experiment import fit_and_evaluate, load_dataset, make_split

    torch.set_num_threads(args.threads)
    console = Console(width=110)
    cfg = load_config(args.config, ["eval.ks=[10]", "eval.metrics=['ndcg','recall']"])
    dataset = load_dataset(cfg.data)
    split = make_split(dataset, cfg.split, args.seed)
    console.print(f"{cfg.name}: {split.describe()}")
    profile = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
               "max_seconds": args.max_seconds, "max_users": args.max_users,
               "threads": args.threads}
    specs = {"text_zero_shot": {"name": "text_zero_shot"},
             "text_zero_shot+profile": {"name": "text_zero_shot", "label": "+profile",
                                        "profile": profile}}
    for v in (float(x) for x in args.fixed_weights.split(",") if x.strip()):
        specs[f"+profile(v={v:g})"] = {"name": "text_zero_shot", "label": f"+profile(v={v:g})",
                                      "profile": profile, "profile_weight": v}
    runs, seconds = {}, {}
    for label, spec in specs.items():
        start = time.perf_counter()
        runs[label] = fit_and_evaluate(cfg, spec, split, args.seed,
                                       progress="profile" in spec)  # profiler progress lines
        seconds[label] = time.perf_counter() - start
        console.print(f"{label}: fitted and evaluated in {seconds[label]:.0f} s")
    model = runs["text_zero_shot+profile"].model
    stats = model.validation["profiles"]
    profiled = model.profile_users if model.profile_users is not None else np.zeros(0, int)
    rows = []
    for label, run in runs.items():
        for part in ("valid", "test"):
            res = getattr(run, part)
            for group, users in (("cold", res.per_user["user"].unique()),
                                 ("cold, profiled", profiled)):
                n = int(res.per_user["user"].isin(users).sum())
                rows.append({"model": label, "part": part, "users": group, "n_users": n,
                             **subset_means(res, users)})
    table = Table(title=f"{cfg.name}, seed {args.seed}: text_zero_shot with LM profiles")
    for col in ("model", "part", "users", "n_users", *METRICS):
        table.add_column(col, justify="left" if col in ("model", "part", "users") else "right")
    for r in rows:
        table.add_row(r["model"], r["part"], r["users"], f"{r['n_users']:,}",
                      *(f"{r[m]:.4f}" for m in METRICS))
    console.print(table)
    console.print(
        f"profiles: {stats['users']:,} cold users, {stats['profiled']:,} profiled "
        f"(generated {stats['generated']:,}, from cache {stats['from_cache']:,}, "
        f"skipped by the bound {stats['skipped']:,}); generation {stats['seconds']:.0f} s, "
        f"{stats['users_per_second']:.2f} users/s; chosen popularity weight {model.weight}, "
        f"profile weight {model.profile_weight}; validation NDCG@10 by profile weight: "
        f"{model.validation.get('profile_curve')}")
    users = model.profiled_users(split.train, runs["text_zero_shot"].model.options)
    seq = user_sequences(split.train, tuple(cfg.split.source))
    profiles = model.profile_result.profiles
    examples = []
    for r in [r for r, p in enumerate(profiles) if p is not None][: args.examples]:
        titles = [split.train.item_text[i] for i in seq.of(users[r])][::-1][:5]
        examples.append({"user": int(users[r]), "newest_titles": titles, "profile": profiles[r]})
        console.print(f"user {users[r]}: {titles}\n  -> {profiles[r]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "config": str(args.config), "seed": args.seed, "profiler": profile, "rows": rows,
            "profiles": stats, "popularity_weight": model.weight,
            "profile_weight": model.profile_weight, "validation": model.validation,
            "seconds": seconds, "examples": examples}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
