"""Finished (model, seed) runs of a benchmark, kept on disk so that an interrupted benchmark
continues where it stopped (``crossrec benchmark ... --resume``).

Each run is a directory ``<root>/<key>/`` holding the test ``EvalResult`` (per-user rows and
summary as Parquet, the rest as JSON) and the fit time. ``key`` hashes everything that decides
the result: the experiment config (its name, seed list and other model tables excluded), the
model's own table and the seed. A run whose inputs changed has another key, so it is run again
rather than read back; adding a model to a benchmark leaves the other models' runs valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from crossrec.atomic import atomic_directory
from crossrec.eval.result import EvalResult


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


def save_run(root: Path, key: str, test: EvalResult, fit_seconds: float, label: str) -> None:
    """Write one finished run atomically (a half-written run is never read back)."""
    with atomic_directory(root / key) as tmp:
        test.per_user.to_parquet(tmp / "per_user.parquet", index=False)
        test.summary.to_parquet(tmp / "summary.parquet", index=False)
        meta = {"label": label, "fit_seconds": fit_seconds, "protocol": test.protocol,
                "domain": test.domain, "part": test.part, "params": test.params}
        (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=str))


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
