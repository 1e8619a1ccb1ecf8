"""Distributed training: Ray Train's ``TorchTrainer`` or ``torchrun`` around the same Trainer.

Every worker runs ``run_rank``: it builds the dataset, split and model of the config exactly as
``crossrec train`` does and calls ``model.fit``; the ``Trainer`` finds the process group and
trains data-parallel (``crossrec.training.ddp``). Rank 0 then evaluates and writes the bundle
and ``metrics.json`` as the single-process path does. Models without torch (pop, itemknn, ease)
are fitted by rank 0 alone.

Fault tolerance rests on crossrec's own resume point (written atomically by rank 0 after every
epoch, ``crossrec.training.checkpoint``): a worker group that Ray restarts after losing a
worker (``FailureConfig(max_failures)``), or that ``torchrun --max-restarts`` starts again,
continues from the last finished epoch. The run directory must therefore be on storage that
every worker sees (one machine, or a shared file system).

Imported only by ``crossrec train --workers N`` and under ``torchrun``; Ray is imported inside
the functions that use it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from crossrec.atomic import atomic_file
from crossrec.config import ExperimentConfig
from crossrec.errors import ConfigError, CrossrecError
from crossrec.experiment import RunResult

RUN_ID_FILE = "workers/run-id"
"""Written by rank 0 of the first worker group of one ``--workers`` invocation: a later group
that finds the same id is a restart and resumes."""


@dataclass
class TrainJob:
    """What every worker needs to train one model of one config (plain data, sent to workers).

    Attributes:
        config: ``ExperimentConfig.model_dump()``.
        model: index of the model table.
        seed: the run's seed.
        out: run directory (absolute; seen by every worker).
        resume: continue from the run directory's resume point (``--resume``).
        progress: rank 0 shows progress bars.
        run_id: one id per invocation (Ray): tells a restarted worker group from a new run.
    """

    config: dict[str, Any]
    model: int
    seed: int
    out: str
    resume: bool = False
    progress: bool = False
    run_id: str = ""


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or another ``env://`` launcher)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def run_rank(job: TrainJob, device: str | None = None) -> RunResult | None:
    """One rank's part of a distributed ``crossrec train``; rank 0's result, None elsewhere.

    Args:
        job: the run.
        device: this rank's device (``cuda:<local rank>`` on GPU; default ``train.device``).
    """
    import torch.distributed as dist

    from crossrec.experiment import (
        build_model,
        fit_and_evaluate,
        fit_options,
        load_dataset,
        make_split,
        model_label,
        save_run,
    )
    from crossrec.models.base import TorchRecommender
    from crossrec.training.ddp import world

    cfg = ExperimentConfig(**job.config)
    spec = cfg.model_specs()[job.model]
    rank, size = world()
    out = Path(job.out)
    if rank == 0:  # rank 0 first: a dataset built from raw files goes to the cache once
        dataset = load_dataset(cfg.data)
    if size > 1:
        dist.barrier()
    if rank != 0:
        dataset = load_dataset(cfg.data)
    split = make_split(dataset, cfg.split, job.seed)
    model = build_model(spec)
    if rank != 0 and not isinstance(model, TorchRecommender):
        return None  # nothing to share: rank 0 fits it alone
    options = fit_options(cfg, split, job.seed, run_dir=out, progress=job.progress and rank == 0,
                          resume=job.resume, device=device)
    start = time.perf_counter()
    model.fit(split.train, options)
    seconds = time.perf_counter() - start
    if rank != 0:
        return None
    fitted = RunResult(model_label(spec), job.seed, model, split, None, None, seconds)
    result = fit_and_evaluate(cfg, spec, split, job.seed, fitted=fitted)
    save_run(result, out)
    return result


# ----------------------------------------------------------------------------- torchrun
def train_torchrun(job: TrainJob) -> RunResult | None:
    """``crossrec train`` in one process of ``torchrun --nproc_per_node N``.

    Joins the process group from the environment torchrun sets (gloo; NCCL with one GPU per
    process when ``train.device`` is ``cuda``) and runs ``run_rank``. After a restart by
    ``torchrun --max-restarts`` (``TORCHELASTIC_RESTART_COUNT`` > 0) the run resumes.
    """
    import torch
    import torch.distributed as dist

    cfg = ExperimentConfig(**job.config)
    gpu = cfg.train.device.startswith("cuda")
    device = None
    if gpu:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    dist.init_process_group("nccl" if gpu else "gloo")
    try:
        result = run_rank(replace(job, resume=job.resume or restarted), device)
        # every rank leaves together: a rank that tore down its gloo pairs and exited while
        # rank 0 was still evaluating aborted now and then ("terminate called without an
        # active exception", SIGABRT), failing the whole torchrun job after a good fit
        dist.barrier()
        return result
    finally:
        import gc

        gc.collect()  # DDP's reducer (gloo work, tensors) goes now, not at interpreter exit
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- Ray Train
def _resumes(job: TrainJob) -> bool:
    """Whether this worker group continues from the resume point: with ``--resume``, or when
    an earlier group of the same invocation started (rank 0 decides, every rank hears it)."""
    from crossrec.training.ddp import DataParallel, world

    rank, size = world()
    decision = 1.0 if job.resume else 0.0
    if rank == 0 and not job.resume:
        marker = Path(job.out) / RUN_ID_FILE
        restarted = marker.is_file() and marker.read_text() == job.run_id
        if not restarted:
            atomic_file(marker, lambda tmp: tmp.write_text(job.run_id))
        decision = 1.0 if restarted else 0.0
    if size > 1:
        decision = DataParallel(rank, size).from_rank0(decision) or 0.0
    return decision == 1.0


def report(result: RunResult) -> dict[str, Any]:
    """What the driver prints of a run (plain data): label, split, protocol, test summary
    records, fit seconds."""
    return {"label": result.label, "split": result.split.name,
            "protocol": result.test.protocol, "fit_seconds": result.fit_seconds,
            "summary": result.test.to_dict()["summary"]}


def _ray_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train's ``train_loop_per_worker``: the process group is up; train this rank.
    Rank 0 returns ``report`` of the run (Ray hands rank 0's return value to the driver)."""
    import ray.train
    import ray.train.torch

    job = TrainJob(**config["job"])
    rank = ray.train.get_context().get_world_rank()
    pid_file = Path(job.out) / "workers" / f"rank-{rank}.pid"  # for monitoring (and tests)
    atomic_file(pid_file, lambda tmp: tmp.write_text(str(os.getpid())))
    device = str(ray.train.torch.get_device()) if config["use_gpu"] else None
    result = run_rank(replace(job, resume=_resumes(job)), device)
    return None if result is None else report(result)


def follow_log(path: Path, emit: Callable[[dict[str, Any]], None],
               stop: threading.Event, interval: float = 1.0) -> None:
    """Call ``emit(record)`` for every line written to the training log ``path`` until
    ``stop`` is set (an epoch the workers run again after a restart is shown again)."""
    seen = 0
    while not stop.wait(interval):
        try:
            text = path.read_text()
        except OSError:
            continue
        lines = text[: text.rfind("\n") + 1].splitlines()  # complete lines only
        seen = min(seen, len(lines))  # truncated on resume
        for line in lines[seen:]:
            emit(json.loads(line))
        seen = len(lines)


def train_ray(job: TrainJob, workers: int, *, address: str | None = None,
              max_failures: int = 3, runtime_env: dict[str, Any] | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train on ``workers`` Ray Train workers (``TorchTrainer``, DDP); returns ``report``.

    Each worker asks for one CPU, or one GPU when ``train.device`` is ``cuda`` (the process
    group then uses NCCL, else gloo). A lost worker makes Ray restart the whole group up to
    ``max_failures`` times; the new group resumes from the last finished epoch.

    Args:
        job: the run (``job.out`` must be seen by every worker).
        workers: number of workers (ranks).
        address: an existing cluster (``ray://host:10001``, ``host:6379``, ``auto``); None
            starts a local one (see ``crossrec.cluster.ray_session``).
        max_failures: worker-group restarts allowed.
        runtime_env: Ray runtime environment of the workers (e.g. env vars).
        on_epoch: called in this process with each record of ``train_log.jsonl`` as the
            workers write it (when ``job.out`` is visible here).

    Raises:
        ConfigError: GPUs asked for and missing in the cluster.
        CrossrecError: the training failed (more failures than allowed, or an error).
    """
    from crossrec.cluster import check_workers, ray_session

    workers = check_workers(workers)
    if max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {max_failures}")
    cfg = ExperimentConfig(**job.config)
    use_gpu = cfg.train.device.startswith("cuda")
    job = replace(job, run_id=job.run_id or uuid.uuid4().hex)
    with ray_session(workers, address) as ray:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        gpus = ray.cluster_resources().get("GPU", 0)
        if use_gpu and gpus < workers:
            raise ConfigError(f"train.device={cfg.train.device!r} asks for one GPU per worker: "
                              f"{workers} workers, the Ray cluster has {gpus:g} GPUs")
        trainer = TorchTrainer(
            _ray_worker,
            train_loop_config={"job": asdict(job), "use_gpu": use_gpu},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=RunConfig(name="ray", storage_path=str(Path(job.out) / "workers"),
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 worker_runtime_env=runtime_env),
        )
        stop = threading.Event()
        if on_epoch is not None:
            from crossrec.training.trainer import LOG_FILE

            threading.Thread(target=follow_log, args=(Path(job.out) / LOG_FILE, on_epoch, stop),
                             daemon=True).start()
        try:
            result = trainer.fit()
        except Exception as e:  # TrainingFailedError wraps the workers' errors
            raise CrossrecError(f"distributed training failed: {e}") from e
        finally:
            stop.set()
    return result.return_value
