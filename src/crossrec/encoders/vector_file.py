"""Precomputed item vectors of another modality (image, audio, graph embeddings made elsewhere).

A vector file is Parquet with one row per item: ``item_id`` (str), ``vector`` (a list of
floats, the same length in every row) and, when item ids repeat across domains, ``domain``.
Relative paths resolve against the data directory (``CROSSREC_DATA``), like dataset paths.
``load_item_vectors(path, dataset)`` aligns the file with the dataset's items: L2-normalised
rows, zero rows for items the file lacks (counted). Rows of items the dataset does not have
are ignored (counted); anything malformed is an error that names the file and the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError


@dataclass(frozen=True)
class ItemVectors:
    """``vectors`` float32 ``[n_items, dim]`` aligned with the dataset's items (zero rows for
    ``missing`` items); ``found``: dataset items with a row; ``unknown``: file rows of items
    the dataset does not have."""

    vectors: np.ndarray
    found: int
    missing: int
    unknown: int


def resolve(path: str | Path) -> Path:
    """An absolute path, or one relative to the data directory."""
    from crossrec.paths import data_dir

    p = Path(path)
    return p if p.is_absolute() else data_dir() / p


def load_item_vectors(path: str | Path, dataset: MultiDomainDataset) -> ItemVectors:
    """Read a vector file and align it with ``dataset``'s global item indices.

    Raises:
        DataError: a missing file or column, a row whose vector is missing, has another
            length than the first row's, or holds a non-finite value, or an item given twice
            (each named by file and row, counting from 1).
    """
    file = resolve(path)
    if not file.is_file():
        raise DataError(f"item vector file {file} not found")
    try:
        frame = pd.read_parquet(file)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear message
        raise DataError(f"{file}: not a readable Parquet file ({e})") from None
    for column in ("item_id", "vector"):
        if column not in frame.columns:
            raise DataError(f"{file}: missing column {column!r} (has: "
                            f"{', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise DataError(f"{file}: no rows")
    vectors = _matrix(frame["vector"].tolist(), file)
    ids = frame["item_id"].astype(str).to_numpy(dtype=object)
    if "domain" in frame.columns:
        domains = frame["domain"].astype(str).to_numpy(dtype=object)
        index = np.full(len(frame), -1, dtype=np.int64)
        for d in np.unique(domains):
            rows = np.flatnonzero(domains == d)
            if d in dataset.domains:
                index[rows] = dataset.item_index(d, ids[rows], missing="ignore")
    else:  # an id may name an item in every domain that has it
        index = np.full(len(frame), -1, dtype=np.int64)
        for d in dataset.domains:
            hit = dataset.item_index(d, ids, missing="ignore").astype(np.int64)
            clash = (hit >= 0) & (index >= 0)
            if clash.any():
                row = int(np.flatnonzero(clash)[0]) + 1
                raise DataError(f"{file}, row {row}: item_id {ids[row - 1]!r} exists in several "
                                "domains; add a 'domain' column")
            index = np.where(hit >= 0, hit, index)
    known = index >= 0
    order = np.sort(index[known])
    dup = np.flatnonzero(order[1:] == order[:-1])
    if len(dup):
        item = int(order[dup[0]])
        row = int(np.flatnonzero(index == item)[1]) + 1
        raise DataError(f"{file}, row {row}: item {ids[row - 1]!r} is given twice")
    out = np.zeros((dataset.n_items, vectors.shape[1]), dtype=np.float32)
    norms = np.linalg.norm(vectors[known], axis=1, keepdims=True)
    out[index[known]] = vectors[known] / np.maximum(norms, 1e-12)
    found = int(known.sum())
    return ItemVectors(out, found, dataset.n_items - found, int((~known).sum()))


def _matrix(rows: list, file: Path) -> np.ndarray:
    """``float32 [n, dim]`` from a list of per-row sequences, checked row by row."""
    dim = None
    out = []
    for n, v in enumerate(rows, 1):
        if v is None:
            raise DataError(f"{file}, row {n}: vector is missing")
        arr = np.asarray(v, dtype=np.float32)
        if arr.ndim != 1 or arr.size == 0:
            raise DataError(f"{file}, row {n}: vector must be a non-empty list of numbers")
        dim = dim or arr.size
        if arr.size != dim:
            raise DataError(f"{file}, row {n}: vector has {arr.size} values, row 1 has {dim}")
        if not np.isfinite(arr).all():
            raise DataError(f"{file}, row {n}: vector holds a non-finite value")
        out.append(arr)
    return np.stack(out)
