"""What the ranker costs: its fit against the summed fits of its candidate sources, and its
scoring time per user against its first source, on one split.

Run: ``OMP_NUM_THREADS=2 python benchmarks/ranker_cost.py CONFIG [--ranker LABEL] [--seed 0]
[--set key=value ...] [--json PATH]``.

Fits every source of the ranker table once on the split's training part (nothing shared),
then the ranker itself (which fits each source twice: on its episode rows and on the whole
training split, plus features and LightGBM), and prints the ratio; then scores the first
``--users`` validation users one at a time and in one batch with the ranker and with its first
source. The order of the two fits alternates with the seed's parity; the load average is
printed with every figure (on a shared machine, wall time includes waiting for a core).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--ranker", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def per_user_ms(model, users: np.ndarray, domain: str) -> tuple[float, float]:  # noqa: ANN001
    """Milliseconds per user scoring one at a time, and in one batch."""
    from crossrec.models.base import Query

    with torch.no_grad():
        start = time.perf_counter()
        for u in users:
            model.score(Query(torch.tensor([int(u)])), domain)
        single = (time.perf_counter() - start) * 1000 / len(users)
        start = time.perf_counter()
        model.score(Query(torch.from_numpy(users.astype(np.int64))), domain)
        batch = (time.perf_counter() - start) * 1000 / len(users)
    return single, batch


def main() -> int:
    from crossrec.config import load_config
    from crossrec.experiment import fit_options, load_dataset, make_split
    from crossrec.models import build_model, model_label
    from crossrec.models.ranker.candidates import fit_sources, source_label

    args = parse()
    cfg = load_config(args.config, args.overrides)
    specs = {model_label(s): s for s in cfg.model_specs()}
    label = args.ranker or next(k for k, s in specs.items() if s["name"] == "ranker")
    spec = {k: v for k, v in specs[label].items() if k != "label"}
    split = make_split(load_dataset(cfg.data), cfg.split, args.seed)
    options = fit_options(cfg, split, args.seed, progress=False)
    out: dict = {"config": str(args.config), "ranker": label, "seed": args.seed, "sources": {}}

    def fit_all_sources() -> list:
        models = []
        for s in build_model({"name": "ranker", **spec}).config.candidates:
            start = time.perf_counter()
            models += fit_sources([s], split.train, options)
            out["sources"][source_label(s)] = time.perf_counter() - start
        return models

    def fit_ranker():  # noqa: ANN202
        start = time.perf_counter()
        model = build_model({"name": "ranker", **spec}).fit(split.train, options)
        out["ranker_fit_s"] = time.perf_counter() - start
        return model

    steps = [fit_all_sources, fit_ranker]
    if args.seed % 2:
        steps = steps[::-1]
    results = {f.__name__: f() for f in steps}
    sources, ranker = results["fit_all_sources"], results["fit_ranker"]
    out["sources_fit_s"] = sum(out["sources"].values())
    out["ratio"] = out["ranker_fit_s"] / out["sources_fit_s"]
    out["load"] = os.getloadavg()[0]
    print("sources: " + ", ".join(f"{k} {v:.1f}s" for k, v in out["sources"].items()))
    print(f"ranker fit {out['ranker_fit_s']:.1f}s = {out['ratio']:.2f} x the summed source "
          f"fits ({out['sources_fit_s']:.1f}s); load {out['load']:.1f}")
    users = np.unique(split.truth("valid")["user"].to_numpy())[:args.users]
    for name, model in (("ranker", ranker), (next(iter(out["sources"])), sources[0])):
        single, batch = per_user_ms(model, users, split.target)
        out[f"{name}_ms_per_user"] = {"batch_1": single, f"batch_{len(users)}": batch}
        print(f"{name}: {single:.1f} ms/user one at a time, {batch:.1f} ms/user in a batch of "
              f"{len(users)}; load {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
