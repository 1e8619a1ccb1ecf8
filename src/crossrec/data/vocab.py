"""Vocabulary: the one place where raw string ids become contiguous int32 indices."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.errors import DataError

FEW_IDS = 16  # up to this many ids, ``index`` looks each one up (~3 us) instead of building
# a pandas Index for ``get_indexer`` (~70 us whatever the size)


class Vocabulary:
    """Maps raw ids (str) to contiguous indices ``0..n-1`` and back.

    Example:
        >>> v = Vocabulary(["u7", "u3"])
        >>> v.index(["u3"]).tolist(), v.raw([0]).tolist()
        ([1], ['u7'])
    """

    def __init__(self, ids: Iterable[str], *, name: str = "id") -> None:
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object)
        self.name = name
        self._index = pd.Index(arr.astype(str), dtype=object)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise DataError(f"vocabulary '{name}': duplicate id {dup!r}")

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, raw: object) -> bool:
        return raw in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name!r}, n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """All raw ids in index order, ``object[n]``."""
        return self._index.to_numpy()

    def index(
        self, raw: Sequence[str] | np.ndarray | pd.Series, *, missing: str = "raise"
    ) -> np.ndarray:
        """Raw ids -> ``int32[n]`` indices.

        Args:
            raw: raw ids.
            missing: ``"raise"`` (DataError naming the first unknown id) or ``"ignore"`` (-1).
        """
        values = np.asarray(raw, dtype=object).astype(str)
        if len(values) <= FEW_IDS:  # a request's ids: probe the hash table, no new pd.Index
            idx = np.fromiter((self._position(v) for v in values.tolist()), np.int64,
                              len(values))
        else:
            idx = self._index.get_indexer(values)
        if missing == "raise" and (idx < 0).any():
            bad = str(values[idx < 0][0])
            raise DataError(f"unknown {self.name} {bad!r} ({int((idx < 0).sum())} unknown in all)")
        return idx.astype(np.int32)

    def _position(self, raw: str) -> int:
        try:
            return int(self._index.get_loc(raw))
        except KeyError:
            return -1

    def raw(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Indices -> raw ids, ``object[n]``."""
        return self._index.to_numpy()[np.asarray(idx, dtype=np.int64)]

    def save(self, path: str | Path) -> None:
        """Write as a one-column Parquet file (``id``)."""
        pd.DataFrame({"id": self.ids.astype(str)}).to_parquet(path, index=False)

    @classmethod
    def load(cls, path: str | Path, *, name: str = "id") -> Vocabulary:
        return cls(pd.read_parquet(path)["id"].to_numpy(), name=name)

    def to_json(self) -> str:
        return json.dumps(self.ids.tolist())
