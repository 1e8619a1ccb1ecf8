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

from crossrec.data.sources.table import csv_rows, detect_format, not_utf8, open_text
from crossrec.errors import DataError

READABLE = ("parquet", "csv", "tsv")
_HIVE = re.compile(r"^([^=/]+)=([^/]*)$")
_FLOAT = ("FLOAT", "DOUBLE", "REAL")
MAX_LINE_BYTES = 1 << 26
"""The longest CSV/TSV record DuckDB reads (64 MiB; its default, 2 MiB, refuses long titles)."""
INT64_LIMIT = "9223372036854775807.0"


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
        # Each run of files with one header is read with that header's columns and no
        # sniffing: DuckDB's sniffer, given a malformed row, takes a data row for the header
        # and reads the rest without a word. The runs are put together by column name.
        delim = quote("," if self.format == "csv" else "\t")
        runs: list[tuple[list[str], list[Path]]] = []
        for f in self.files:
            names = file_columns(f, self.format, hive=False)
            if runs and runs[-1][0] == names:
                runs[-1][1].append(f)
            else:
                runs.append((names, [f]))
        parts = []
        for names, group in runs:
            cols = "{" + ", ".join(f"{quote(n)}: 'VARCHAR'" for n in names) + "}"
            paths = "[" + ", ".join(quote(str(f)) for f in group) + "]"
            parts.append(f"SELECT * FROM read_csv({paths}, header=true, auto_detect=false, "
                         f"columns={cols}, delim={delim}, quote='\"', escape='\"', "
                         f"hive_partitioning={hive}, filename=true, "
                         f"max_line_size={MAX_LINE_BYTES})")
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"


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


def file_columns(path: Path, fmt: str, *, hive: bool = True) -> list[str]:
    """Column names of one file (Parquet footer or CSV/TSV header) plus hive path keys."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = list(pq.read_schema(path).names)
        except Exception as e:  # noqa: BLE001 - any unreadable footer
            raise DataError(f"{path}: cannot read as Parquet ({e})") from None
    else:
        try:
            with open_text(path) as fh:
                header = fh.readline().rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise not_utf8(path, e) from None
        names = [c.strip().strip('"') for c in header.split("," if fmt == "csv" else "\t")]
    keys = [m.group(1) for part in path.parts[:-1] if (m := _HIVE.match(part))] if hive else []
    return names + keys


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


def number_expr(col: str, dtype: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(value as DOUBLE or NULL, [(reason, condition of a bad value, problem)]): text that is
    not a number, and infinities, are bad (as ``Table.numbers``)."""
    c = ident(col)
    if dtype.upper() != "VARCHAR":
        value = f"CAST({c} AS DOUBLE)"
        return value, [("not finite", f"coalesce(isinf({value}), false)",
                        "is not a finite number")]
    t = f"nullif(trim({c}), '')"
    value = f"TRY_CAST({t} AS DOUBLE)"
    return value, [
        ("not a number", f"{t} IS NOT NULL AND {value} IS NULL AND lower({t}) <> 'nan'",
         "is not a number"),
        ("not finite", f"coalesce(isinf({value}), false)", "is not a finite number"),
    ]


_RANGE = "is out of range (a time must be a finite number that fits in 64 bits)"


def _whole(num: str) -> tuple[str, str]:
    """(BIGINT of a DOUBLE expression, out-of-range condition): NaN and NULL -> 0."""
    wild = f"coalesce(isinf({num}) OR abs({num}) >= {INT64_LIMIT}, false)"
    value = (f"CASE WHEN {num} IS NULL OR isnan({num}) OR {wild} THEN 0 "
             f"ELSE CAST(trunc({num}) AS BIGINT) END")
    return value, wild


def timestamp_expr(col: str, dtype: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(unix seconds BIGINT, bad conditions as ``number_expr``): numbers as they are, ISO dates
    in UTC, empty 0; text that is neither, and numbers beyond 64 bits, are bad."""
    c, up = ident(col), dtype.upper()
    if up.startswith("TIMESTAMP") or up == "DATE":
        return f"coalesce(CAST(floor(epoch({c})) AS BIGINT), 0)", []
    if up in _FLOAT:
        value, wild = _whole(c)
        return value, [("out of range", wild, _RANGE)]
    if up != "VARCHAR":
        return f"coalesce(CAST({c} AS BIGINT), 0)", []
    t = f"nullif(trim({c}), '')"
    num = f"TRY_CAST({t} AS DOUBLE)"
    date = f"TRY_CAST({t} AS TIMESTAMPTZ)"
    whole, wild = _whole(num)
    value = (f"CASE WHEN {t} IS NULL THEN 0 WHEN {num} IS NOT NULL THEN {whole} "
             f"ELSE coalesce(CAST(floor(epoch({date})) AS BIGINT), 0) END")
    return value, [
        ("not a time", f"{t} IS NOT NULL AND {num} IS NULL AND {date} IS NULL",
         "is neither a number nor an ISO date (e.g. 2021-03-04 or 2021-03-04T10:20:30Z)"),
        ("out of range", wild, _RANGE),
    ]


def text_expr(col: str, dtype: str) -> str:
    """Item metadata as ``join_text``: trimmed text, lists joined with ', ', missing ''."""
    c = ident(col)
    if dtype.upper().endswith("[]"):
        return (f"coalesce(array_to_string(list_filter(list_transform({c}, x -> "
                f"trim(CAST(x AS VARCHAR))), x -> x <> ''), ', '), '')")
    return f"coalesce(trim(CAST({c} AS VARCHAR)), '')"


def locate(path: Path, fmt: str, column: str, value: str) -> str:
    """``"<path>, line N"`` (``"row N"`` for Parquet) of the first row whose ``column`` holds
    ``value`` (as text, trimmed), for errors found by SQL; ``"<path>"`` if none is found."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            values = pq.read_table(path, columns=[column]).column(0).to_pylist()
        except Exception:  # noqa: BLE001 - then name the file only
            return str(path)
        for n, v in enumerate(values):
            if str(v).strip() == value:
                return f"{path}, row {n + 1}"
        return str(path)
    return where_row(path, fmt, lambda fields, at: fields.get(column, "").strip() == value)


def where_row(path: Path, fmt: str, match, row: int | None = None) -> str:  # noqa: ANN001
    """``"<path>, line N"`` of data row ``row`` (0-based) or of the first row ``match(fields,
    row)`` accepts, reading the CSV/TSV again with the ``csv`` module (Parquet: ``"row N"``)."""
    if fmt == "parquet":
        return f"{path}, row {row + 1}" if row is not None else str(path)
    header: list[str] | None = None
    n = -1
    for line, fields in csv_rows(path, "," if fmt == "csv" else "\t"):
        if header is None:
            header = [h.strip() for h in fields]
            continue
        n += 1
        if row is not None and n == row:
            return f"{path}, line {line}"
        if row is None and match(dict(zip(header, fields, strict=False)), n):
            return f"{path}, line {line}"
    return str(path)


def diagnose(inputs: Inputs) -> None:
    """Read every CSV/TSV file of ``inputs`` again, as the in-memory path does, and raise its
    DataError (not UTF-8, a row with the wrong number of fields: file, line) if there is one."""
    if inputs.format == "parquet":
        return
    sep = "," if inputs.format == "csv" else "\t"
    for f in inputs.files:
        header: list[str] | None = None
        for line, fields in csv_rows(f, sep):
            if header is None:
                header = [h.strip() for h in fields]
            elif len(fields) != len(header):
                raise DataError(f"{f}, line {line}: expected {len(header)} fields "
                                f"({sep.join(header)!r}), found {len(fields)}")
