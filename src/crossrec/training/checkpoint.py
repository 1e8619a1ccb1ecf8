"""Resumable training state: written atomically at the end of every epoch, read on resume.

A resume point is a directory ``<run_dir>/resume`` with two files:

- ``tensors.safetensors``: the model's current weights (``model.*``), the best weights of the
  running stage (``best.*``), the optimiser's tensors (``optim.*``) and torch's RNG states
  (``rng.torch``, ``rng.cuda.<i>``);
- ``state.json``: everything else (stage index, epoch, early-stopping counter, best validation
  value, the numpy ``Generator`` and ``random`` states, finished stage summaries) and the
  skeleton of the optimiser's state dict, whose tensors point into the safetensors file.

Nothing is pickled: the JSON is plain data and the tensors are read with safetensors only.
The directory is replaced as a whole (``atomic_directory``), so a ``kill -9`` at any moment
leaves either the previous resume point or the new one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossrec.atomic import atomic_directory
from crossrec.errors import CrossrecError

RESUME_DIR = "resume"
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
FORMAT = 1


class CheckpointError(CrossrecError):
    """A resume point that cannot be used for this run (missing, corrupt or another plan)."""


@dataclass
class ResumePoint:
    """Where a run stood at the end of an epoch.

    Attributes:
        plan: ``[[stage name, planned epochs], ...]`` of the run, checked on resume.
        stage_index: index of the running stage in the plan.
        epoch: epochs of that stage already done (1-based count).
        stopped: the stage is over after ``epoch`` (patience ran out).
        best_valid / best_epoch / bad_epochs: early-stopping state of the stage.
        loss: mean training loss of the last epoch.
        seconds: wall time spent in the stage so far.
        log_lines: lines of ``train_log.jsonl`` that belong to the run up to this point.
        finished: ``StageSummary`` fields of the stages already done.
        model: current weights ``{name: tensor}``.
        best: best weights of the stage so far (empty when there is no validation).
        optimizer: the optimiser's ``state_dict()``.
        rng: numpy ``Generator`` state, ``random`` state and torch RNG states.
    """

    plan: list[list[Any]]
    stage_index: int
    epoch: int
    stopped: bool
    best_valid: float | None
    best_epoch: int
    bad_epochs: int
    loss: float
    seconds: float
    log_lines: int
    finished: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    best: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


def capture_rng(rng: np.random.Generator) -> dict[str, Any]:
    """The numpy generator's, ``random``'s and torch's (CPU and CUDA) RNG states."""
    version, internal, gauss = random.getstate()
    out: dict[str, Any] = {"numpy": rng.bit_generator.state,
                           "python": [version, list(internal), gauss],
                           "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def restore_rng(rng: np.random.Generator, states: dict[str, Any]) -> None:
    """Put back the states taken by ``capture_rng`` (``rng`` is changed in place)."""
    rng.bit_generator.state = states["numpy"]
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _flatten(obj: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of nested dicts/lists/tuples; tensors go to ``tensors`` under ``name``."""
    if isinstance(obj, torch.Tensor):
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{name}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot checkpoint {name} of type {type(obj).__name__}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    return obj


def save_resume_point(run_dir: Path, point: ResumePoint) -> None:
    """Write ``point`` to ``run_dir/resume`` atomically (the whole directory or nothing)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    state = {
        "format": FORMAT,
        **{k: getattr(point, k) for k in ("plan", "stage_index", "epoch", "stopped",
                                          "best_valid", "best_epoch", "bad_epochs", "loss",
                                          "seconds", "log_lines", "finished")},
        "model": _flatten(point.model, "model", tensors),
        "best": _flatten(point.best, "best", tensors),
        "optimizer": _flatten(point.optimizer, "optim", tensors),
        "rng": _flatten(point.rng, "rng", tensors),
    }
    text = json.dumps(state)
    with atomic_directory(run_dir / RESUME_DIR) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE))
        (tmp / STATE_FILE).write_text(text)


def find_resume_point(run_dir: Path) -> Path | None:
    """The resume directory of ``run_dir``, or None when the run never finished an epoch.

    A kill between the two renames of ``atomic_directory`` leaves the previous point as
    ``.resume.old``; it is used then.
    """
    for name in (RESUME_DIR, f".{RESUME_DIR}.old"):
        path = run_dir / name
        if (path / STATE_FILE).is_file() and (path / TENSORS_FILE).is_file():
            return path
    return None


def clear_resume_point(run_dir: Path) -> None:
    """Remove the resume point of ``run_dir`` (a fresh run starts)."""
    for name in (RESUME_DIR, f".{RESUME_DIR}.old"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def load_resume_point(path: Path) -> ResumePoint:
    """Read a resume directory written by ``save_resume_point``.

    Raises:
        CheckpointError: a file is unreadable or of another format.
    """
    from safetensors.torch import load_file

    try:
        state = json.loads((path / STATE_FILE).read_text())
        tensors = load_file(str(path / TENSORS_FILE))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the resume point ({e})") from e
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path / STATE_FILE}: format {state.get('format')!r}, "
                              f"expected {FORMAT}")
    try:
        data = {k: (_unflatten(v, tensors) if k in ("model", "best", "optimizer", "rng") else v)
                for k, v in state.items() if k != "format"}
        return ResumePoint(**data)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path / STATE_FILE}: incomplete resume point ({e})") from e
