"""Where ``crossrec train`` writes: a new run directory by default, never an earlier run or
anything else unless asked (``--resume`` continues a run, ``--overwrite`` replaces OUT)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from crossrec.atomic import OutputExistsError, check_output_dir, new_directory, remove_path
from crossrec.errors import CrossrecError
from crossrec.training.checkpoint import find_resume_point
from crossrec.training.trainer import CHECKPOINT_FILE, LOG_FILE

RUNS = Path("runs")
WHAT = "crossrec train run directory"
_STAMP = r"\d{8}-\d{6}"


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a ``crossrec train`` run directory: it has a training log, a
    checkpoint, a resume point, or the bundle and metrics a finished run leaves."""
    return ((path / LOG_FILE).is_file() or (path / CHECKPOINT_FILE).is_file()
            or find_resume_point(path) is not None
            or ((path / "bundle" / "meta.json").is_file() and (path / "metrics.json").is_file()))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"


def default_runs(name: str, root: Path = RUNS) -> list[Path]:
    """Run directories ``train`` chose for config ``name`` under ``root``, oldest first."""
    prefix = f"train-{_slug(name)}-"
    pattern = re.compile(re.escape(prefix) + rf"({_STAMP})(?:-(\d+))?")
    found = []
    for p in root.glob(f"{prefix}*") if root.is_dir() else []:
        m = pattern.fullmatch(p.name)
        if m and is_run_dir(p):
            found.append(((m.group(1), int(m.group(2) or 1)), p))
    return [p for _, p in sorted(found)]


def run_dir(out: Path | None, name: str, *, resume: bool = False,
            overwrite: bool = False, root: Path = RUNS) -> Path:
    """The run directory of ``crossrec train`` for config ``name``, created; refuses
    (``CrossrecError``) before any work where writing there would destroy something.

    ``out`` None: a new ``root/train-<name>-<UTC time>`` (with ``--resume``: the newest of
    those that holds a run). An explicit ``out`` must be missing or empty; with ``resume`` (or
    a torchrun restart) it may hold a run; ``overwrite`` deletes what is there first.
    """
    torchrun = "WORLD_SIZE" in os.environ and "RANK" in os.environ
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    if resume and overwrite:
        raise CrossrecError("--resume continues the run in OUT and --overwrite replaces it: "
                            "give one of them")
    if out is None:
        if torchrun:
            raise CrossrecError("under torchrun give --out (every rank writes the same run "
                                "directory)")
        if resume:
            runs = default_runs(name, root)
            if not runs:
                raise CrossrecError(f"--resume: no earlier run of {name!r} in {root}/ "
                                    f"(train-{_slug(name)}-*); give --out RUN_DIR")
            return runs[-1]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return new_directory(root / f"train-{_slug(name)}-{stamp}")
    if resume or restarted:
        check_output_dir(out, is_own=is_run_dir, what=WHAT)
    elif overwrite:
        if not torchrun or os.environ.get("RANK") == "0":
            remove_path(out)
    elif out.is_dir() and is_run_dir(out):
        raise OutputExistsError(f"{out}: holds an earlier run; continue it with --resume, "
                                "replace it with --overwrite, or choose another --out")
    else:
        check_output_dir(out, what=WHAT)
    out.mkdir(parents=True, exist_ok=True)
    return out
