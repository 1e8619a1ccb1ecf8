"""Data-parallel training: Ray Train (2 CPU workers on the local cluster) and torchrun.

Two workers end within noise of one process on the same data and seed (the text model; BPR
after a worker was killed with ``kill -9`` mid-training, which makes Ray restart the group:
it resumes from the last epoch's checkpoint and finishes the planned epochs);
``torchrun --nproc_per_node 2`` runs the same command; without ``--workers`` nothing of Ray is
imported. Each Ray run starts worker processes (slow on a busy machine): two runs in all.

Noise, measured with one process on this data (5 training seeds, split fixed): valid NDCG@10
std 0.008 (range 0.020) for BPR, 0.016 (range 0.039) for the text model. The tolerances are
about 5 std.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossrec.config import load_config
from crossrec.experiment import fit_and_evaluate, load_dataset, make_split
from crossrec.testing import make_two_domain
from crossrec.testing.text import hashing_encoder
from crossrec.training.checkpoint import find_resume_point, load_resume_point
from crossrec.training.distributed import TrainJob, train_ray
from crossrec.training.trainer import LOG_FILE

pytestmark = pytest.mark.distributed

EPOCHS = 20  # BPR; enough epochs for a kill to land mid-training
TEXT_EPOCHS = 6
BPR_TOL, TEXT_TOL = 0.04, 0.08
TEXT = {"name": "text_transfer", "encoder": "hashing", "embedding_size": 16, "n_experts": 2,
        "max_seq_len": 16, "n_layers": 1, "pretrain_epochs": 2, "epochs": TEXT_EPOCHS,
        "patience": TEXT_EPOCHS, "n_negatives": 32, "batch_size": 64, "pretrain_batch_size": 64,
        "learning_rate": 3e-2, "pretrain_learning_rate": 1e-2, "dropout": 0.0,
        "adapter_dropout": 0.0, "adapt_negatives": 0}


def _toml(spec: dict) -> str:
    return "[[models]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in spec.items())


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared two-domain set (600 users) and an experiment: BPR (model 0), text (1)."""
    root = tmp_path_factory.mktemp("distributed")
    make_two_domain(n_users=600, n_items=(120, 100), n_overlap=420, seed=5).save(root / "data")
    bpr = {"name": "bpr", "train_on": "all", "epochs": EPOCHS, "patience": EPOCHS,
           "batch_size": 256, "embedding_size": 16}
    cfg = root / "exp.toml"
    cfg.write_text(f"""name = "distributed"
[data]
prepared = "{(root / 'data').as_posix()}"
[split]
kind = "cold_start_users"
source = ["source"]
target = "target"
ratio = 0.3
[eval]
ks = [10]
{_toml(bpr)}
{_toml(TEXT)}
""")
    return cfg


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "CROSSREC_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1",
            "COLUMNS": "200"}


def _valid_ndcg(out: Path) -> float:
    return _ndcg(out, "valid")


def _ndcg(out: Path, part: str) -> float:
    summary = json.loads((out / "metrics.json").read_text())[part]["summary"]
    return next(r["value"] for r in summary
                if r["metric"] == "ndcg" and r["k"] == 10 and r["group"] == "all")


def _epochs(out: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (out / LOG_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def single(config: Path) -> Path:
    """BPR trained by ``crossrec train`` in one process; the Ray modules it loaded are listed
    in ``ray_modules.json``."""
    out = config.parent / "single"
    code = ("import json, sys\nfrom crossrec.cli import app\n"
            f"app(['train', {str(config)!r}, '--out', {str(out)!r}], standalone_mode=False)\n"
            "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
            f"open({str(out / 'ray_modules.json')!r}, 'w').write(json.dumps(loaded))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(config.parent),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def test_training_without_workers_imports_nothing_of_ray(single: Path) -> None:
    assert (single / "bundle").is_dir()
    assert json.loads((single / "ray_modules.json").read_text()) == []


def test_two_ray_workers_train_the_text_model_like_one_process(ray_local, config: Path,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    cfg = load_config(config)
    split = make_split(load_dataset(cfg.data), cfg.split, 0)
    with hashing_encoder(cache_dir=tmp_path / "cache"):
        one = fit_and_evaluate(cfg, cfg.model_specs()[1], split, 0, progress=False)
    out = tmp_path / "text2"
    # the fixture's Ray workers know the "hashing" encoder; the vector cache is the test's
    env = {"env_vars": {"CROSSREC_CACHE": str(tmp_path / "cache")}}
    shown = train_ray(TrainJob(cfg.model_dump(), 1, 0, str(out)), 2, max_failures=1,
                      runtime_env=env)
    assert shown["label"] == one.label
    assert [json.loads(x)["stage"] for x in (out / LOG_FILE).read_text().splitlines()] == (
        ["pretrain"] * 2 + ["adapt"] * TEXT_EPOCHS)
    assert {p.name for p in (out / "workers").glob("rank-*.pid")} == {"rank-0.pid",
                                                                      "rank-1.pid"}
    v1, v2 = one.valid.value("ndcg@10"), _valid_ndcg(out)
    assert v1 > 0.15, v1  # above a random ranking (about 0.1)
    assert abs(v2 - v1) <= TEXT_TOL, (v1, v2)


def test_bpr_on_two_ray_workers_survives_kill_9_and_matches_one_process(
        ray_local, config: Path, single: Path) -> None:  # noqa: ANN001
    """``crossrec train --workers 2 --address ...`` in its own process; rank 1 gets SIGKILL
    after the first epoch: Ray starts a new worker group, which resumes from the resume point
    and finishes the planned epochs, within noise of one process."""
    out = config.parent / "killed"
    address = ray_local.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossrec", "train", str(config), "--out", str(out),
         "--workers", "2", "--address", address, "--max-failures", "2"],
        env=_env(config.parent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = out / "workers" / "rank-1.pid"
    try:
        deadline = time.monotonic() + 240
        while find_resume_point(out) is None or not pid_file.is_file():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        victim = int(pid_file.read_text())
        os.kill(victim, signal.SIGKILL)
        point = load_resume_point(find_resume_point(out))
        kept = (out / LOG_FILE).read_text().splitlines()[:point.log_lines]
        output, _ = proc.communicate(timeout=400)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, output[-4000:]
    assert 1 <= point.epoch < EPOCHS, "the worker was not killed during training"
    assert int(pid_file.read_text()) != victim, "Ray did not start a new worker group"
    assert _epochs(out) == list(range(1, EPOCHS + 1))
    # resumed: the epochs logged before the kill were not run again (a rerun rewrites them)
    assert (out / LOG_FILE).read_text().splitlines()[:len(kept)] == kept
    assert (out / "bundle").is_dir()
    one, two = _valid_ndcg(single), _valid_ndcg(out)
    assert one > 0.5, one  # it learned (a random ranking scores about 0.1)
    assert abs(two - one) <= BPR_TOL, (one, two)


def test_torchrun_two_processes(config: Path, single: Path) -> None:
    out = config.parent / "torchrun"
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "crossrec", "train", str(config), "--out", str(out)],
        env=_env(config.parent), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("fit ") == 1  # rank 0 alone reports
    assert _epochs(out) == list(range(1, EPOCHS + 1))
    assert abs(_valid_ndcg(out) - _valid_ndcg(single)) <= BPR_TOL
