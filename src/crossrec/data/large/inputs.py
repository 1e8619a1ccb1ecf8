"""Input files of the out-of-core path: discovery, column checks, and the DuckDB expressions
that turn raw columns into the values the in-memory ``tabular`` reader produces.

An input is a file, a directory (every data file below it, e.g. a hive-partitioned tree
``domain=books/part-0.parquet``) or a glob (``logs/*.csv.gz``); the files are read in sorted
path order, which is the row order the result keeps (as the in-memory path keeps the order of
its rows).
"""

from __future__ import annotations

import glob as globlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crossrec.data.sources.table import detect_format, open_text
from crossrec.errors import DataError

READABLE = ("parquet", "csv", "tsv")
_HIVE = re.compile(r"^([^=/]+)=([^/]*)$")
_FLOAT = ("FLOAT", "DOUBLE", "REAL")


@dataclass(frozen=True)
class Inputs:
    """Files of one logical table, all of one format."""

    files: tuple[Path, ...]
    format: str  # parquet / csv / tsv
    hive: bool  # path segments key=value are columns

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def source_sql(self) -> str:
        """A DuckDB table expression over all files (``filename`` column included)."""
        files = "[" + ", ".join(quote(str(f)) for f in self.files) + "]"
        hive = "true" if self.hive else "false"
        if self.format == "parquet":
            return (f"read_parquet({files}, hive_partitioning={hive}, union_by_name=true, "
                    "filename=true)")
        delim = quote("," if self.format == "csv" else "\t")
        return (f"read_csv({files}, header=true, all_varchar=true, delim={delim}, quote='\"', "
                f"union_by_name=true, hive_partitioning={hive}, filename=true)")


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def is_pattern(spec: str | Path) -> bool:
    return any(c in str(spec) for c in "*?[")


def find_inputs(spec: str | Path | Sequence[str | Path], format: str | None = None) -> Inputs:
    """The files of ``spec`` (file, directory, glob, or a list of those), sorted.

    Raises:
        DataError: nothing matches, a file is empty, formats are mixed or not readable here.
    """
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    files: list[Path] = []
    for s in specs:
        p = Path(s)
        if is_pattern(s):
            found = sorted(Path(f) for f in globlib.glob(str(s), recursive=True)
                           if Path(f).is_file())
            if not found:
                raise DataError(f"{s}: no file matches this pattern")
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not _hidden(f, p))
            if not found:
                raise DataError(f"{p}: the directory has no data files")
        elif p.is_file():
            found = [p]
        else:
            raise DataError(f"{p}: no such file or directory")
        files.extend(found)
    fmts = {format or detect_format(f) for f in files}
    if len(fmts) > 1:
        raise DataError(f"{spec}: files of several formats ({', '.join(sorted(fmts))}); "
                        "put one format per input")
    fmt = fmts.pop()
    if fmt not in READABLE:
        raise DataError(f"{files[0]}: the out-of-core path reads {', '.join(READABLE)} files, "
                        f"not {fmt}")
    for f in files:
        if f.stat().st_size == 0:
            raise DataError(f"{f}: the file is empty")
    hive = any(_HIVE.match(part) for f in files for part in f.parts)
    return Inputs(tuple(files), fmt, hive)


def _hidden(f: Path, root: Path) -> bool:
    """Files such as ``_SUCCESS``, ``.crc`` or ``_metadata`` that writers leave beside data."""
    return any(part.startswith((".", "_")) for part in f.relative_to(root).parts)


def file_columns(path: Path, fmt: str) -> list[str]:
    """Column names of one file (Parquet footer or CSV/TSV header) plus hive path keys."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = list(pq.read_schema(path).names)
        except Exception as e:  # noqa: BLE001 - any unreadable footer
            raise DataError(f"{path}: cannot read as Parquet ({e})") from None
    else:
        with open_text(path) as fh:
            header = fh.readline().rstrip("\r\n")
        names = [c.strip().strip('"') for c in header.split("," if fmt == "csv" else "\t")]
    hive = [m.group(1) for part in path.parts[:-1] if (m := _HIVE.match(part))]
    return names + hive


def require(inputs: Inputs, need: Sequence[str], mapping: Mapping[str, str]) -> None:
    """DataError naming the first file and column that is missing (our name and theirs)."""
    for f in inputs.files:
        have = set(file_columns(f, inputs.format))
        for col in need:
            theirs = mapping.get(col, col)
            if theirs not in have:
                named = f"{col!r}" if theirs == col else f"{col!r} (mapped to {theirs!r})"
                raise DataError(f"{f}: missing column {named} (found: {', '.join(sorted(have))})")


def id_expr(col: str, dtype: str) -> str:
    """Ids as text, as ``as_str``: integral floats lose their ``.0``, missing -> ''."""
    c = ident(col)
    if dtype.upper() in _FLOAT:
        return (f"CASE WHEN {c} IS NULL OR isnan({c}) THEN '' WHEN {c} = trunc({c}) "
                f"THEN CAST(CAST({c} AS HUGEINT) AS VARCHAR) ELSE CAST({c} AS VARCHAR) END")
    return f"coalesce(CAST({c} AS VARCHAR), '')"


def number_expr(col: str, dtype: str) -> tuple[str, str | None]:
    """(value as DOUBLE or NULL, condition of a bad value or None)."""
    c = ident(col)
    if dtype.upper() != "VARCHAR":
        return f"CAST({c} AS DOUBLE)", None
    t = f"nullif(trim({c}), '')"
    return f"TRY_CAST({t} AS DOUBLE)", f"{t} IS NOT NULL AND TRY_CAST({t} AS DOUBLE) IS NULL"


def timestamp_expr(col: str, dtype: str) -> tuple[str, str | None]:
    """(unix seconds BIGINT, bad condition): numbers as they are, ISO dates in UTC, empty 0."""
    c, up = ident(col), dtype.upper()
    if up.startswith("TIMESTAMP") or up == "DATE":
        return f"coalesce(CAST(floor(epoch({c})) AS BIGINT), 0)", None
    if up in _FLOAT:
        return f"CASE WHEN {c} IS NULL OR isnan({c}) THEN 0 ELSE CAST(trunc({c}) AS BIGINT) END", \
            None
    if up != "VARCHAR":
        return f"coalesce(CAST({c} AS BIGINT), 0)", None
    t = f"nullif(trim({c}), '')"
    num = f"TRY_CAST({t} AS DOUBLE)"
    date = f"TRY_CAST({t} AS TIMESTAMPTZ)"
    value = (f"CASE WHEN {t} IS NULL THEN 0 WHEN {num} IS NOT NULL THEN "
             f"(CASE WHEN isnan({num}) THEN 0 ELSE CAST(trunc({num}) AS BIGINT) END) "
             f"ELSE CAST(floor(epoch({date})) AS BIGINT) END")
    return value, f"{t} IS NOT NULL AND {num} IS NULL AND {date} IS NULL"


def text_expr(col: str, dtype: str) -> str:
    """Item metadata as ``join_text``: trimmed text, lists joined with ', ', missing ''."""
    c = ident(col)
    if dtype.upper().endswith("[]"):
        return (f"coalesce(array_to_string(list_filter(list_transform({c}, x -> "
                f"trim(CAST(x AS VARCHAR))), x -> x <> ''), ', '), '')")
    return f"coalesce(trim(CAST({c} AS VARCHAR)), '')"
