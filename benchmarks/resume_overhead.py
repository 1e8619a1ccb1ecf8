"""Cost of resumable training: BPR fits with and without a run directory, and one resume point.

Run: ``python benchmarks/resume_overhead.py [--repeats 5] [--epochs 5]``. With a run directory
every epoch writes a resume point (weights, the stage's best weights, Adam's state, RNG states;
``crossrec.training.checkpoint``) plus the existing log line and best-weights file. Prints the
fit time of both kinds (mean ± std over repeats, after one warm-up fit) and the time and size of
one resume point of the same model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from crossrec.models.base import FitOptions
from crossrec.models.baselines.bpr import BPR
from crossrec.testing import make_two_domain
from crossrec.training.checkpoint import RESUME_DIR, ResumePoint, capture_rng, save_resume_point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data = make_two_domain(n_users=2000, n_items=(3000, 2000), n_overlap=1500)

    def fit(run_dir: Path | None) -> tuple[float, BPR]:
        start = time.perf_counter()
        model = BPR(embedding_size=64, epochs=args.epochs).fit(
            data, FitOptions(target="target", progress=False, run_dir=run_dir))
        return time.perf_counter() - start, model

    _, model = fit(None)  # warm-up
    times: dict[str, list[float]] = {"no run dir": [], "run dir (resume points)": []}
    for _ in range(args.repeats):
        times["no run dir"].append(fit(None)[0])
        with tempfile.TemporaryDirectory() as d:
            times["run dir (resume points)"].append(fit(Path(d))[0])
    n_params = sum(p.numel() for p in model.parameters())
    print(f"BPR, {n_params:,} parameters, {len(data.interactions):,} interactions, "
          f"{args.epochs} epochs, {args.repeats} repeats")
    for name, values in times.items():
        print(f"  fit, {name}: {statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} s")

    optimizer = torch.optim.Adam(model.parameters())
    optimizer.zero_grad()
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()  # Adam state exists
    state = model.state_dict()
    saves, size = [], 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            save_resume_point(Path(d), ResumePoint(
                plan=[["train", args.epochs]], stage_index=0, epoch=1, stopped=False,
                best_valid=0.0, best_epoch=1, bad_epochs=0, loss=0.0, seconds=0.0, log_lines=1,
                model=state, best={k: v.clone() for k, v in state.items()},
                optimizer=optimizer.state_dict(), rng=capture_rng(np.random.default_rng(0))))
            saves.append(time.perf_counter() - start)
            size = sum(f.stat().st_size for f in (Path(d) / RESUME_DIR).iterdir())
    print(f"  one resume point: {statistics.mean(saves) * 1e3:.1f} ± "
          f"{statistics.stdev(saves) * 1e3:.1f} ms, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
