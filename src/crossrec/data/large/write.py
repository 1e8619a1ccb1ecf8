"""Output of the out-of-core path: Parquet files streamed from DuckDB in record batches, with
the schema (dtypes, pandas metadata) ``MultiDomainDataset.save`` writes, and ``meta.json``
statistics computed in SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossrec.data.builder import PARTS
from crossrec.data.dataset import INTERACTION_DTYPES

BATCH_ROWS = 1 << 20
"""Rows per record batch brought from DuckDB into Python (bounds the writer's memory)."""


def _schema(kind: str, with_part: bool, names: list[str]):  # noqa: ANN202
    """The pyarrow schema pandas would write for this file (``part`` as a category)."""
    import pyarrow as pa

    if kind == "interactions":
        frame = pd.DataFrame({c: np.zeros(0, dtype=t) for c, t in INTERACTION_DTYPES.items()})
        if with_part:
            frame["part"] = pd.Categorical([], categories=PARTS)
        return pa.Schema.from_pandas(frame, preserve_index=False)
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in names})
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for i, name in enumerate(schema.names):  # text columns: strings, never nulls-only types
        schema = schema.set(i, pa.field(name, pa.string()))
    return schema.remove_metadata()  # read back as object columns, as pandas wrote them


def write_parquet(con, sql: str, path: Path, *, kind: str, with_part: bool = False  # noqa: ANN001
                  ) -> int:
    """Stream the rows of ``sql`` into the Parquet file ``path``; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
    names = [n for n in reader.schema.names if n != "part" or with_part]
    schema = _schema(kind, with_part, names)
    parts = pa.array(PARTS, type=pa.string())
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in reader:
            cols = []
            for field in schema:
                col = batch.column(batch.schema.get_field_index(field.name))
                if pa.types.is_dictionary(field.type):
                    idx = col.cast(field.type.index_type)
                    cols.append(pa.DictionaryArray.from_arrays(idx, parts))
                else:
                    cols.append(col.cast(field.type))
            writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
            rows += batch.num_rows
    return rows


def stats(con, domains: list[str]) -> dict[str, Any]:  # noqa: ANN001
    """``MultiDomainDataset.stats()`` of the prepared tables (``fin``, ``cat``, ``dpos``)."""
    per = {d: (u, i, n) for d, u, i, n in con.execute("""
        SELECT d, count(DISTINCT uc), count(DISTINCT ic), count(*) FROM fin JOIN dpos USING (dc)
        GROUP BY d""").fetchall()}
    n_items = dict(con.execute("SELECT d, count(*) FROM cat GROUP BY d").fetchall())
    out: dict[str, Any] = {"domains": {}, "overlap": {}}
    for d in domains:
        n_u, n_active, n = per[d]
        n_i = int(n_items.get(d, 0))
        out["domains"][d] = {"users": int(n_u), "items": n_i,
                             "items_with_interactions": int(n_active), "interactions": int(n),
                             "density": int(n) / max(1, int(n_u) * n_i)}
    pairs = con.execute("""
        WITH ud AS (SELECT DISTINCT uc, d FROM fin JOIN dpos USING (dc))
        SELECT a.d, b.d, count(*) FROM ud a JOIN ud b ON a.uc = b.uc AND a.d <> b.d
        GROUP BY a.d, b.d""").fetchall()
    both = {(a, b): int(n) for a, b, n in pairs}
    for i, a in enumerate(domains):
        for b in domains[i + 1:]:
            out["overlap"][f"{a}|{b}"] = both.get((a, b), 0)
    n_users = con.execute("SELECT count(*) FROM uidx").fetchall()[0][0]
    n_cat = con.execute("SELECT count(*) FROM cat").fetchall()[0][0]
    n_inter = con.execute("SELECT count(*) FROM fin").fetchall()[0][0]
    out["users"], out["items"], out["interactions"] = int(n_users), int(n_cat), int(n_inter)
    return out
