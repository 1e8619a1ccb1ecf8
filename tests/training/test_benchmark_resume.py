"""``crossrec benchmark --resume`` after ``kill -9`` during a neural fit continues that fit from
its last finished epoch, and the run's per-epoch log shows the epochs before and after; with
stdout redirected to a file every epoch is one progress line."""

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

EPOCHS = 6


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """A tabular dataset and a benchmark of pop and BPR (``EPOCHS`` epochs, no early stop)."""
    data = make_two_domain(n_users=150, n_items=(60, 50), n_overlap=100, seed=5)
    inter = data.interactions
    items = data.items.raw(inter["item"].to_numpy())  # "domain<US>item_id"
    csv = tmp_path / "interactions.csv"
    pd.DataFrame({"user_id": data.users.raw(inter["user"].to_numpy()),
                  "item_id": [raw.split("\x1f", 1)[1] for raw in items],
                  "domain": np.asarray(data.domains)[inter["domain"].to_numpy()],
                  "timestamp": inter["timestamp"].to_numpy()}).to_csv(csv, index=False)
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f"""
name = "bench"
[data]
path = "{csv.as_posix()}"
[split]
kind = "cold_start_users"
target = "target"
ratio = 0.3
[train]
seeds = [0]
[eval]
ks = [10]
[[models]]
name = "pop"
[[models]]
name = "bpr"
train_on = "all"
epochs = {EPOCHS}
patience = {EPOCHS}
batch_size = 128
embedding_size = 16
""")
    return cfg


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "CROSSREC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _bpr_run(out: Path) -> Path:
    found = [p.parent for p in (out / "runs").glob("*/run.json")
             if json.loads(p.read_text())["label"].startswith("bpr")]
    assert len(found) == 1, found
    return found[0]


def _ndcg(out: Path) -> float:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return next(r["mean"] for r in rows if r["model"].startswith("bpr") and r["group"] == "all"
                and r["metric"] == "ndcg" and r["k"] == 10)


def test_redirected_stdout_gets_one_line_per_epoch(config: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "crossrec", "benchmark", str(config),
                               "--out", str(tmp_path / "out")], env=_env(tmp_path), stdout=fh,
                              stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    lines = log.read_text().splitlines()
    epochs = [x for x in lines if x.startswith("stage ") and f"/{EPOCHS}: loss" in x]
    assert len(epochs) >= EPOCHS, lines
    assert not any("\r" in x or "\x1b[" in x for x in lines)  # no live bar, no escapes
    run = _bpr_run(tmp_path / "out")
    assert json.loads((run / "run.json").read_text())["seed"] == 0
    assert (run / "per_user.parquet").is_file()


def test_kill_9_during_a_fit_then_resume(config: Path, tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    runner = CliRunner()
    env = {"CROSSREC_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    r = runner.invoke(app, ["benchmark", str(config), "--out", str(straight)], env=env)
    assert r.exit_code == 0, r.output

    proc = subprocess.Popen([sys.executable, "-m", "crossrec", "benchmark", str(config),
                             "--out", str(killed), "--resume"], env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        point = None
        while point is None:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no resume point after 120 s"
            fits = list((killed / "runs").glob("*.fit")) if (killed / "runs").is_dir() else []
            point = next((p for f in fits if (p := find_resume_point(f)) is not None), None)
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no clean-up of any kind
    finally:
        proc.kill()
        proc.wait()
    before = load_resume_point(point).epoch
    assert 1 <= before < EPOCHS, "the process was not killed during the fit"

    r = runner.invoke(app, ["benchmark", str(config), "--out", str(killed), "--resume"], env=env)
    assert r.exit_code == 0, r.output
    assert "read back from an earlier run" in r.output  # pop finished before the kill
    resumed_from = int(r.output.split("from after epoch ")[1].split()[0])
    assert before <= resumed_from < EPOCHS
    lines = [json.loads(x) for x in (_bpr_run(killed) / LOG_FILE).read_text().splitlines()]
    assert [x["epoch"] for x in lines if "epoch" in x] == list(range(1, EPOCHS + 1))
    notes = [i for i, x in enumerate(lines) if x.get("event") == "resumed"]
    assert len(notes) == 1 and lines[notes[0]]["after_epoch"] == resumed_from
    assert [x["epoch"] for x in lines[:notes[0]]] == list(range(1, resumed_from + 1))
    assert lines[-1]["event"] == "fit" and lines[-1]["epochs"] == EPOCHS
    assert not list((killed / "runs").glob("*.fit"))  # the fit's resume point is gone
    assert _ndcg(killed) == pytest.approx(_ndcg(straight), abs=1e-6)
