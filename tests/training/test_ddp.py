"""The Trainer under a process group: each rank's share of a step, and 2 ranks == 1 process.

The exact check trains a least-squares model whose loss is a batch mean, so one step over
N micro-batches of B/N rows equals one step over the batch of B rows: two gloo ranks started
by torchrun end with the weights of one process (and of each other), the uneven last step
included.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from crossrec.models.base import Stage
from crossrec.training.ddp import DataParallel, micro_stage


def _shares(rank: int, world: int, n: int) -> list[tuple[int, float]]:
    return list(DataParallel(rank, world).shard(range(n)))


def test_each_rank_takes_every_nth_micro_batch_and_pads_the_last_step() -> None:
    assert _shares(0, 2, 5) == [(0, 1.0), (2, 1.0), (4, 2.0)]  # last step: 1 of 2 ranks
    assert _shares(1, 2, 5) == [(1, 1.0), (3, 1.0), (4, 0.0)]  # a copy, weight 0
    assert _shares(0, 2, 4) == [(0, 1.0), (2, 1.0)]
    assert _shares(2, 3, 1) == [(0, 0.0)]  # fewer micro-batches than ranks: still one step
    assert _shares(0, 3, 1) == [(0, 3.0)]
    assert _shares(1, 2, 0) == []


def test_micro_stage_divides_the_global_batch() -> None:
    assert micro_stage(Stage("s", batch_size=256), 2).batch_size == 128
    assert micro_stage(Stage("s", batch_size=5), 2).batch_size == 3
    assert micro_stage(Stage("s", batch_size=1), 4).batch_size == 1


SCRIPT = '''
import json, os, sys
from pathlib import Path
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from crossrec.models.base import FitOptions, Stage, TorchRecommender
from crossrec.training.trainer import Trainer

SPARSE = os.environ.get("SPARSE") == "1"

class LeastSquares(TorchRecommender):
    """y ~ x @ w + b (+ a per-row offset from a sparse table, lazy Adam, when SPARSE) on 10
    fixed rows; batches are a seeded shuffle cut in stage.batch_size."""
    def build(self, train, options):
        self.linear = nn.Linear(4, 1)
        if SPARSE:
            self.offset = nn.Embedding(10, 1, sparse=True)
    def batches(self, train, stage, rng):
        g = torch.Generator().manual_seed(7)
        x = torch.randn(10, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(10, generator=g)
        order = torch.from_numpy(rng.permutation(10))
        for s in range(0, 10, stage.batch_size):
            idx = order[s:s + stage.batch_size]
            yield x[idx], y[idx], idx
    def loss(self, batch, stage):
        x, y, idx = batch
        pred = self.linear(x).squeeze(-1)
        if SPARSE:
            pred = pred + self.offset(idx).squeeze(-1)
        return ((pred - y) ** 2).mean()
    def score(self, query, domain):
        raise NotImplementedError

out = Path(sys.argv[1])
distributed = len(sys.argv) > 2
if distributed:
    dist.init_process_group("gloo")
rank = dist.get_rank() if distributed else 0
torch.manual_seed(0)
model = LeastSquares()
model.build(None, None)
calls = []
def validate(m):
    calls.append(1)
    return -float(m.linear.bias.detach().abs())
options = FitOptions(target="t", seed=3, progress=False, validate=validate,
                     run_dir=out / "run", resume=False)
summary = Trainer(options).fit(model, None, [Stage("s", epochs=4, learning_rate=0.05,
                                                   batch_size=4, patience=4)])
state = {k: v.flatten().tolist() for k, v in model.state_dict().items()}
(out / f"rank-{rank}{'-ddp' if distributed else ''}.json").write_text(json.dumps(
    {"state": state, "validated": len(calls), "summary": summary.to_dict()}))
if distributed:  # leave together, as training/distributed.py does (gloo teardown race)
    import gc
    dist.barrier()
    gc.collect()
    dist.destroy_process_group()
'''


@pytest.mark.distributed
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse-lazy-adam"])
def test_two_torchrun_ranks_take_the_steps_of_one_process(tmp_path: Path, sparse: bool) -> None:
    script = tmp_path / "least_squares.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPARSE": "1" if sparse else "0"}
    with pytest.MonkeyPatch.context() as mp:  # one process: this one
        mp.setenv("SPARSE", env["SPARSE"])
        mp.setattr(sys, "argv", [str(script), str(tmp_path / "one")])
        runpy.run_path(str(script), run_name="__main__")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path / "two"), "ddp"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "rank-0.json").read_text())
    r0 = json.loads((tmp_path / "two" / "rank-0-ddp.json").read_text())
    r1 = json.loads((tmp_path / "two" / "rank-1-ddp.json").read_text())
    assert r0["state"] == r1["state"]  # the ranks never drift apart
    for name, values in one["state"].items():
        assert r0["state"][name] == pytest.approx(values, abs=1e-6), name
    assert (r0["validated"], r1["validated"]) == (one["validated"], 0)  # rank 0 validates
    assert r0["summary"]["stages"][0]["best_epoch"] == one["summary"]["stages"][0]["best_epoch"]
    assert r1["summary"]["stages"][0]["best_valid"] == r0["summary"]["stages"][0]["best_valid"]
    log = (tmp_path / "two" / "run" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 4  # written by rank 0 alone
