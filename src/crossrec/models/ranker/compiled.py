"""Compiled trees: the ranker's boosters as native code (lleaves, LLVM through llvmlite).

LightGBM walks its trees node by node from a generic data structure; ``lleaves`` turns a
model's trees into nested branches compiled by LLVM for this CPU, the same scores (up to float
rounding, ~1e-16) at about 5 x the speed on the ranker's candidate rows. Serving spends a
third of its CPU in those trees (benchmarks/RESULTS.md, serving), so the ranker predicts
through compiled trees whenever the optional ``trees`` extra (``pip install crossrec[trees]``)
is installed, and through LightGBM otherwise (``RankerConfig.compile_trees`` switches it off).

The bagged boosters are merged into one tree list (``learn.merged_trees``) and compiled once;
their mean is the merged sum / n. Compiling takes seconds, so the object code is cached under
``$CROSSREC_CACHE/trees/``, keyed by the model text, the lleaves and llvmlite versions and the
host CPU (object code compiled for one CPU may not run on another); it is written to a temporary
file and renamed, so two server workers compiling at once never read half a file. Every fit
makes a new model, so the folder keeps the ``KEEP`` most recently used files (tens of KB each).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
KEEP = 64  # compiled models kept in the cache folder (the most recently used)


class CompiledTrees:
    """``predict(x)``: the mean score of ``n_boosters`` boosters whose trees were merged into
    one compiled model (``model``: a compiled ``lleaves.Model``)."""

    def __init__(self, model: Any, n_boosters: int) -> None:
        self.model = model
        self.n_boosters = n_boosters

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``float64 [N]`` scores of the rows ``x`` (``[N, F]``, NaN = missing), one thread."""
        if not len(x):
            return np.zeros(0)
        rows = np.ascontiguousarray(x, dtype=np.float64)
        return np.asarray(self.model.predict(rows, n_jobs=1)) / self.n_boosters


def available() -> bool:
    """Whether lleaves (and its llvmlite) can be imported."""
    try:
        import lleaves  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except ImportError:
        return False
    return True


def _key(text: str) -> str:
    import lleaves
    import llvmlite
    import llvmlite.binding as llvm

    host = f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    versions = f"{getattr(lleaves, '__version__', '?')}|{llvmlite.__version__}"
    return hashlib.sha256("\0".join((text, versions, host)).encode()).hexdigest()[:32]


def compile_trees(boosters: list[Any]) -> CompiledTrees | None:
    """The compiled mean of ``boosters`` (LightGBM boosters), or None when lleaves is not
    installed or cannot read the model (a warning says why; the caller keeps LightGBM)."""
    if not boosters or not available():
        return None
    from crossrec.models.ranker.learn import merged_trees
    from crossrec.paths import cache_dir

    merged = merged_trees(boosters) if len(boosters) > 1 else boosters[0]
    if merged is None:
        return None
    text = merged.model_to_string()
    folder = cache_dir() / "trees"
    try:
        import lleaves

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_key(text)}.o"
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            model_file = os.path.join(tmp, "model.txt")
            with open(model_file, "w") as fh:
                fh.write(text)
            model = lleaves.Model(model_file=model_file)
            if path.exists():
                model.compile(cache=str(path))
                os.utime(path)
            else:
                part = os.path.join(tmp, "trees.o")
                model.compile(cache=part)
                os.replace(part, path)
                _prune(folder)
    except Exception as exc:  # noqa: BLE001 - any failure leaves LightGBM in charge
        log.warning("compiled trees unavailable (%s: %s); predicting with LightGBM",
                    type(exc).__name__, exc)
        return None
    return CompiledTrees(model, len(boosters))


def _prune(folder: Any) -> None:
    """Delete all but the ``KEEP`` most recently used ``*.o`` files of ``folder``."""
    files = []
    for f in folder.glob("*.o"):
        try:
            files.append((f.stat().st_mtime, f))
        except FileNotFoundError:  # another process pruned it
            continue
    for _, f in sorted(files, reverse=True)[KEEP:]:
        f.unlink(missing_ok=True)
