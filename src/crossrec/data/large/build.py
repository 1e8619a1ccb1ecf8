"""``prepare_large``: the ``tabular`` format prepared in DuckDB, with bounded memory.

Same result as ``read_tabular(...).build(k_core=...)`` followed by ``save`` — the same users,
items and interactions with the same indices, the same cleaning report and statistics — but
every step runs as SQL on a DuckDB database in a temporary directory: reading, empty-id rows,
dedupe (earliest by timestamp, then by row), iterative per-domain k-core, indexing (users and
items in order of first appearance, items grouped by domain) and writing. DuckDB spills sorts,
joins and aggregates to disk beyond ``memory_limit``, so the input may be larger than memory;
Python only ever holds one record batch of the output.

Example:
    >>> prepare_large("logs/", "datasets/logs", k_core=5, memory_limit="2GB")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crossrec.atomic import atomic_directory
from crossrec.data.builder import ITEM_ATTRS, PARTS
from crossrec.data.dataset import FORMAT_VERSION
from crossrec.data.large import inputs as I  # noqa: N812
from crossrec.data.large.write import stats, write_parquet
from crossrec.errors import DataError

_EMPTY = "('', 'nan', 'None')"
LARGE_OPTIONS = ("items", "domain", "columns", "format", "name")
"""The ``tabular`` reader options this path takes (not ``split``: put a ``part`` column in)."""
AUTO_BYTES = 1 << 30
"""``--engine auto`` prepares inputs larger than this (on disk) with DuckDB."""


def use_large(path: str | Path, format: str | None = None) -> bool:
    """Whether ``--engine auto`` takes the DuckDB path: a directory, a glob, or big files."""
    if I.is_pattern(path) or Path(path).is_dir():
        return True
    return Path(path).is_file() and Path(path).stat().st_size > AUTO_BYTES


def prepare_large(
    interactions: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    items: str | Path | None = None,
    domain: str | None = None,
    columns: Mapping[str, str] | None = None,
    format: str | None = None,
    name: str | None = None,
    k_core: int = 0,
    memory_limit: str | None = None,
    temp_dir: str | Path | None = None,
    threads: int | None = None,
    drop_bad_rows: bool = False,
) -> dict[str, Any]:
    """Prepare a dataset directory from files that need not fit in memory.

    Args:
        interactions: file, directory (hive partitions allowed) or glob of Parquet/CSV/TSV
            files with ``user_id, item_id, domain`` and optional ``rating, timestamp, part``.
        out: the dataset directory (written atomically).
        items: item metadata (same kinds of input): ``item_id, domain`` and optional
            ``title, text, categories, brand``.
        domain: domain of every row of files without a ``domain`` column.
        columns: our column name -> the name in the files.
        format: parquet / csv / tsv instead of the extensions.
        name: dataset name (default: the input's name).
        k_core: per-domain k-core (0 = off).
        memory_limit: DuckDB's memory limit, e.g. ``"2GB"`` (default: DuckDB's, 80 % of RAM).
        temp_dir: where DuckDB spills and keeps its database (default: the system's).
        threads: DuckDB threads (default: one per core).
        drop_bad_rows: drop rows with a bad rating or timestamp and item rows in another domain
            than the item's interactions, counted in the report (default: DataError).

    Returns:
        The dataset's ``meta.json`` content (name, domains, report, stats).
    """
    import duckdb

    mapping = {k: str(v) for k, v in (columns or {}).items()}
    inter = I.find_inputs(interactions, format)
    I.require(inter, ["user_id", "item_id"] + (["domain"] if domain is None else []), mapping)
    meta_in = I.find_inputs(items, format) if items is not None else None
    if meta_in is not None:
        I.require(meta_in, ["item_id"] + (["domain"] if domain is None else []), mapping)
    first = Path(interactions if isinstance(interactions, (str, Path)) else interactions[0])
    name = name or (first.name.split(".")[0] if not I.is_pattern(first) else first.parent.name)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crossrec-duckdb-", dir=temp_dir) as work:
        con = duckdb.connect(str(Path(work) / "prepare.duckdb"))
        try:
            con.execute("SET preserve_insertion_order = true; SET TimeZone = 'UTC'")
            con.execute(f"SET temp_directory = {I.quote(str(Path(work) / 'spill'))}")
            if memory_limit:
                con.execute(f"SET memory_limit = {I.quote(str(memory_limit))}")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            meta = _prepare(con, inter, meta_in, domain, mapping, name, int(k_core), out,
                            drop_bad_rows)
        except duckdb.Error as e:
            raise DataError(f"{first}: {_first_line(e)}") from None
        finally:
            con.close()
    meta["seconds"] = time.perf_counter() - started
    return meta


@contextmanager
def _reading(inputs: I.Inputs | None) -> Iterator[None]:
    """A DuckDB error while ``inputs`` are read becomes the in-memory path's DataError (the
    file is read again to find the line: not UTF-8, wrong number of fields), else one line
    naming the first file of these inputs (not of another input)."""
    import duckdb

    try:
        yield
    except duckdb.Error as e:
        if inputs is None:
            raise
        I.diagnose(inputs)
        raise DataError(f"{inputs.files[0]}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _one(con, sql: str) -> Any:  # noqa: ANN001
    """The single value of a query (fetched to the end, as DuckDB wants)."""
    return con.execute(sql).fetchall()[0][0]


def _load_raw(con, inter: I.Inputs, domain: str | None,  # noqa: ANN001
              mapping: dict[str, str], drop_bad: bool, report_steps: list[dict]) -> bool:
    """Table ``raw`` (u, i, d, rating, ts, part) in input order; returns whether ``part``."""
    con.execute(f"CREATE VIEW src AS SELECT * FROM {inter.source_sql()}")
    types = {r[0]: r[1] for r in con.execute("DESCRIBE src").fetchall()}
    col = {ours: mapping.get(ours, ours) for ours in ("user_id", "item_id", "domain", "rating",
                                                        "timestamp", "part")}
    has = {ours: theirs in types for ours, theirs in col.items()}
    sel = [f"{I.id_expr(col['user_id'], types[col['user_id']])} AS u",
           f"{I.id_expr(col['item_id'], types[col['item_id']])} AS i",
           (f"{I.id_expr(col['domain'], types[col['domain']])} AS d" if has["domain"]
            else f"{I.quote(str(domain))} AS d")]
    bad: list[tuple[str, str, str, str]] = []  # (column, reason, condition, problem)
    nan = "CAST('NaN' AS FLOAT)"
    for ours, fn, out, missing in (("rating", I.number_expr, "rating", nan),
                                   ("timestamp", I.timestamp_expr, "ts", "CAST(0 AS BIGINT)")):
        if not has[ours]:
            sel.append(f"{missing} AS {out}")
            continue
        value, conds = fn(col[ours], types[col[ours]])
        cast = "FLOAT" if ours == "rating" else "BIGINT"
        sel.append(f"coalesce(CAST({value} AS {cast}), {missing}) AS {out}")
        bad += [(ours, f"{ours} {reason}", cond, problem) for reason, cond, problem in conds]
    if has["part"]:
        p = f"lower(trim(CAST({I.ident(col['part'])} AS VARCHAR)))"
        codes = " ".join(f"WHEN {I.quote(v)} THEN {k}" for k, v in enumerate(PARTS))
        sel.append(f"CAST(CASE {p} {codes} END AS TINYINT) AS part")
        bad.append(("part", "", f"{p} IS NULL OR {p} NOT IN ({', '.join(map(I.quote, PARTS))})",
                    f"is not one of {', '.join(PARTS)}"))
    where = ""
    if bad and drop_bad:  # count each dropped row once, under its first reason, per file
        seen = "false"
        for ours, reason, cond, _ in bad:
            if ours == "part":
                continue
            for fname, n in con.execute(f"SELECT filename, count(*) FROM src WHERE ({cond}) "
                                        f"AND NOT ({seen}) GROUP BY filename "
                                        "ORDER BY filename").fetchall():
                report_steps.append({"step": f"{Path(fname).name}: rows with {reason} "
                                     "(--drop-bad-rows)", "dropped": int(n)})
            seen = f"{seen} OR ({cond})"
        where = f" WHERE NOT ({seen})"
        bad = [b for b in bad if b[0] == "part"]
    for ours, _, cond, problem in bad:
        rows = con.execute(f"SELECT filename, trim(CAST({I.ident(col[ours])} AS VARCHAR)) "
                           f"FROM src WHERE {cond} LIMIT 1").fetchall()
        if rows:
            fname, value = rows[0]
            n = _one(con, f"SELECT count(*) FROM src WHERE ({cond}) AND filename = "
                          f"{I.quote(fname)}")
            place = I.locate(Path(fname), inter.format, col[ours], value or "")
            hint = "" if ours == "part" else "; --drop-bad-rows drops them"
            raise DataError(f"{place}: {ours} {value!r} {problem} ({n} such rows{hint})")
    con.execute(f"CREATE TABLE raw AS SELECT {', '.join(sel)} FROM src{where}")
    return has["part"]


def _prepare(con, inter: I.Inputs, meta_in: I.Inputs | None, domain: str | None,  # noqa: ANN001
             mapping: dict[str, str], name: str, k: int, out: str | Path,
             drop_bad: bool) -> dict[str, Any]:
    steps: list[dict] = []
    with _reading(inter):
        has_part = _load_raw(con, inter, domain, mapping, drop_bad, steps)
    n_raw = _one(con, "SELECT count(*) FROM raw")
    if n_raw == 0:
        raise DataError(f"{inter.files[0]}: the input has no data rows")
    report: dict[str, Any] = {"steps": steps, "raw_interactions": int(n_raw)}
    # integer codes for users, (domain, item) keys and domains; rows numbered in input order
    con.execute("""
        CREATE TABLE ukey AS SELECT u, CAST(row_number() OVER () AS INTEGER) AS uc
            FROM (SELECT DISTINCT u FROM raw);
        CREATE TABLE ikey AS SELECT d, i, CAST(row_number() OVER () AS INTEGER) AS ic
            FROM (SELECT DISTINCT d, i FROM raw);
        CREATE TABLE dkey AS SELECT d, CAST(row_number() OVER () AS SMALLINT) AS dc
            FROM (SELECT DISTINCT d FROM raw);""")
    part = "raw.part" if has_part else "CAST(0 AS TINYINT)"
    con.execute(f"""
        CREATE TABLE t0 AS SELECT raw.rowid AS rn, uc, ic, dc, rating, ts, {part} AS part,
            (raw.u IN {_EMPTY} OR raw.i IN {_EMPTY}) AS empty
        FROM raw JOIN ukey USING (u) JOIN ikey USING (d, i) JOIN dkey USING (d);
        DROP TABLE raw""")
    n_empty = _one(con, "SELECT count(*) FROM t0 WHERE empty")
    if n_empty:
        report["steps"].append({"step": "drop rows with empty user_id or item_id",
                                "dropped": int(n_empty)})
    con.execute("""
        CREATE TABLE t1 AS SELECT rn, uc, ic, dc, rating, ts, part FROM t0 WHERE rn IN (
            SELECT arg_min(rn, (ts, rn)) FROM t0 WHERE NOT empty GROUP BY uc, ic);
        DROP TABLE t0""")
    n_dedup = _one(con, "SELECT count(*) FROM t1")
    report["steps"].append({"step": "duplicate (user, item) kept once (earliest)",
                            "dropped": int(n_raw - n_empty - n_dedup)})
    order = con.execute("SELECT dc, d FROM (SELECT dc, min(rn) AS f FROM t1 GROUP BY dc) "
                        "JOIN dkey USING (dc) ORDER BY f").fetchall()
    if k > 0:
        _k_core(con, k, order, report)
    else:
        con.execute("ALTER TABLE t1 RENAME TO fin")
    domains = [d for _, d in order]
    left = dict(con.execute("SELECT dc, count(*) FROM fin GROUP BY dc").fetchall())
    for dc, d in order:
        if not left.get(dc):
            raise DataError(f"dataset {name!r}: domain {d!r} has no interactions"
                            + (f" after {k}-core filtering" if k else ""))
    con.execute("CREATE TABLE dpos (dc SMALLINT, d VARCHAR, pos TINYINT)")
    con.executemany("INSERT INTO dpos VALUES (?, ?, ?)",
                    [(dc, d, p) for p, (dc, d) in enumerate(order)])
    with _reading(meta_in):
        attrs = _items(con, meta_in, domain, mapping, drop_bad, report)
    _catalogue(con, k, meta_in is not None)
    if meta_in is not None:
        missing = _one(con, "SELECT count(*) FROM cat WHERE used AND NOT has_meta")
        if missing:
            report["items_without_metadata"] = int(missing)
    report["interactions"] = int(sum(left.values()))
    st = stats(con, domains)
    with atomic_directory(out) as tmp:
        write_parquet(con, """
            SELECT uidx.idx AS "user", cat.idx AS item, dpos.pos AS domain, rating,
                   ts AS "timestamp", part
            FROM fin JOIN uidx USING (uc) JOIN cat USING (ic) JOIN dpos USING (dc)
            ORDER BY rn""", tmp / "interactions.parquet", kind="interactions",
                      with_part=has_part)
        write_parquet(con, "SELECT u AS id FROM uidx JOIN ukey USING (uc) ORDER BY idx",
                      tmp / "users.parquet", kind="users")
        text = _text_sql(attrs)
        cols = ", ".join(f"coalesce(m.{I.ident(a)}, '') AS {I.ident('attr_' + a)}"
                         for a in attrs)
        write_parquet(con, f"""
            SELECT cat.d AS domain, cat.i AS item_id, {text} AS text{', ' + cols if cols else ''}
            FROM cat LEFT JOIN meta m USING (d, i) ORDER BY cat.idx""",
                      tmp / "items.parquet", kind="items")
        meta = {"format_version": FORMAT_VERSION, "name": name, "domains": domains,
                "report": report, "stats": st}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def _k_core(con, k: int, order: list, report: dict) -> None:  # noqa: ANN001
    """Table ``fin``: ``t1`` minus users and items with fewer than ``k`` rows in their domain,
    repeated until stable (all domains at once: they are independent). The rounds delete from
    a narrow copy (row, user-in-domain key, item key), so each round scans 20 bytes a row."""
    before = dict(con.execute("SELECT dc, count(*) FROM t1 GROUP BY dc").fetchall())
    con.execute("CREATE TABLE kc AS SELECT rn, CAST(uc AS BIGINT) * 65536 + dc AS ud, ic "
                "FROM t1")
    while True:
        gone = _one(con, f"""
            DELETE FROM kc WHERE ud IN (SELECT ud FROM kc GROUP BY ud HAVING count(*) < {k})
                OR ic IN (SELECT ic FROM kc GROUP BY ic HAVING count(*) < {k})""")
        if not gone:
            break
    con.execute("""
        CREATE TABLE fin AS SELECT * FROM t1 WHERE rn IN (SELECT rn FROM kc);
        DROP TABLE t1; DROP TABLE kc""")
    after = dict(con.execute("SELECT dc, count(*) FROM fin GROUP BY dc").fetchall())
    for dc, d in order:
        report["steps"].append({"step": f"{k}-core filter in domain {d!r}",
                                "dropped": int(before.get(dc, 0) - after.get(dc, 0))})


def _items(con, meta_in: I.Inputs | None, domain: str | None,  # noqa: ANN001
           mapping: dict[str, str], drop_bad: bool, report: dict) -> list[str]:
    """Table ``meta`` (d, i, attributes..., rr: first row) of the domains kept; its attrs."""
    if meta_in is None:
        con.execute("CREATE TABLE meta (d VARCHAR, i VARCHAR, rr BIGINT)")
        return []
    con.execute(f"CREATE VIEW msrc AS SELECT * FROM {meta_in.source_sql()}")
    types = {r[0]: r[1] for r in con.execute("DESCRIBE msrc").fetchall()}
    iid, dom = mapping.get("item_id", "item_id"), mapping.get("domain", "domain")
    attrs = [a for a in ITEM_ATTRS if mapping.get(a, a) in types]
    d_sql = I.id_expr(dom, types[dom]) if dom in types else I.quote(str(domain))
    sel = [f"{I.id_expr(iid, types[iid])} AS i", f"{d_sql} AS d"]
    sel += [f"{I.text_expr(mapping.get(a, a), types[mapping.get(a, a)])} AS {I.ident(a)}"
            for a in attrs]
    con.execute(f"CREATE TABLE meta0 AS SELECT {', '.join(sel)}, filename AS _f FROM msrc")
    _domain_mismatch(con, meta_in, drop_bad, report)
    keep = ", ".join(I.ident(a) for a in attrs)
    con.execute(f"""
        CREATE TABLE meta AS SELECT d, i{', ' + keep if keep else ''}, rr FROM (
            SELECT *, meta0.rowid AS rr,
                   row_number() OVER (PARTITION BY d, i ORDER BY meta0.rowid) AS k
            FROM meta0 WHERE d IN (SELECT d FROM dpos)) WHERE k = 1;
        DROP TABLE meta0""")
    return attrs


def _domain_mismatch(con, meta_in: I.Inputs, drop: bool, report: dict) -> None:  # noqa: ANN001
    """Item rows (``meta0``) that put an item in a domain where it has no interactions while
    its interactions are in domains no items row lists it in (as the builder's check)."""
    con.execute("""
        CREATE TEMP TABLE mismatch AS
        WITH home AS (
            SELECT k.i, min(k.d) AS d FROM ikey k
            WHERE k.i IN (SELECT i FROM meta0)
              AND NOT EXISTS (SELECT 1 FROM meta0 m WHERE m.d = k.d AND m.i = k.i)
            GROUP BY k.i)
        SELECT m.rowid AS rr, m._f, m.i, m.d, h.d AS home FROM meta0 m JOIN home h USING (i)
        WHERE NOT EXISTS (SELECT 1 FROM ikey k WHERE k.d = m.d AND k.i = m.i)""")
    n = _one(con, "SELECT count(*) FROM mismatch")
    if n and drop:
        con.execute("DELETE FROM meta0 WHERE rowid IN (SELECT rr FROM mismatch)")
        report["steps"].append({"step": "item rows in another domain than the item's "
                                "interactions (--drop-bad-rows)", "dropped": int(n)})
    elif n:
        rr, f, item, d, home = con.execute(
            "SELECT * FROM mismatch ORDER BY rr LIMIT 1").fetchall()[0]
        row = rr - _one(con, f"SELECT min(rowid) FROM meta0 WHERE _f = {I.quote(f)}")
        where = I.where_row(Path(f), meta_in.format, None, row=int(row))
        raise DataError(
            f"{where}: item {item!r} is listed in domain {d!r}, but its interactions are in "
            f"domain {home!r} ({n} such item rows; fix the domain, or --drop-bad-rows drops "
            "them)")
    con.execute("DROP TABLE mismatch")


def _catalogue(con, k: int, with_meta: bool) -> None:  # noqa: ANN001
    """Tables ``cat`` (every item: d, i, ic, idx, used, has_meta) and ``uidx`` (uc, idx):
    users by first appearance; items by domain, used ones by first appearance, then catalogue
    items nobody interacted with (only without k-core) in the items file's order."""
    con.execute("""
        CREATE TABLE uidx AS SELECT uc, CAST(row_number() OVER (ORDER BY f) - 1 AS INTEGER)
            AS idx FROM (SELECT uc, min(rn) AS f FROM fin GROUP BY uc);
        CREATE TABLE used AS SELECT ic, min(rn) AS f FROM fin GROUP BY ic""")
    used = """SELECT ikey.d, ikey.i, used.ic, 0 AS grp, used.f AS ord, true AS used
                FROM used JOIN ikey USING (ic)"""
    unused = """UNION ALL SELECT m.d, m.i, CAST(NULL AS INTEGER), 1, m.rr, false FROM meta m
                ANTI JOIN (SELECT d, i FROM used JOIN ikey USING (ic)) x
                    ON m.d = x.d AND m.i = x.i"""
    con.execute(f"""
        CREATE TABLE cat AS SELECT c.d, c.i, ic, used, {"hm IS NOT NULL" if with_meta else "false"}
            AS has_meta, CAST(row_number() OVER (ORDER BY pos, grp, ord) - 1 AS INTEGER) AS idx
        FROM ({used} {unused if k == 0 else ""}) c JOIN dpos USING (d)
        LEFT JOIN (SELECT d, i, true AS hm FROM meta) h ON h.d = c.d AND h.i = c.i""")


def _text_sql(attrs: list[str]) -> str:
    """The item text, as the builder takes it: title, else text, else ''."""
    if "title" in attrs:
        other = "m.text" if "text" in attrs else "m.title"
        return f"CASE WHEN coalesce(m.title, '') <> '' THEN m.title ELSE coalesce({other}, '') END"
    if "text" in attrs:
        return "coalesce(m.text, '')"
    return "''"
