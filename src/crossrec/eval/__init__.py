"""Evaluation: metrics (pure functions), batched full / sampled ranking, significance, reports.

Names are imported lazily so that ``crossrec.eval.report`` does not pull in torch.

Example:
    >>> from crossrec.eval import evaluate  # doctest: +SKIP
    >>> result = evaluate(model, split, ks=(10, 20))  # doctest: +SKIP
    >>> result.value("ndcg", 10, group="cold")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "evaluate": "crossrec.eval.ranking",
    "evaluate_ratings": "crossrec.eval.ranking",
    "EvalResult": "crossrec.eval.result",
    "paired_test": "crossrec.eval.significance",
    "mean_std": "crossrec.eval.significance",
    "write_report": "crossrec.eval.report",
    "format_table": "crossrec.eval.report",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'crossrec.eval' has no attribute {name!r}")
