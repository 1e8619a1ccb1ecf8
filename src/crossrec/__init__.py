"""crossrec: cross-domain recommendation with large pretrained models.

The public names are imported lazily so that ``import crossrec`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Vocabulary": "crossrec.data.vocab",
    "DatasetBuilder": "crossrec.data.builder",
    "MultiDomainDataset": "crossrec.data.dataset",
    "Split": "crossrec.data.split",
    "Recommender": "crossrec.models.base",
    "Query": "crossrec.models.base",
    "FitOptions": "crossrec.models.base",
    "MODELS": "crossrec.models",
    "evaluate": "crossrec.eval.ranking",
    "Bundle": "crossrec.bundle",
    "load_config": "crossrec.config",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'crossrec' has no attribute {name!r}")
