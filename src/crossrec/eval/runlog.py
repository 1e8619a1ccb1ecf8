"""The (model, seed) runs of a benchmark, kept on disk: what each run found, and where an
interrupted benchmark continues (``crossrec benchmark ... --resume``).

Each finished run is a directory ``<root>/<key>/`` holding the test ``EvalResult`` (per-user
rows ``per_user.parquet`` and ``summary.parquet``), ``run.json`` (label, seed, fit seconds,
protocol, parameters) and ``train_log.jsonl`` (one JSON line per training epoch of a neural
model, then one ``{"event": "fit", ...}`` line). A fit in progress lives in ``<root>/<key>.fit/``
(the trainer's log and resume point, ``crossrec.training``), so a killed benchmark run again
with ``--resume`` continues that fit from its last finished epoch; the directory is removed
once the run is saved.

``key`` hashes everything that decides the result: the experiment config (its name, seed list
and other model tables excluded), the model's own table and the seed. A run whose inputs
changed has another key, so it is run again rather than read back; adding a model to a
benchmark leaves the other models' runs valid.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from crossrec.atomic import atomic_directory
from crossrec.eval.result import EvalResult

RESUMES_FILE = "resumes.jsonl"
"""In a fit directory: one line per time the fit was continued from a resume point."""


def run_key(experiment: dict[str, Any], spec: dict[str, Any], seed: int) -> str:
    """Hex digest of the inputs of one (model, seed) run; the experiment's ``name``,
    ``train.seeds`` and model tables (``model``, ``models``) do not count: ``spec`` does."""
    exp = json.loads(json.dumps(experiment, default=str))
    exp.get("train", {}).pop("seeds", None)
    for field in ("name", "model", "models"):
        exp.pop(field, None)
    blob = json.dumps({"experiment": exp, "model": spec, "seed": seed}, sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def fit_dir(root: Path, key: str) -> Path:
    """Where the fit of run ``key`` keeps its training log and resume point until it is saved."""
    return root / f"{key}.fit"


def save_run(root: Path, key: str, test: EvalResult, fit_seconds: float, label: str,
             seed: int | None = None) -> None:
    """Write one finished run atomically (a half-written run is never read back), with the
    epochs its fit logged in ``fit_dir`` (then removed) and a final ``fit`` event line."""
    from crossrec.training.trainer import LOG_FILE

    fitting = fit_dir(root, key)
    with atomic_directory(root / key) as tmp:
        test.per_user.to_parquet(tmp / "per_user.parquet", index=False)
        test.summary.to_parquet(tmp / "summary.parquet", index=False)
        meta = {"label": label, "seed": seed, "fit_seconds": fit_seconds,
                "protocol": test.protocol, "domain": test.domain, "part": test.part,
                "params": test.params}
        (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=str))
        epochs = fitting / LOG_FILE
        lines = epochs.read_text().splitlines() if epochs.is_file() else []
        event = {"event": "fit", "label": label, "seed": seed, "seconds": fit_seconds,
                 "epochs": len(lines)}
        (tmp / LOG_FILE).write_text("".join(f"{x}\n" for x in _with_resumes(fitting, lines))
                                    + json.dumps(event) + "\n")
    shutil.rmtree(fitting, ignore_errors=True)


def note_resume(root: Path, key: str, after_epoch: int, stage: str, log_lines: int) -> None:
    """Record that the fit of run ``key`` continues after ``log_lines`` logged epochs (its
    stage ``stage`` after epoch ``after_epoch``): a ``resumed`` line of the final log."""
    line = {"event": "resumed", "stage": stage, "after_epoch": after_epoch,
            "log_lines": log_lines}
    with open(fit_dir(root, key) / RESUMES_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")


def forget_resumes(root: Path, key: str) -> None:
    """A fit of run ``key`` starts afresh: earlier ``resumed`` notes no longer apply."""
    (fit_dir(root, key) / RESUMES_FILE).unlink(missing_ok=True)


def _with_resumes(fitting: Path, lines: list[str]) -> list[str]:
    """The epoch lines with each ``resumed`` note inserted where the fit continued."""
    notes = fitting / RESUMES_FILE
    if not notes.is_file():
        return lines
    out = list(lines)
    found = [json.loads(x) for x in notes.read_text().splitlines() if x.strip()]
    for shift, note in enumerate(sorted(found, key=lambda n: n["log_lines"])):
        out.insert(min(len(out), note["log_lines"] + shift), json.dumps(note))
    return out


def load_run(root: Path, key: str) -> tuple[EvalResult, float] | None:
    """The test result and fit seconds of a finished run, or None when there is none."""
    where = root / key
    if not (where / "run.json").exists():
        return None
    meta = json.loads((where / "run.json").read_text())
    summary = pd.read_parquet(where / "summary.parquet")
    if "k" in summary:
        summary["k"] = summary["k"].astype("Int64")
    test = EvalResult(meta["protocol"], meta["domain"], meta["part"],
                      pd.read_parquet(where / "per_user.parquet"), summary, meta["params"])
    return test, float(meta["fit_seconds"])
