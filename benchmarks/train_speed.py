"""Training speed per model on Arts -> Office, against a plain-PyTorch BPR floor.

Run: ``OMP_NUM_THREADS=1 python benchmarks/train_speed.py [--json PATH] [--epochs 3]``.

For every model (``bpr`` and each model of ``crossrec.models.cross``) a fresh process loads the
Arts -> Office cold-start training split (ratio 0.2, seed 0) and fits the model with the floor's
sizes (``embedding_size=64``, ``batch_size=2048``, ``n_negatives=1`` where the model has them)
for ``--epochs`` epochs of every stage, without validation. The *floor* is dense
``nn.Embedding`` users and items (d = 64), Adam, batches of 2,048 interactions, one uniform
negative per positive, the BPR loss and nothing else. In the stages that factorise
interactions (``train``, ``*_mf``) every batch of the model is preceded by one floor step over
the same interactions, timed apart, so both see the same load of a shared CPU; the ratio is the
model's seconds over the floor's in those stages (the model's include its batch building).
Also reported: the median seconds per epoch of each stage, and the peak RSS of the model's
process. Epochs are timed in CPU seconds of the process (``time.process_time``; one thread),
which on an idle machine equal the wall time and on a shared one do not count the others' work.

Also timed: ``DatasetBuilder.add_interactions`` + ``build`` + ``cold_start_users`` on a
synthetic two-domain log of ``--prepare-rows`` interactions (generating the frame not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "arts_office_cold.toml"
FLOOR_BATCH = 2048
DIM = 64
SAME_WORK = {"embedding_size": DIM, "batch_size": FLOOR_BATCH, "n_negatives": 1}
# epochs and floor steps are timed in CPU seconds of this (single-threaded) process: on a CPU
# shared with other work the wall time mostly measures the other work
CLOCK = time.process_time


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


class Floor:
    """The plain-PyTorch BPR floor: dense ``nn.Embedding`` users and items (d = 64), Adam,
    batches of 2,048, one uniform negative per positive, the BPR loss, nothing else."""

    def __init__(self, n_users: int, n_items: int, seed: int = 0) -> None:
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.n_items = n_items
        self.users, self.items = nn.Embedding(n_users, DIM), nn.Embedding(n_items, DIM)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        self.opt = torch.optim.Adam([self.users.weight, self.items.weight], lr=5e-3)

    def steps(self, users: np.ndarray, items: np.ndarray) -> Iterator[float]:
        """One epoch over the interactions ``(users, items)`` ``[N]``, a step at a time: yields
        the seconds of each step (batch selection, negatives, loss, backward, Adam)."""
        import torch
        import torch.nn.functional as F

        start = CLOCK()
        u_all, i_all = torch.from_numpy(users), torch.from_numpy(items)
        order = torch.randperm(len(u_all))
        for s in range(0, len(order), FLOOR_BATCH):
            idx = order[s : s + FLOOR_BATCH]
            u, p = self.users(u_all[idx]), self.items(i_all[idx])  # [b, d]
            n = self.items(torch.randint(0, self.n_items, (len(idx),)))  # [b, d]
            loss = F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            yield CLOCK() - start
            start = CLOCK()

    def epoch(self, users: np.ndarray, items: np.ndarray) -> float:
        """Seconds of one epoch over the interactions ``(users, items)`` ``[N]``."""
        return sum(self.steps(users, items))


def is_factor_stage(name: str) -> bool:
    """Stages that factorise the training interactions (one pass over them together)."""
    return name == "train" or name.endswith("_mf")


def model_overrides(cls: Any, epochs: int) -> dict[str, Any]:
    """The floor's sizes and ``epochs`` epochs in every stage, for the fields ``cls`` has."""
    fields = cls.Config.model_fields
    out = {k: v for k, v in SAME_WORK.items() if k in fields}
    out.update({k: epochs for k in fields if k == "epochs" or k.endswith("_epochs")})
    if "train_on" in fields:
        out["train_on"] = "all"  # the floor's interactions: both domains
    return out


def worker(name: str, epochs: int) -> dict[str, Any]:
    """Floor and model ``name`` in this process (one JSON line to stdout).

    In every epoch of a factorisation stage, each batch of the model is preceded by one floor
    step over the same interactions (the floor's own shuffle), timed apart, so that floor and
    model see the same load of the machine; the model's epoch time excludes the floor steps.
    """
    import torch

    from crossrec.config import load_config
    from crossrec.experiment import load_dataset, make_split
    from crossrec.models import MODELS, FitOptions
    from crossrec.training.trainer import Trainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = load_config(CONFIG)
    split = make_split(load_dataset(cfg.data), cfg.split, 0)
    train = split.train
    rss_data = peak_rss_mb()
    inter = train.interactions
    users, items = inter["user"].to_numpy(np.int64), inter["item"].to_numpy(np.int64)
    floor = Floor(train.n_users, train.n_items)
    floor_all = [floor.epoch(users, items) for _ in range(2)]  # also warms Adam up

    times: dict[str, list[float]] = {}
    paired: list[tuple[float, float]] = []  # (floor, model) seconds per factor-stage epoch
    floor_s = [0.0]  # floor seconds within the current epoch
    inner = Trainer._epoch

    def timed(self, model, train, stage, *args):  # noqa: ANN001, ANN002, ANN202
        floor_s[0] = 0.0
        start = CLOCK()
        loss = inner(self, model, train, stage, *args)
        seconds = CLOCK() - start - floor_s[0]
        times.setdefault(stage.name, []).append(seconds)
        if is_factor_stage(stage.name):
            paired.append((floor_s[0], seconds))
        return loss

    cls = MODELS[name]
    model = cls(model_overrides(cls, epochs))
    model_batches = getattr(model, "batches", None)  # TorchRecommenders only

    def batches(train, stage, rng):  # noqa: ANN001, ANN202
        if not is_factor_stage(stage.name):
            yield from model_batches(train, stage, rng)
            return
        sel = (np.isin(inter["domain"].to_numpy(),
                       [train.info.domain_index(d) for d in stage.domains])
               if stage.domains else slice(None))
        steps = floor.steps(users[sel], items[sel])
        for batch in model_batches(train, stage, rng):
            floor_s[0] += next(steps, 0.0)
            yield batch

    Trainer._epoch = timed  # instrumentation of this benchmark process only
    if model_batches is not None:
        model.batches = batches
    options = FitOptions(target=split.target, sources=tuple(cfg.split.source), seed=0,
                         progress=False)
    start = time.perf_counter()
    model.fit(train, options)
    fit_s = time.perf_counter() - start
    stages = {k: float(np.median(v)) for k, v in times.items()}
    factor = [v for k, v in stages.items() if is_factor_stage(k)]
    ratio = (sum(m for _, m in paired) / sum(f for f, _ in paired)) if paired else None
    return {
        "model": name, "overrides": model_overrides(cls, epochs), "interactions": len(users),
        "epoch_s": sum(stages.values()) if stages else fit_s, "stages": stages,
        "stage_epochs_s": times, "fit_s": fit_s,
        "factor_pass_s": sum(factor) if factor else None,
        "floor_epoch_s": min(floor_all), "paired_floor_model_s": paired,
        "ratio_to_floor": ratio, "peak_rss_mb": peak_rss_mb(), "data_rss_mb": rss_data,
    }


def prepare_split(rows: int, seed: int = 0) -> dict[str, Any]:
    """Seconds of add + build + cold-start split of ``rows`` synthetic interactions."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data_memory import synthetic_frame

    from crossrec.data.builder import DatasetBuilder
    from crossrec.data.split import cold_start_users

    rng = np.random.default_rng(seed)
    half = rows // 2
    frames = {d: synthetic_frame(r, max(rows // 10, 1), max(rows // 50, 1), d, rng)
              for d, r in (("books", half), ("movies", rows - half))}
    c0, t0 = time.process_time(), time.perf_counter()
    builder = DatasetBuilder("synthetic")
    for domain, frame in frames.items():
        builder.add_interactions(frame, domain=domain, source=f"synthetic:{domain}")
    dataset = builder.build()
    c1, t1 = time.process_time(), time.perf_counter()
    split = cold_start_users(dataset, "books", "movies", 0.2, seed=seed)
    c2, t2 = time.process_time(), time.perf_counter()
    return {"rows": rows, "interactions": len(dataset.interactions),
            "users": dataset.n_users, "items": dataset.n_items,
            "test_users": int(split.test["user"].nunique()),
            "prepare_s": t1 - t0, "split_s": t2 - t1, "total_s": t2 - t0,
            # CPU seconds of this process: what the wall time would be on an idle core
            "prepare_cpu_s": c1 - c0, "split_cpu_s": c2 - c1, "total_cpu_s": c2 - c0,
            "peak_rss_mb": peak_rss_mb()}


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script with ``args`` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "OMP_NUM_THREADS":
                                            os.environ.get("OMP_NUM_THREADS", "1")})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def default_models() -> list[str]:
    from crossrec.models import MODELS

    cross = [n for n, c in MODELS.items() if c.__module__.startswith("crossrec.models.cross.")]
    return ["bpr", *cross]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per stage (and floor)")
    parser.add_argument("--models", type=str, default=None, help="comma-separated names")
    parser.add_argument("--prepare-rows", type=int, default=1_000_000)
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-worker", action="store_true",
                        help="only time prepare + split (prints one JSON line)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs)))
        return
    if args.prepare_worker:
        print(json.dumps(prepare_split(args.prepare_rows)))
        return

    names = args.models.split(",") if args.models else default_models()
    results = {}
    failed = {}
    for name in names:
        try:
            results[name] = r = run_child(["--worker", name, "--epochs", str(args.epochs)])
        except RuntimeError as e:  # e.g. a model that needs inputs this benchmark lacks
            failed[name] = str(e).strip().splitlines()[-1]
            print(f"{name:<16} not measured: {failed[name]}", flush=True)
            continue
        ratio = "–" if r["ratio_to_floor"] is None else f"{r['ratio_to_floor']:.2f}"
        print(f"{name:<16} epoch {r['epoch_s']:7.2f} s  factor pass "
              f"{(r['factor_pass_s'] or float('nan')):6.2f} s  floor {r['floor_epoch_s']:6.2f} s"
              f"  ratio {ratio:>5}  peak RSS {r['peak_rss_mb']:7.0f} MiB", flush=True)
    prep = run_child(["--prepare-worker", "--prepare-rows", str(args.prepare_rows)])
    floor_s = float(np.median([r["floor_epoch_s"] for r in results.values()]))
    print(f"\n{'model':<16} {'s/epoch (all stages)':>21} {'factor s/pass':>14} "
          f"{'ratio to floor':>15} {'peak RSS MiB':>13}")
    for name, r in results.items():
        ratio = "–" if r["ratio_to_floor"] is None else f"{r['ratio_to_floor']:.2f}"
        fp = "–" if r["factor_pass_s"] is None else f"{r['factor_pass_s']:.2f}"
        print(f"{name:<16} {r['epoch_s']:>21.2f} {fp:>14} {ratio:>15} {r['peak_rss_mb']:>13.0f}")
    print(f"{'floor':<16} {floor_s:>21.2f} {'':>14} {'1.00':>15}")
    print(f"\nprepare + split of {prep['rows']:,} synthetic interactions: {prep['total_s']:.2f} s "
          f"(add + build {prep['prepare_s']:.2f} s, cold_start_users {prep['split_s']:.2f} s; "
          f"CPU time {prep['total_cpu_s']:.2f} s)")
    if args.json:
        from crossrec.atomic import atomic_file

        payload = {"models": results, "floor": {"epoch_s": floor_s,
                                                "batch_size": FLOOR_BATCH, "dim": DIM},
                   "prepare_split": prep, "epochs": args.epochs, "not_measured": failed,
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_file(args.json, lambda p: p.write_text(json.dumps(payload, indent=2)))


if __name__ == "__main__":
    main()
