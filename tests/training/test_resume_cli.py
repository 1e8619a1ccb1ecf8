"""`crossrec train --resume` after `kill -9` of the training process: the run finishes with the
planned epochs and the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.testing import make_two_domain
from crossrec.training.checkpoint import find_resume_point, load_resume_point
from crossrec.training.trainer import LOG_FILE

EPOCHS = 8


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """A tabular dataset (interactions CSV) and an experiment file training BPR on it."""
    data = make_two_domain(n_users=150, n_items=(60, 50), n_overlap=100, seed=5)
    inter = data.interactions
    csv = tmp_path / "interactions.csv"
    items = data.items.raw(inter["item"].to_numpy())  # "domain<US>item_id"
    pd.DataFrame({"user_id": data.users.raw(inter["user"].to_numpy()),
                  "item_id": [raw.split("\x1f", 1)[1] for raw in items],
                  "domain": np.asarray(data.domains)[inter["domain"].to_numpy()],
                  "timestamp": inter["timestamp"].to_numpy()}).to_csv(csv, index=False)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""
name = "resume"
[data]
format = "tabular"
path = "{csv.as_posix()}"
[split]
kind = "cold_start_users"
source = ["source"]
target = "target"
ratio = 0.3
[eval]
ks = [10]
[[models]]
name = "bpr"
train_on = "all"
epochs = {EPOCHS}
patience = {EPOCHS}
batch_size = 256
embedding_size = 16
""")
    return cfg


def _train(cfg: Path, out: Path, *extra: str) -> None:
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(out), *extra],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output


def _test_ndcg(out: Path) -> float:
    summary = json.loads((out / "metrics.json").read_text())["test"]["summary"]
    return next(r["value"] for r in summary
                if r["metric"] == "ndcg" and r["k"] == 10 and r["group"] == "all")


def test_kill_9_then_resume_finishes_the_planned_epochs(config: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path / "cache"))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _train(config, straight)

    env = {**os.environ, "CROSSREC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from crossrec.cli import app; app()", "train", str(config),
         "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while find_resume_point(killed) is None:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no clean-up of any kind
    finally:
        proc.kill()
        proc.wait()
    done_before = load_resume_point(find_resume_point(killed)).epoch
    assert 1 <= done_before < EPOCHS, "the process was not killed during training"
    assert not (killed / "metrics.json").exists()

    _train(config, killed, "--resume")
    epochs = [json.loads(x)["epoch"] for x in (killed / LOG_FILE).read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))
    assert _test_ndcg(killed) == pytest.approx(_test_ndcg(straight), abs=1e-6)
