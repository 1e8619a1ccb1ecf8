"""Trainer: the one training loop (stages, epochs, early stopping, checkpoints, logging).

The model owns its batches and its loss (``TorchRecommender.batches`` / ``loss``); the trainer
owns everything around them: optimisers, freezing, validation, the best weights, the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from crossrec.atomic import atomic_file
from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import FitOptions, Stage, TorchRecommender
from crossrec.training.checkpoint import (
    CheckpointError,
    ResumePoint,
    capture_rng,
    clear_resume_point,
    find_resume_point,
    load_resume_point,
    restore_rng,
    save_resume_point,
)
from crossrec.training.ddp import DataParallel, micro_stage, world
from crossrec.training.optim import OptimizerGroup, build_optimizer

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass
class StageSummary:
    """What happened in one stage.

    Attributes:
        name: the stage name.
        epochs: epochs run (fewer than planned when stopped early).
        best_epoch: 1-based epoch whose weights were kept (the last one without validation).
        best_valid: validation value of that epoch (None without validation).
        stopped_early: whether patience ran out.
        loss: mean training loss of the last epoch.
        seconds: wall time of the stage.
    """

    name: str
    epochs: int
    best_epoch: int
    best_valid: float | None
    stopped_early: bool
    loss: float
    seconds: float


@dataclass
class TrainSummary:
    """The stages of one ``Trainer.fit`` call, in order."""

    stages: list[StageSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages]}


def move(batch: Any, device: str | torch.device) -> Any:
    """A batch on ``device``: tensors, objects with ``.to``, and tuples/lists/dicts of them."""
    if isinstance(batch, torch.Tensor) or hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, tuple | list):
        return type(batch)(move(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Runs the stages of a ``TorchRecommender``.

    Per stage: Adam over the parameters whose names start with one of ``stage.trainable``
    (all when empty; the others are frozen for the stage; of a table named in ``stage.rows``,
    only those rows, e.g. one domain's items), ``stage.epochs`` passes over
    ``model.batches``, validation after each epoch when ``options.validate`` is set (higher is
    better) with early stopping after ``stage.patience`` epochs without improvement, and the
    best weights restored at the end of the stage. With ``options.run_dir`` each epoch appends
    a line to ``train_log.jsonl``, the best weights go to ``checkpoint.safetensors`` and a
    resume point (weights, optimiser, RNG states, early-stopping state; see
    ``crossrec.training.checkpoint``) replaces ``resume/`` atomically. With ``options.resume``
    a run continues from that point: finished stages and epochs are skipped and the random
    streams continue, so the result equals an uninterrupted run. With ``options.progress`` a
    live bar shows the epochs on a terminal; when stdout is a file or a pipe (a log), one line
    per epoch is printed instead.

    Under an initialised ``torch.distributed`` process group (Ray Train, torchrun) each rank
    trains on its share of every step's batches through DDP, rank 0 validates for all and is
    the only one to write files (see ``crossrec.training.ddp``).

    Example:
        >>> Trainer(FitOptions(target="movies")).fit(model, train, stages)  # doctest: +SKIP
    """

    def __init__(self, options: FitOptions) -> None:
        self.options = options
        self.dp: DataParallel | None = None  # set by fit() under a process group
        self.lines = False  # set by fit(): progress as one printed line per epoch

    def fit(
        self, model: TorchRecommender, train: MultiDomainDataset, stages: list[Stage]
    ) -> TrainSummary:
        """Train ``model`` in place through ``stages``; returns what happened per stage."""
        rng = np.random.default_rng(self.options.seed)
        run_dir = Path(self.options.run_dir) if self.options.run_dir is not None else None
        plan = [[s.name, s.epochs] for s in stages]
        rank, size = world()
        self.dp = DataParallel(rank, size) if size > 1 else None
        point = self._resume_point(run_dir, plan)
        where = [-1.0, -1.0] if point is None else [point.stage_index, point.epoch]
        if self.dp is not None and not self.dp.agree(where):
            raise CheckpointError(f"{run_dir}: the ranks found different resume points; the "
                                  "run directory must be on storage every worker sees")
        writes = run_dir if rank == 0 else None  # only rank 0 writes files
        if writes is not None:
            writes.mkdir(parents=True, exist_ok=True)
            _truncate_log(writes / LOG_FILE, point.log_lines if point else 0)
            if point is None:  # a fresh run: a stale point must not be resumed later
                clear_resume_point(writes)
        if self.dp is not None:
            self.dp.barrier()
        summary = TrainSummary()
        if point is not None:
            summary.stages = [StageSummary(**s) for s in point.finished]
            log.info("resuming stage %s after epoch %d", plan[point.stage_index][0], point.epoch)
        columns = (TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} epochs"), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"))
        with contextlib.ExitStack() as stack:
            # rich prints a newline even when disabled: no Progress at all when silent; into
            # a file or pipe (a log) one plain line per epoch instead of a live bar
            shown = self.options.progress and rank == 0
            self.lines = shown and not sys.stdout.isatty()
            bar = stack.enter_context(Progress(*columns)) if shown and not self.lines else None
            for index, stage in enumerate(stages):
                if point is not None and index < point.stage_index:
                    continue
                here = point if point is not None and index == point.stage_index else None
                ctx = _Context(index, plan, summary, here)
                summary.stages.append(self._stage(model, train, stage, rng, bar, writes, ctx))
        model.eval()
        return summary

    def _resume_point(self, run_dir: Path | None, plan: list[list[Any]]) -> ResumePoint | None:
        """The point to continue from (None: start afresh), checked against ``plan``."""
        if not self.options.resume:
            return None
        if run_dir is None:
            raise ValueError("FitOptions.resume needs FitOptions.run_dir")
        path = find_resume_point(run_dir)
        if path is None:
            log.info("no resume point in %s: training from the start", run_dir)
            return None
        point = load_resume_point(path)
        if point.plan != plan:
            raise CheckpointError(f"{path}: written for stages {point.plan}, this run plans "
                                  f"{plan}; resume with the same model config")
        return point

    # ------------------------------------------------------------------ one stage
    def _stage(
        self,
        model: TorchRecommender,
        train: MultiDomainDataset,
        stage: Stage,
        rng: np.random.Generator,
        bar: Progress | None,
        run_dir: Path | None,
        ctx: _Context,
    ) -> StageSummary:
        params = _select(model, stage.trainable)
        saved_flags = {name: p.requires_grad for name, p in model.named_parameters()}
        chosen = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        optimizer, hooks = build_optimizer(model, stage, params, distributed=self.dp is not None)
        task = bar.add_task(f"stage {stage.name}", total=stage.epochs, info="") if bar else None
        best_valid: float | None = None
        best_epoch, best_state, bad_epochs = 0, None, 0
        stopped, epoch, loss = False, 0, float("nan")
        start = time.perf_counter()
        if (pt := ctx.point) is not None:  # continue where the checkpoint left the stage
            model.load_state_dict(pt.model)
            optimizer.load_state_dict(pt.optimizer)
            restore_rng(rng, pt.rng)
            best_valid, best_epoch, bad_epochs = pt.best_valid, pt.best_epoch, pt.bad_epochs
            best_state = pt.best or None
            stopped, epoch, loss = pt.stopped, pt.epoch, pt.loss
            start -= pt.seconds
            if bar is not None:
                bar.update(task, advance=epoch)
        loss_fn = model.loss if self.dp is None else self.dp.wrap(model)
        try:
            first, last = epoch + 1, (epoch if stopped else stage.epochs)  # stopped: no more
            for epoch in range(first, last + 1):
                t0 = time.perf_counter()
                loss = self._epoch(model, train, stage, rng, optimizer, epoch, loss_fn)
                valid = self._validate(model) if stage.validate else None
                improved = valid is None or best_valid is None or valid > best_valid
                if improved:
                    best_valid, best_epoch, bad_epochs = valid, epoch, 0
                    if valid is not None:  # without validation the last weights are kept
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if run_dir is not None:
                        _save_checkpoint(best_state or model.state_dict(),
                                         run_dir / CHECKPOINT_FILE, stage.name, epoch)
                else:
                    bad_epochs += 1
                record = {"stage": stage.name, "epoch": epoch, "loss": loss, "valid": valid,
                          "seconds": round(time.perf_counter() - t0, 4), "best": improved}
                if run_dir is not None:
                    with open(run_dir / LOG_FILE, "a") as f:
                        f.write(json.dumps(record) + "\n")
                info = f"loss {loss:.4f}" + ("" if valid is None else f"  valid {valid:.4f}")
                if bar is not None:
                    bar.update(task, advance=1, info=info)
                log.info("stage %s epoch %d: %s", stage.name, epoch, info)
                if self.lines:
                    print(f"stage {stage.name} epoch {epoch}/{stage.epochs}: {info}  "
                          f"({record['seconds']:.1f}s)", flush=True)
                stopped = valid is not None and bad_epochs >= stage.patience
                if run_dir is not None:
                    ctx.log_lines += 1
                    save_resume_point(run_dir, ResumePoint(
                        plan=ctx.plan, stage_index=ctx.index, epoch=epoch, stopped=stopped,
                        best_valid=best_valid, best_epoch=best_epoch, bad_epochs=bad_epochs,
                        loss=loss, seconds=time.perf_counter() - start,
                        log_lines=ctx.log_lines,
                        finished=[asdict(s) for s in ctx.summary.stages],
                        model=model.state_dict(), best=best_state or {},
                        optimizer=optimizer.state_dict(), rng=capture_rng(rng)))
                if stopped:
                    break
        finally:
            for hook in hooks:
                hook.remove()
            for name, p in model.named_parameters():
                p.requires_grad_(saved_flags[name])
        if best_state is not None:
            model.load_state_dict(best_state)
        return StageSummary(stage.name, epoch, best_epoch, best_valid, stopped, loss,
                            round(time.perf_counter() - start, 4))

    def _epoch(
        self,
        model: TorchRecommender,
        train: MultiDomainDataset,
        stage: Stage,
        rng: np.random.Generator,
        optimizer: torch.optim.Optimizer | OptimizerGroup,
        epoch: int,
        loss_fn: Any,
    ) -> float:
        """One pass over the stage's batches; returns the mean batch loss.

        ``loss_fn(batch, stage name)`` is ``model.loss`` or its DDP wrapper; with DDP this
        rank trains on its share of micro-batches (``DataParallel.shard``).
        """
        model.train()
        total, n_batches = 0.0, 0
        if self.dp is None:
            steps = ((b, 1.0) for b in model.batches(train, stage, rng))
        else:
            size = self.dp.world_size
            steps = self.dp.shard(model.batches(train, micro_stage(stage, size), rng))
        for batch, weight in steps:
            loss = loss_fn(move(batch, self.options.device), stage.name)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"stage {stage.name!r} epoch {epoch}: loss is {loss.item()} after "
                    f"{n_batches} batches; lower the learning rate ({stage.learning_rate})"
                )
            optimizer.zero_grad(set_to_none=True)
            (loss if weight == 1.0 else loss * weight).backward()
            optimizer.step()
            if weight:
                total += loss.item()
                n_batches += 1
        if self.dp is not None:  # the mean over every rank's micro-batches
            total, n_batches = self.dp.sum_over_ranks(total, n_batches)
        return total / n_batches if n_batches else float("nan")

    def _validate(self, model: TorchRecommender) -> float | None:
        """``options.validate(model)`` (higher is better); under DDP rank 0's, on every rank."""
        if self.options.validate is None:
            return None
        if self.dp is not None and self.dp.rank != 0:
            return self.dp.from_rank0(None)
        model.eval()
        try:
            with torch.no_grad():
                value = float(self.options.validate(model))
        finally:
            model.train()
        if math.isnan(value):
            raise ValueError("options.validate returned NaN; it must return a number")
        return value if self.dp is None else self.dp.from_rank0(value)


@dataclass
class _Context:
    """Where a stage sits in the run, for its resume points."""

    index: int
    plan: list[list[Any]]
    summary: TrainSummary
    point: ResumePoint | None
    log_lines: int = field(init=False)

    def __post_init__(self) -> None:
        if self.point is not None:
            self.log_lines = self.point.log_lines
        else:  # every epoch of the finished stages logged one line
            self.log_lines = sum(s.epochs for s in self.summary.stages)


def _truncate_log(path: Path, keep: int) -> None:
    """Keep the first ``keep`` lines of the log (0: remove it), dropping epochs after the
    resume point (an epoch logged but killed before its checkpoint is run again)."""
    if keep == 0 or not path.exists():
        path.unlink(missing_ok=True)
        return
    lines = path.read_text().splitlines(keepends=True)[:keep]
    atomic_file(path, lambda tmp: tmp.write_text("".join(lines)))


def _select(model: TorchRecommender, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Parameters whose names start with one of ``prefixes`` (all when empty)."""
    named = list(model.named_parameters())
    if not prefixes:
        return [p for _, p in named]
    chosen = [p for name, p in named if name.startswith(tuple(prefixes))]
    if not chosen:
        names = ", ".join(name for name, _ in named) or "none"
        raise ValueError(f"no parameter name starts with {list(prefixes)}; parameters: {names}")
    return chosen


def _save_checkpoint(state: dict[str, torch.Tensor], path: Path, stage: str, epoch: int) -> None:
    """Write ``state`` with safetensors to a temp file, then atomically replace ``path``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    atomic_file(path, lambda tmp: save_file(tensors, str(tmp),
                                            metadata={"stage": stage, "epoch": str(epoch)}))
