"""Raw public Amazon review files (McAuley lab releases 2014, 2018 and 2023), one file per domain.

Nothing is downloaded: fetch the files yourself (see ``DOWNLOAD_HINT``) and pass their paths.
Plain or gzip-compressed (``.gz``) files are read, in three shapes, told apart by their content:

- "ratings only" CSV without header: ``user,item,rating,timestamp`` in the 2014 release
  (``ratings_Books.csv``), ``item,user,rating,timestamp`` in the 2018 release (``Books.csv``);
  the order is detected from the ids (ASINs are 10 characters: ``B`` + 9 or an ISBN-10) or
  forced with ``csv_order``;
- reviews as JSON lines (5-core or full): ``reviewerID, asin, overall, unixReviewTime``
  (2014/2018) or ``user_id, parent_asin, rating, timestamp`` (2023, milliseconds). Some 2014
  dumps hold Python dict literals (``{'asin': ...}``) instead of JSON; those lines are read too;
- metadata ``meta_<Category>.json(.gz)``: ``asin`` (or ``parent_asin``), ``title``,
  ``categories`` (2014, a list of category paths) or ``category`` (2018), ``brand`` (or
  ``store``). Only the items that occur in the domain's reviews are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.builder import DatasetBuilder
from crossrec.data.sources.table import (
    Table,
    as_str,
    check_file,
    iter_json_lines,
    join_text,
    open_text,
    read_table,
)
from crossrec.errors import DataError

DOWNLOAD_HINT = """\
Amazon review data are not downloaded by crossrec. Get them from the McAuley lab pages:
  2018 release (reviews, 5-core, ratings-only CSV, meta_<Category>.json.gz):
    https://nijianmo.github.io/amazon/index.html
    files under https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/
  2014 release (ratings_<Category>.csv, reviews_<Category>_5.json.gz, meta_<Category>.json.gz):
    https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html
  2023 release (Amazon Reviews'23): https://amazon-reviews-2023.github.io/
then pass them as read_amazon_reviews({"books": "Books_5.json.gz", ...},
meta={"books": "meta_Books.json.gz"})."""

_ASIN = re.compile(r"^(B[0-9A-Z]{9}|\d{9}[\dX])$")
# JSON keys of the releases, first match wins
_USER_KEYS = ("reviewerID", "user_id")
_ITEM_KEYS = ("parent_asin", "asin")
_RATING_KEYS = ("overall", "rating")
_TIME_KEYS = ("unixReviewTime", "timestamp")  # "timestamp" (2023) is in milliseconds
_CATEGORY_KEYS = ("categories", "category")
_BRAND_KEYS = ("brand", "store")


def read_amazon_reviews(
    files: Mapping[str, str | Path],
    meta: Mapping[str, str | Path] | None = None,
    *,
    csv_order: str = "auto",
    name: str = "amazon",
    builder: DatasetBuilder | None = None,
) -> DatasetBuilder:
    """Add Amazon ratings/reviews (one file per domain) and, optionally, item metadata.

    Args:
        files: domain -> ratings CSV or reviews JSON-lines file (``.gz`` or not).
        meta: domain -> ``meta_<Category>.json(.gz)``; only reviewed items are kept.
        csv_order: column order of ratings CSV files: ``"user_item"`` (2014),
            ``"item_user"`` (2018) or ``"auto"`` (guess from which column holds ASINs).
        name: dataset name when a new builder is created.
        builder: add to this builder instead of a new one.

    Returns:
        The builder; call ``.build(k_core=...)`` on it.

    Raises:
        DataError: a missing or malformed file (file and line number).
    """
    if csv_order not in ("auto", "user_item", "item_user"):
        raise DataError(f"csv_order must be auto, user_item or item_user, not {csv_order!r}")
    unknown = sorted(set(meta or {}) - set(files))
    if unknown:
        raise DataError(f"meta: domain(s) {unknown} have no review file in files")
    builder = builder if builder is not None else DatasetBuilder(name)
    for domain, path in files.items():
        path = check_file(path)
        rows = _read_ratings(path, csv_order) if _is_csv(path) else _read_reviews(path)
        builder.add_interactions(rows, domain=domain, source=str(path))
        if meta and domain in meta:
            items = read_amazon_meta(meta[domain], keep=set(rows["item_id"]))
            builder.add_items(items, domain=domain, source=str(meta[domain]))
    return builder


def read_amazon_meta(path: str | Path, *, keep: set[str] | None = None) -> pd.DataFrame:
    """Item metadata frame (``item_id, title, categories, brand``) from a ``meta_*.json`` file.

    Args:
        path: the metadata file (JSON lines or Python-literal lines, ``.gz`` or not).
        keep: only these item ids (default: all).
    """
    path = check_file(path)
    rows = []
    for line_no, obj in iter_json_lines(path, python_literals=True):
        item = _first(obj, _ITEM_KEYS)
        if item is None:
            raise DataError(f"{path}, line {line_no}: no 'asin' or 'parent_asin'")
        item = str(item)
        if keep is not None and item not in keep:
            continue
        rows.append((item, join_text(obj.get("title")),
                     join_text(_first(obj, _CATEGORY_KEYS)), join_text(_first(obj, _BRAND_KEYS))))
    return pd.DataFrame(rows, columns=["item_id", "title", "categories", "brand"])


def _is_csv(path: Path) -> bool:
    """Tell a ratings CSV from JSON lines by the first non-blank character."""
    with open_text(path) as f:
        for line in f:
            if line.strip():
                return not line.lstrip().startswith("{")
    raise DataError(f"{path}: the file is empty (only blank lines)")


def _read_ratings(path: Path, order: str) -> pd.DataFrame:
    table = read_table(path, format="csv", names=["a", "b", "rating", "timestamp"])
    first, second = table.frame["a"], table.frame["b"]
    if order == "auto":
        sample = slice(0, 2000)
        a_asin = first[sample].str.match(_ASIN).mean()
        b_asin = second[sample].str.match(_ASIN).mean()
        order = "item_user" if a_asin > b_asin else "user_item"
    users, items = (first, second) if order == "user_item" else (second, first)
    return pd.DataFrame({
        "user_id": as_str(users), "item_id": as_str(items),
        "rating": table.numbers("rating"), "timestamp": table.timestamps("timestamp"),
    })


def _read_reviews(path: Path) -> pd.DataFrame:
    users, items, ratings, times = [], [], [], []
    lines = []
    millis = False
    for line_no, obj in iter_json_lines(path, python_literals=True):
        user, item = _first(obj, _USER_KEYS), _first(obj, _ITEM_KEYS)
        if user is None or item is None:
            raise DataError(f"{path}, line {line_no}: no reviewer id or asin "
                            f"(keys: {', '.join(list(obj)[:8])})")
        users.append(str(user))
        items.append(str(item))
        rating = _first(obj, _RATING_KEYS)
        ratings.append("" if rating is None else rating)
        if "unixReviewTime" in obj:
            times.append(obj["unixReviewTime"])
        else:
            millis = millis or "timestamp" in obj
            times.append(obj.get("timestamp", ""))
        lines.append(line_no)
    if not users:
        raise DataError(f"{path}: the file is empty (only blank lines)")
    table = Table(pd.DataFrame({"rating": ratings, "timestamp": times}, dtype=object), path,
                  "jsonl", lines=np.asarray(lines))
    stamps = table.timestamps("timestamp")
    return pd.DataFrame({
        "user_id": users, "item_id": items, "rating": table.numbers("rating"),
        "timestamp": stamps // 1000 if millis else stamps,
    })


def _first(obj: dict, keys: tuple[str, ...]) -> object | None:
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    return None
