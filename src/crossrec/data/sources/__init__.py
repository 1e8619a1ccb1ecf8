"""Readers of raw formats: each adds interactions and items to a ``DatasetBuilder``.

Every reader is ``read_<name>(path_or_paths, *, ..., builder=None) -> DatasetBuilder``: it creates
a builder unless one is given, so several sources can be fused into one dataset, e.g.::

    builder = read("cdrib", root="data/cdrib-amazon", pair="cloth_sport")
    builder = read("tabular", interactions="my_logs.csv", domain="music", builder=builder)
    dataset = builder.build(k_core=5)

The registry is explicit (no plugin discovery): add a reader here by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from crossrec.data.builder import DatasetBuilder
from crossrec.data.sources.amazon import DOWNLOAD_HINT, read_amazon_reviews
from crossrec.data.sources.arts_office import read_arts_office
from crossrec.data.sources.cdrib import read_cdrib
from crossrec.data.sources.recbole import read_recbole
from crossrec.data.sources.tabular import read_tabular
from crossrec.errors import DataError

READERS: dict[str, Callable[..., DatasetBuilder]] = {
    "tabular": read_tabular,
    "recbole": read_recbole,
    "amazon_reviews": read_amazon_reviews,
    "arts_office": read_arts_office,
    "cdrib": read_cdrib,
}


HINTS: dict[str, str] = {
    "amazon_reviews": DOWNLOAD_HINT,
    "arts_office": (
        "Fetch DG_Final/AO/{item_listA_F.csv,item_listO_AA_F.csv,train_F2.txt,valid_F2.txt,"
        "test_F2.txt} and DG_Final/DG_src/dataset/Entertainment-Education_AO/userlist.txt from "
        "the GitHub repository TingJShen/URLLM into <data dir>/amazon-arts-office/."
    ),
    "cdrib": (
        "Fetch dataset/{cloth_sport,sport_cloth,game_video,video_game}/{train,valid,test}.txt "
        "from the GitHub repository cjx96/CDRIB into <data dir>/cdrib-amazon/."
    ),
    "recbole": (
        "RecBole atomic files, e.g. dataset/ml-100k/ml-100k.{inter,item,user} of the GitHub "
        "repository RUCAIBox/RecBole, into <data dir>/movielens-100k/."
    ),
}


def download_hint(format: str) -> str:
    """What to fetch, and where to put it, for the data of reader ``format`` ("" if none)."""
    return HINTS.get(format, "")


def read(format: str, source=None, /, **options) -> DatasetBuilder:  # noqa: ANN001
    """Run the reader registered as ``format`` with ``options`` (its keyword arguments).

    ``source``, when given, is passed as the reader's first argument (its path or paths).

    Raises:
        DataError: for an unknown format (the message lists the known ones), or options the
            reader does not take.
    """
    try:
        reader = READERS[format]
    except KeyError:
        raise DataError(
            f"unknown data format {format!r}; known: {', '.join(sorted(READERS))}"
        ) from None
    if source is not None:
        first = next(iter(inspect.signature(reader).parameters))
        if first in options:
            raise DataError(f"data format {format!r}: {first!r} given twice")
        options = {first: source, **options}
    try:
        inspect.signature(reader).bind(**options)
    except TypeError as e:
        raise DataError(f"data format {format!r} ({reader.__name__}): {e}") from None
    return reader(**options)


__all__ = [
    "DOWNLOAD_HINT",
    "READERS",
    "download_hint",
    "read",
    "read_amazon_reviews",
    "read_arts_office",
    "read_cdrib",
    "read_recbole",
    "read_tabular",
]
