"""The generic format: your own interaction logs as CSV, TSV, Parquet or JSON lines.

Bad input gives a ``DataError`` naming the file and the 1-based line (for CSV/TSV with a header,
the header is line 1) or the missing column, never a pandas traceback.

Example:
    >>> from crossrec.data.sources.tabular import read_tabular
    >>> builder = read_tabular("logs.csv", items="items.jsonl", split="split.csv")  # doctest: +SKIP
    >>> dataset = builder.build(k_core=5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.builder import ITEM_ATTRS, PARTS, DatasetBuilder
from crossrec.data.sources.table import Table, as_str, join_text, read_table
from crossrec.errors import DataError

COLUMNS = ("user_id", "item_id", "domain", "rating", "timestamp", "part", *ITEM_ATTRS)


def read_tabular(
    interactions: str | Path,
    *,
    items: str | Path | None = None,
    split: str | Path | None = None,
    domain: str | None = None,
    columns: Mapping[str, str] | None = None,
    format: str | None = None,
    name: str | None = None,
    builder: DatasetBuilder | None = None,
    drop_bad_rows: bool = False,
) -> DatasetBuilder:
    """Add interactions (and optionally items and a predefined split) from your own files.

    Files: an interactions file with ``user_id, item_id, domain`` and optional ``rating``,
    ``timestamp`` (numbers or ISO dates, stored as unix seconds); an optional items file with
    ``item_id, domain`` and optional ``title, text, categories, brand``; an optional split file
    with ``user_id, item_id, domain, part`` (``part`` in train / valid / test), whose part is
    attached to the matching interactions (interactions it does not list are "train").

    Args:
        interactions: CSV, TSV (``.tsv``/``.txt``), Parquet or JSON-lines file (``.gz`` allowed).
        items: item metadata file (any of the same formats).
        split: predefined split file (any of the same formats).
        domain: domain of every row of the files that have no ``domain`` column.
        columns: our column name -> the name in your files, e.g. ``{"user_id": "reviewerID"}``;
            applies to all three files.
        format: ``csv``/``tsv``/``parquet``/``jsonl`` for every file, instead of the extensions.
        name: dataset name when a new builder is created (default: the file name).
        builder: add to this builder (to fuse several sources) instead of a new one.
        drop_bad_rows: drop interaction rows with a bad rating or timestamp (not a number, not
            finite, out of range) and count them in the cleaning report, instead of raising.
            (Pass it to ``build`` too, for item rows in the wrong domain.)

    Returns:
        The builder; call ``.build(k_core=...)`` on it.

    Raises:
        DataError: naming the file and line for a malformed row, the column for a missing one.
    """
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(COLUMNS))
    if unknown:
        raise DataError(f"columns: unknown name(s) {unknown}; known: {', '.join(COLUMNS)}")
    inter = _load(interactions, format, mapping)
    inter.drop_bad = drop_bad_rows
    need = ["user_id", "item_id"] + (["domain"] if domain is None else [])
    inter.require(need, mapping)
    rows = _interaction_rows(inter, domain)
    if split is not None:
        if "part" in rows.columns:
            raise DataError(f"{inter.path}: has a 'part' column and a split file was also given")
        rows["part"] = _split_parts(_load(split, format, mapping), rows, domain, mapping)
    name = name or Path(interactions).name.split(".")[0]
    builder = builder if builder is not None else DatasetBuilder(name)
    if inter.bad:
        note_bad_rows(builder, inter)
        rows = rows[~inter.bad_rows()]
    builder.add_interactions(rows, source=str(inter.path))
    if items is not None:
        table = _load(items, format, mapping)
        table.require(["item_id"] + (["domain"] if domain is None else []), mapping)
        frame = pd.DataFrame({"item_id": as_str(table.frame["item_id"]),
                              "domain": _domains(table, domain)})
        for col in ITEM_ATTRS:
            if col in table.frame.columns:
                frame[col] = [join_text(v) for v in table.frame[col].to_numpy(dtype=object)]
        builder.add_items(frame, source=str(table.path), where=table.where)
    return builder


def note_bad_rows(builder: DatasetBuilder, table: Table) -> None:
    """Count the rows ``table`` rejected (``drop_bad``) in the builder's report, each row once,
    under its first reason."""
    seen = np.zeros(len(table.frame), dtype=bool)
    for reason, mask in table.bad.items():
        builder.note_dropped(f"{table.path.name}: rows with {reason} (--drop-bad-rows)",
                             int((mask & ~seen).sum()))
        seen |= mask


def _load(path: str | Path, format: str | None, mapping: dict[str, str]) -> Table:
    table = read_table(path, format=format)
    frame = table.frame
    rename = {}
    for ours, theirs in mapping.items():
        if theirs in frame.columns and theirs != ours:
            rename[theirs] = ours
            if ours in frame.columns:
                frame = frame.drop(columns=ours)
    table.frame = frame.rename(columns=rename)
    return table


def _domains(table: Table, domain: str | None) -> np.ndarray:
    if "domain" in table.frame.columns:
        return as_str(table.frame["domain"])
    return np.full(len(table.frame), domain, dtype=object)


def _interaction_rows(table: Table, domain: str | None) -> pd.DataFrame:
    frame = table.frame
    rows = pd.DataFrame({"user_id": as_str(frame["user_id"]),
                         "item_id": as_str(frame["item_id"]),
                         "domain": _domains(table, domain)})
    if "rating" in frame.columns:
        rows["rating"] = table.numbers("rating")
    if "timestamp" in frame.columns:
        rows["timestamp"] = table.timestamps("timestamp")
    if "part" in frame.columns:
        rows["part"] = _parts(table)
    return rows


def _parts(table: Table) -> np.ndarray:
    parts = table.frame["part"].astype(str).str.strip().str.lower()
    bad = ~parts.isin(PARTS).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{table.where(row)}: part {table.frame['part'].iloc[row]!r} is not one of "
            f"{', '.join(PARTS)}"
        )
    return parts.to_numpy(dtype=object)


def _split_parts(
    table: Table, rows: pd.DataFrame, domain: str | None, mapping: dict[str, str]
) -> np.ndarray:
    """The part of every interaction row, from the split file ("train" where it has none)."""
    table.require(["user_id", "item_id", "part"] + (["domain"] if domain is None else []), mapping)
    keys = pd.MultiIndex.from_arrays(
        [as_str(table.frame["user_id"]), as_str(table.frame["item_id"]), _domains(table, domain)]
    )
    parts = _parts(table)
    dup = keys.duplicated(keep="first")
    if dup.any():
        first = pd.Series(parts[~dup], index=keys[~dup])
        clash = np.flatnonzero(dup & (first.reindex(keys).to_numpy() != parts))
        if len(clash):
            raise DataError(
                f"{table.where(int(clash[0]))}: this (user_id, item_id, domain) is listed "
                "earlier with another part"
            )
    listed = pd.MultiIndex.from_arrays([rows["user_id"], rows["item_id"], rows["domain"]])
    missing = ~keys.isin(listed)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        user, item, dom = keys[row]
        raise DataError(
            f"{table.where(row)}: split row (user_id={user!r}, item_id={item!r}, domain={dom!r}) "
            f"matches no interaction ({int(missing.sum())} such rows)"
        )
    pos = keys[~dup].get_indexer(listed)
    return np.where(pos >= 0, parts[~dup][pos], "train").astype(object)

