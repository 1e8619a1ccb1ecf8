"""RecBole atomic files (``<name>.inter``, ``<name>.item``), optionally cut into domains by genre.

RecBole's format: tab-separated, one header line of ``field:type`` (``user_id:token``,
``rating:float``, ``class:token_seq`` ...), no quoting; ``token_seq`` values are space-separated.
The type suffix is dropped. ``.user`` files are not read (the dataset keeps no user attributes).

Domain rule (one dataset -> several domains): every item goes to exactly ONE domain, the first
listed domain that shares a genre with the item; items with none of the listed genres are dropped
together with their interactions (the count is logged). Example with MovieLens-100K, where
"Toy Story" is "Animation Children's Comedy":

    read_recbole(root, domains={"kids": ["Animation", "Children's"], "comedy": ["Comedy"]})

puts it in "kids" only. ``domains=["Action", "Romance"]`` is the shortcut for one genre per domain
(domain names = the genres). Without a rule everything is one domain named after the dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.builder import DatasetBuilder
from crossrec.data.sources.table import Table, as_str, read_table
from crossrec.data.sources.tabular import note_bad_rows
from crossrec.errors import DataError

logger = logging.getLogger(__name__)

GENRE_FIELDS = ("genre", "class")
TITLE_FIELDS = ("movie_title", "title")


def read_recbole(
    path: str | Path,
    *,
    domains: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    domain_by: str | None = None,
    name: str | None = None,
    builder: DatasetBuilder | None = None,
    drop_bad_rows: bool = False,
) -> DatasetBuilder:
    """Add a RecBole dataset's interactions and items.

    Args:
        path: the ``.inter`` file, or the folder holding it (``<folder name>.inter`` or the
            folder's only ``.inter`` file).
        domains: the domain rule: domain name -> genres, or a list of genres (one domain each,
            named after the genre). ``None``: one domain named after the dataset.
        domain_by: the ``.item`` field whose (space-separated) tokens are matched against the
            genres; default ``"genre"``, which means the field ``genre`` or else ``class``
            (MovieLens in RecBole calls it ``class``).
        name: dataset name (default: the ``.inter`` file's name without extension).
        builder: add to this builder instead of a new one.
        drop_bad_rows: drop interaction rows with a bad rating or timestamp and count them in
            the cleaning report, instead of raising a DataError.

    Returns:
        The builder; call ``.build(...)`` on it. Rows a domain rule drops (items with none of
        its genres) are counted in the cleaning report.

    Raises:
        DataError: missing files or columns, malformed rows (file and line), a listed genre that
            no item has.
    """
    inter_path = _inter_file(Path(path))
    name = name or inter_path.stem
    item_path = inter_path.with_suffix(".item")
    inter = _read_atomic(inter_path)
    inter.drop_bad = drop_bad_rows
    inter.require(["user_id", "item_id"])
    rows = pd.DataFrame({"user_id": as_str(inter.frame["user_id"]),
                         "item_id": as_str(inter.frame["item_id"])})
    if "rating" in inter.frame.columns:
        rows["rating"] = inter.numbers("rating")
    if "timestamp" in inter.frame.columns:
        rows["timestamp"] = inter.timestamps("timestamp")

    builder = builder if builder is not None else DatasetBuilder(name)
    if inter.bad:
        note_bad_rows(builder, inter)
        rows = rows[~inter.bad_rows()]
    items = None
    if item_path.exists():
        table = _read_atomic(item_path)
        table.require(["item_id"])
        items = pd.DataFrame({"item_id": as_str(table.frame["item_id"])})
        title = next((c for c in TITLE_FIELDS if c in table.frame.columns), None)
        if title is not None:
            items["title"] = table.frame[title].astype(str).to_numpy()
    if domains is None:
        rows["domain"] = name
        if items is not None:
            items["domain"] = name
            if (field := _genre_field(table, domain_by, required=False)) is not None:
                items["categories"] = table.frame[field].astype(str).to_numpy()
    else:
        if items is None:
            raise DataError(f"{item_path}: no such file (a domain rule needs the item genres)")
        field = _genre_field(table, domain_by, required=True)
        genres = table.frame[field].astype(str)
        items["categories"] = genres.to_numpy()
        items["domain"] = assign_domains(genres, _rule(domains), source=f"{item_path}: {field}")
        unassigned = items["domain"] == ""
        item_domain = dict(zip(items["item_id"], items["domain"], strict=True))
        rows["domain"] = rows["item_id"].map(item_domain).fillna("").to_numpy()
        dropped = rows["domain"] == ""
        logger.info(
            "%s: %d of %d items have none of the listed genres; dropped with their %d "
            "interactions", item_path, int(unassigned.sum()), len(items), int(dropped.sum()),
        )
        builder.note_dropped(f"{item_path.name}: items with none of the genres of the domain "
                             f"rule ({int(unassigned.sum())} items), with their interactions",
                             int(dropped.sum()))
        items, rows = items[~unassigned], rows[~dropped.to_numpy()]
        # rows in rule order, so that the built dataset lists the domains in that order
        order = {d: i for i, d in enumerate(_rule(domains))}
        rows = rows.iloc[np.argsort(rows["domain"].map(order).to_numpy(), kind="stable")]
    builder.add_interactions(rows, source=str(inter_path))
    if items is not None:
        builder.add_items(items, source=str(item_path), where=table.where)
    return builder


def assign_domains(
    genres: pd.Series, rule: dict[str, list[str]], *, source: str = "genres"
) -> np.ndarray:
    """The domain of every item: the first domain of ``rule`` sharing a genre with it, else "".

    Args:
        genres: space-separated genres per item.
        rule: domain -> genres, in priority order.
        source: named in the error when a listed genre occurs nowhere.
    """
    tokens = genres.fillna("").astype(str).str.split()
    exploded = tokens.explode()
    known = set(exploded.dropna())
    for domain, wanted in rule.items():
        missing = [g for g in wanted if g not in known]
        if missing:
            raise DataError(
                f"{source}: domain {domain!r} lists genre(s) {missing} that no item has; "
                f"known genres: {', '.join(sorted(known))}"
            )
    out = np.full(len(genres), "", dtype=object)
    position = np.repeat(np.arange(len(genres)), tokens.str.len().to_numpy())
    values = exploded.dropna().to_numpy()
    for domain, wanted in rule.items():
        has = np.zeros(len(genres), dtype=bool)
        has[position[np.isin(values, wanted)]] = True
        out[has & (out == "")] = domain
    return out


def _rule(domains: Mapping[str, Sequence[str]] | Sequence[str]) -> dict[str, list[str]]:
    if isinstance(domains, str):
        raise DataError(f"domains: give a list of genres or a mapping, not the string {domains!r}")
    if isinstance(domains, Mapping):
        rule = {str(d): [g] if isinstance(g, str) else list(g) for d, g in domains.items()}
    else:
        rule = {str(g): [str(g)] for g in domains}
    if not rule or any(not g for g in rule.values()):
        raise DataError(f"domains: every domain needs at least one genre, got {domains!r}")
    return rule


def _genre_field(table: Table, domain_by: str | None, *, required: bool) -> str | None:
    columns = table.frame.columns
    candidates = GENRE_FIELDS if domain_by in (None, "genre") else (domain_by,)
    field = next((c for c in candidates if c in columns), None)
    if field is None and required:
        raise DataError(
            f"{table.path}: no genre field (looked for {', '.join(candidates)}; "
            f"fields: {', '.join(columns)}); pass domain_by=<field>"
        )
    return field


def _inter_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        named = path / f"{path.name}.inter"
        if named.exists() or len(found) != 1:
            if not named.exists():
                listed = ", ".join(f.name for f in found) or "none"
                raise DataError(f"{path}: expected one '.inter' file (found: {listed})")
            return named
        return found[0]
    if path.suffix != ".inter":
        raise DataError(f"{path}: expected a RecBole '.inter' file or the folder holding one")
    return path


def _read_atomic(path: Path) -> Table:
    """A RecBole atomic file with the ``:type`` suffixes dropped from the field names."""
    table = read_table(path, format="tsv", quote=False)
    table.frame.columns = [str(c).rsplit(":", 1)[0] for c in table.frame.columns]
    return table
