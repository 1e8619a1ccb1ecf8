"""Line-aware reading of CSV/TSV/Parquet/JSON-lines files, shared by the readers.

Every malformed input becomes a ``DataError`` that names the file and the 1-based line (for
CSV/TSV with a header, the header is line 1; Parquet and JSON arrays name the row), never a
pandas or pyarrow traceback. CSV/TSV are parsed with pyarrow (fast, strict about the number of
fields); only when something is wrong is the file scanned again with the ``csv`` module to find
the line.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from crossrec.errors import DataError

FORMATS = ("csv", "tsv", "parquet", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".tab": "tsv", ".parquet": "parquet",
               ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file for reading, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def detect_format(path: Path) -> str:
    """``csv`` / ``tsv`` / ``parquet`` / ``jsonl`` from the extension (looking through ``.gz``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension; pass format= one of "
            f"{', '.join(FORMATS)} (known extensions: {', '.join(_EXTENSIONS)})"
        )
    return fmt


def not_utf8(path: Path, e: Exception | None = None) -> DataError:
    """A DataError naming the line and column of the first byte of ``path`` that is not UTF-8
    (found by reading the file again, line by line, as bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    col = len(raw[: bad.start].decode("utf-8")) + 1
                    return DataError(f"{path}, line {line_no}, column {col}: not UTF-8 text "
                                     f"(byte 0x{raw[bad.start]:02x}); save the file as UTF-8")
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        return DataError(f"{path}: cannot read ({err})")
    return DataError(f"{path}: not UTF-8 text ({e}); save the file as UTF-8")


def check_file(path: str | Path) -> Path:
    """The path as a ``Path``; DataError if it is missing, not a file, or empty."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return path


@dataclass
class Table:
    """A file read into a frame of strings, able to say where each row came from."""

    frame: pd.DataFrame
    path: Path
    format: str
    header: bool = True
    sep: str = ","
    quote: bool = True
    lines: np.ndarray | None = None  # 1-based line of each row; found on demand for csv/tsv
    drop_bad: bool = False  # bad values: record the rows in ``bad`` instead of raising
    bad: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> bool[n] rows to drop

    def where(self, row: int) -> str:
        """``"<path>, line N"`` for row ``row`` of the frame (``"row N"`` for Parquet)."""
        if self.lines is None and self.format not in ("csv", "tsv"):
            return f"{self.path}, row {row + 1}"
        if self.lines is None:
            self.lines = np.array([n for n, _ in csv_rows(self.path, self.sep, self.quote)])
            if self.header:
                self.lines = self.lines[1:]
        return f"{self.path}, line {int(self.lines[row])}"

    def require(self, columns: Sequence[str], mapped: Mapping[str, str] | None = None) -> None:
        """DataError naming the first missing column (and what it was mapped from) and the file."""
        mapped = mapped or {}
        for col in columns:
            if col not in self.frame.columns:
                hint = f" (mapped from {mapped[col]!r})" if col in mapped else ""
                found = ", ".join(map(str, self.frame.columns)) or "none"
                raise DataError(
                    f"{self.path}: missing column {col!r}{hint} (columns found: {found})"
                )

    def reject(self, mask: np.ndarray, reason: str, col: str, problem: str) -> None:
        """Rows ``mask`` hold bad values in ``col``: a DataError at the first
        (``<where>: <col> <value> <problem>``), or, with ``drop_bad``, remember them under
        ``reason`` for the reader to drop and count."""
        if not mask.any():
            return
        if self.drop_bad:
            self.bad[reason] = self.bad.get(reason, np.zeros(len(mask), dtype=bool)) | mask
            return
        row = int(np.flatnonzero(mask)[0])
        value = str(self.frame[col].iloc[row]).strip()
        raise DataError(f"{self.where(row)}: {col} {value!r} {problem} "
                        f"({int(mask.sum())} such rows; --drop-bad-rows drops them)")

    def bad_rows(self) -> np.ndarray:
        """bool[n]: the rows some check rejected (all False without ``drop_bad``)."""
        out = np.zeros(len(self.frame), dtype=bool)
        for mask in self.bad.values():
            out |= mask
        return out

    def numbers(self, col: str) -> np.ndarray:
        """Column as ``float64``; empty or ``nan`` -> NaN; anything else that is not a finite
        number (text, ``inf``) -> DataError (or a bad row, then NaN, with ``drop_bad``)."""
        values = self.frame[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out = values.to_numpy(dtype=np.float64, copy=True)
        else:
            text = values.astype(str).str.strip()
            out = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(
                dtype=np.float64, copy=True)
            bad = np.isnan(out) & (text != "").to_numpy() & (text.str.lower() != "nan").to_numpy()
            self.reject(bad, f"{col} not a number", col, "is not a number")
        inf = np.isinf(out)
        self.reject(inf, f"{col} not finite", col, "is not a finite number")
        out[inf] = np.nan
        return out

    def timestamps(self, col: str) -> np.ndarray:
        """Column as unix seconds ``int64``: numbers as they are, ISO dates converted (UTC unless
        they carry an offset); empty -> 0; anything else, and numbers that are not finite or do
        not fit in 64 bits -> DataError (or a bad row, then 0, with ``drop_bad``)."""
        values = self.frame[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            return _seconds(pd.to_datetime(values, utc=True))
        if pd.api.types.is_numeric_dtype(values):
            return self._whole_seconds(col, values.to_numpy(dtype=np.float64))
        text = values.astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        is_date = (num.isna().to_numpy() & (text != "").to_numpy()
                   & (text.str.lower() != "nan").to_numpy())
        out = self._whole_seconds(col, num.to_numpy(dtype=np.float64))
        if is_date.any():
            dates = pd.to_datetime(text[is_date], utc=True, format="ISO8601", errors="coerce")
            wrong = np.zeros(len(out), dtype=bool)
            wrong[np.flatnonzero(is_date)[dates.isna().to_numpy()]] = True
            self.reject(wrong, f"{col} not a time", col, "is neither a number nor an ISO date "
                        "(e.g. 2021-03-04 or 2021-03-04T10:20:30Z)")
            out[is_date & ~wrong] = _seconds(dates[~dates.isna()])
        return out

    def _whole_seconds(self, col: str, num: np.ndarray) -> np.ndarray:
        """Numbers as int64; NaN -> 0; infinite or beyond int64 -> rejected (then 0)."""
        wild = np.isinf(num) | (np.abs(np.nan_to_num(num)) >= _INT64_LIMIT)
        self.reject(wild, f"{col} out of range", col,
                    "is out of range (a time must be a finite number that fits in 64 bits)")
        return np.where(np.isnan(num) | wild, 0.0, num).astype(np.int64)


_INT64_LIMIT = float(2**63)


def _seconds(dates: pd.Series) -> np.ndarray:
    return ((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


_FIELD_LIMIT = 1 << 30


def csv_rows(path: Path, sep: str, quote: bool = True) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of every non-blank CSV record, with the csv module."""
    csv.field_size_limit(_FIELD_LIMIT)  # a long title or review is a valid field
    with open_text(path) as f:
        quoting = csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE
        reader = csv.reader(f, delimiter=sep, quoting=quoting)
        last = 0
        try:
            for fields in reader:
                start, last = last + 1, reader.line_num
                if fields:
                    yield start, fields
        except csv.Error as e:
            raise DataError(f"{path}, line {reader.line_num}: {e}") from None
        except UnicodeDecodeError as e:
            raise not_utf8(path, e) from None


def read_table(
    path: str | Path,
    *,
    format: str | None = None,
    names: Sequence[str] | None = None,
    quote: bool = True,
) -> Table:
    """Read a CSV/TSV/Parquet/JSON-lines file into a frame of strings (Parquet keeps its types).

    Args:
        path: the file (``.gz`` allowed for the text formats).
        format: ``csv``, ``tsv``, ``parquet`` or ``jsonl``; default from the extension.
        names: column names of a CSV/TSV file without a header line.
        quote: whether CSV/TSV fields may be double-quoted (RecBole atomic files are not).
    """
    path = check_file(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: cannot read as Parquet ({e})") from None
        return _nonempty(Table(frame, path, fmt))
    if fmt == "jsonl":
        return _read_json(path)
    return _read_delimited(path, fmt, names, quote)


def _nonempty(table: Table) -> Table:
    if table.frame.empty:
        raise DataError(f"{table.path}: the file has no data rows")
    return table


def _read_delimited(path: Path, fmt: str, names: Sequence[str] | None, quote: bool) -> Table:
    sep = "," if fmt == "csv" else "\t"
    table = Table(pd.DataFrame(), path, fmt, header=names is None, sep=sep, quote=quote)
    rows = csv_rows(path, sep, quote)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: the file is empty (only blank lines)")
    columns = list(names) if names is not None else [c.strip() for c in first[1]]
    if len(set(columns)) != len(columns):
        raise DataError(f"{path}, line {first[0]}: repeated column name in header {columns}")
    try:
        arrow = _arrow_csv(path, columns, 0 if names is not None else first[0], sep, quote)
    except pa.ArrowInvalid as e:
        for line, fields in rows if names is None else csv_rows(path, sep, quote):
            if len(fields) != len(columns):
                raise DataError(
                    f"{path}, line {line}: expected {len(columns)} fields "
                    f"({sep.join(columns)!r}), found {len(fields)}"
                ) from None
        raise DataError(f"{path}: cannot parse as {fmt.upper()} ({e})") from None
    table.frame = arrow.to_pandas()
    return _nonempty(table)


def _arrow_csv(path: Path, columns: list[str], skip: int, sep: str, quote: bool) -> pa.Table:
    """pyarrow's CSV reader, all columns as text; a record longer than pyarrow's 1 MiB block
    (a long title or review) is read again with blocks as large as the file (up to 1 GiB)."""
    block = None
    while True:
        try:
            return pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(column_names=columns, skip_rows=skip,
                                               **({"block_size": block} if block else {})),
                parse_options=pacsv.ParseOptions(delimiter=sep,
                                                 quote_char='"' if quote else False),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in columns}, strings_can_be_null=False),
            )
        except pa.ArrowInvalid as e:
            if block is not None or "straddling" not in str(e):
                raise
            block = int(min(max(path.stat().st_size + 1, 1 << 20), 1 << 30))


def iter_json_lines(
    path: Path, *, python_literals: bool = False
) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file.

    With ``python_literals``, a line that is not JSON is tried as a Python literal
    (``ast.literal_eval``), as in the 2014 Amazon dumps that hold ``{'asin': '...'}`` lines.
    """
    line_no = 0
    try:
        with open_text(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    obj = _literal(line) if python_literals else None
                    if obj is None:
                        why = f"{e.msg} at column {e.colno}" if hasattr(e, "colno") else str(e)
                        raise DataError(f"{path}, line {line_no}: invalid JSON ({why})") from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{path}, line {line_no}: expected a JSON object, found "
                        f"{type(obj).__name__}"
                    )
                yield line_no, obj
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from None
    except (EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}, after line {line_no}: cannot read ({e})") from None


def _literal(line: str) -> dict | None:
    try:
        obj = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _read_json(path: Path) -> Table:
    try:
        with open_text(path) as f:
            head = f.read(4096).lstrip()
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from None
    plain_json = path.name.lower().removesuffix(".gz").endswith(".json")
    if plain_json and head.startswith("["):  # a JSON array of objects rather than JSON lines
        try:
            with open_text(path) as f:
                records = json.load(f)
        except UnicodeDecodeError as e:
            raise not_utf8(path, e) from None
        except ValueError as e:
            raise DataError(f"{path}: invalid JSON ({e})") from None
        if not all(isinstance(r, dict) for r in records):
            raise DataError(f"{path}: expected a JSON array of objects")
        frame = pd.DataFrame.from_records(records)
        return _nonempty(Table(frame, path, "json"))  # errors name rows, not lines
    lines, records = [], []
    for line_no, obj in iter_json_lines(path):
        lines.append(line_no)
        records.append(obj)
    if not records:
        raise DataError(f"{path}: the file is empty (only blank lines)")
    frame = pd.DataFrame.from_records(records)
    return Table(frame, path, "jsonl", lines=np.asarray(lines))


def join_text(value: object, sep: str = ", ") -> str:
    """Text of a metadata value: lists (also nested, as Amazon categories) are flattened and
    joined, missing values become ``""``."""
    return sep.join(dict.fromkeys(_leaves(value)))


def _leaves(value: object) -> Iterator[str]:
    if isinstance(value, list | tuple | np.ndarray):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not (isinstance(value, float) and np.isnan(value)):
        text = str(value).strip()
        if text:
            yield text


def as_str(values: pd.Series) -> np.ndarray:
    """Ids as strings: integral floats lose their ``.0``, missing values become ``""``."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    out = values.astype(object).where(values.notna(), "").astype(str)
    return out.to_numpy(dtype=object)
