"""Trainer: the one training loop (stages, epochs, early stopping, checkpoints, logging).

The model owns its batches and its loss (``TorchRecommender.batches`` / ``loss``); the trainer
owns everything around them: optimisers, freezing, validation, the best weights, the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
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
    (all when empty; the others are frozen for the stage), ``stage.epochs`` passes over
    ``model.batches``, validation after each epoch when ``options.validate`` is set (higher is
    better) with early stopping after ``stage.patience`` epochs without improvement, and the
    best weights restored at the end of the stage. With ``options.run_dir`` each epoch appends
    a line to ``train_log.jsonl`` and the best weights go to ``checkpoint.safetensors``.

    Example:
        >>> Trainer(FitOptions(target="movies")).fit(model, train, stages)  # doctest: +SKIP
    """

    def __init__(self, options: FitOptions) -> None:
        self.options = options

    def fit(
        self, model: TorchRecommender, train: MultiDomainDataset, stages: list[Stage]
    ) -> TrainSummary:
        """Train ``model`` in place through ``stages``; returns what happened per stage."""
        rng = np.random.default_rng(self.options.seed)
        run_dir = Path(self.options.run_dir) if self.options.run_dir is not None else None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / LOG_FILE).unlink(missing_ok=True)
        summary = TrainSummary()
        columns = (TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} epochs"), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"))
        with contextlib.ExitStack() as stack:
            # rich prints a newline even when disabled: no Progress at all when silent
            bar = stack.enter_context(Progress(*columns)) if self.options.progress else None
            for stage in stages:
                summary.stages.append(self._stage(model, train, stage, rng, bar, run_dir))
        model.eval()
        return summary

    # ------------------------------------------------------------------ one stage
    def _stage(
        self,
        model: TorchRecommender,
        train: MultiDomainDataset,
        stage: Stage,
        rng: np.random.Generator,
        bar: Progress | None,
        run_dir: Path | None,
    ) -> StageSummary:
        params = _select(model, stage.trainable)
        saved_flags = {name: p.requires_grad for name, p in model.named_parameters()}
        chosen = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        optimizer = torch.optim.Adam(params, lr=stage.learning_rate,
                                     weight_decay=stage.weight_decay)
        task = bar.add_task(f"stage {stage.name}", total=stage.epochs, info="") if bar else None
        best_valid: float | None = None
        best_epoch, best_state, bad_epochs = 0, None, 0
        stopped, epoch, loss = False, 0, float("nan")
        start = time.perf_counter()
        try:
            for epoch in range(1, stage.epochs + 1):
                t0 = time.perf_counter()
                loss = self._epoch(model, train, stage, rng, optimizer, epoch)
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
                if valid is not None and bad_epochs >= stage.patience:
                    stopped = True
                    break
        finally:
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
        optimizer: torch.optim.Optimizer,
        epoch: int,
    ) -> float:
        """One pass over the stage's batches; returns the mean batch loss."""
        model.train()
        total, n_batches = 0.0, 0
        for batch in model.batches(train, stage, rng):
            loss = model.loss(move(batch, self.options.device), stage.name)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"stage {stage.name!r} epoch {epoch}: loss is {loss.item()} after "
                    f"{n_batches} batches; lower the learning rate ({stage.learning_rate})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            n_batches += 1
        return total / n_batches if n_batches else float("nan")

    def _validate(self, model: TorchRecommender) -> float | None:
        if self.options.validate is None:
            return None
        model.eval()
        try:
            with torch.no_grad():
                value = float(self.options.validate(model))
        finally:
            model.train()
        if math.isnan(value):
            raise ValueError("options.validate returned NaN; it must return a number")
        return value


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
