"""Out-of-core ``prepare`` (DuckDB): the same dataset as the in-memory path, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.large import prepare_large
from crossrec.data.sources import read
from crossrec.errors import DataError


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"user_id": [f"u{x}" for x in rng.integers(0, 200, n)],
                       "item_id": [f"i{x}" for x in rng.integers(0, 80, n)],
                       "domain": rng.choice(["books", "music", "film"], n),
                       "rating": rng.integers(1, 6, n).astype(float),
                       "timestamp": rng.integers(0, 50, n)})  # many ties: dedupe by row order
    df.loc[5, "user_id"], df.loc[7, "item_id"] = "", "nan"
    return df


def _same(mem: MultiDomainDataset, path_a: Path, path_b: Path) -> None:
    a, b = MultiDomainDataset.load(path_a), MultiDomainDataset.load(path_b)
    pd.testing.assert_frame_equal(a.interactions, b.interactions, check_exact=True)
    assert a.users == b.users and a.items == b.items and a.domains == b.domains
    assert a.item_text == b.item_text
    pd.testing.assert_frame_equal(a.item_attrs, b.item_attrs)
    assert json.loads((path_a / "meta.json").read_text()) == \
        json.loads((path_b / "meta.json").read_text())
    assert len(mem.interactions) == len(b.interactions)


@pytest.mark.parametrize("k_core", [0, 3])
def test_csv_with_items_equals_in_memory_path(tmp_path: Path, k_core: int) -> None:
    _frame().to_csv(tmp_path / "inter.csv", index=False)
    pd.DataFrame({"item_id": [f"i{x}" for x in range(100)] * 3,
                  "domain": np.repeat(["books", "music", "film"], 100),
                  "title": [f" title {x} " if x % 7 else "" for x in range(300)],
                  "brand": ["acme"] * 300}).to_csv(tmp_path / "items.csv", index=False)
    mem = read("tabular", tmp_path / "inter.csv", items=tmp_path / "items.csv").build(
        k_core=k_core)
    mem.save(tmp_path / "mem")
    meta = prepare_large(tmp_path / "inter.csv", tmp_path / "duck", items=tmp_path / "items.csv",
                         k_core=k_core)
    _same(mem, tmp_path / "mem", tmp_path / "duck")
    steps = [s["step"] for s in meta["report"]["steps"]]
    assert steps[0] == "drop rows with empty user_id or item_id"
    assert any("3-core" in s for s in steps) == (k_core == 3)


def test_hive_partitioned_parquet_equals_in_memory_path(tmp_path: Path) -> None:
    df = _frame(seed=1)
    builder = DatasetBuilder("logs")
    for d in sorted(df["domain"].unique()):  # files are read in sorted path order
        sub = df[df["domain"] == d].drop(columns="domain")
        for j, rows in enumerate(np.array_split(np.arange(len(sub)), 3)):
            chunk = sub.iloc[rows]
            f = tmp_path / "logs" / f"domain={d}" / f"part-{j}.parquet"
            f.parent.mkdir(parents=True, exist_ok=True)
            chunk.to_parquet(f, index=False)
            builder.add_interactions(chunk.assign(domain=d))
    (tmp_path / "logs" / "_SUCCESS").write_text("")  # writer marker files are skipped
    mem = builder.build(k_core=2)
    mem.save(tmp_path / "mem")
    prepare_large(tmp_path / "logs", tmp_path / "duck", k_core=2, memory_limit="100MB",
                  temp_dir=tmp_path)
    _same(mem, tmp_path / "mem", tmp_path / "duck")


def test_parts_iso_dates_mapping_and_domain_option(tmp_path: Path) -> None:
    df = _frame(400, seed=2).drop(columns="domain")
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="D").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    df.loc[3, "timestamp"] = "1700000000"
    df["part"] = np.random.default_rng(0).choice(["train", "Valid", "test"], len(df))
    df = df.rename(columns={"user_id": "who", "item_id": "what"})
    for j, rows in enumerate(np.array_split(np.arange(len(df)), 2)):
        chunk = df.iloc[rows]
        chunk.to_csv(tmp_path / f"log-{j}.tsv", sep="\t", index=False)
    cols = {"user_id": "who", "item_id": "what"}
    builder = DatasetBuilder("log")
    for j in range(2):
        read("tabular", tmp_path / f"log-{j}.tsv", domain="games", columns=cols, builder=builder)
    mem = builder.build()
    mem.save(tmp_path / "mem")
    prepare_large(str(tmp_path / "log-*.tsv"), tmp_path / "duck", domain="games", columns=cols,
                  name="log")
    _same(mem, tmp_path / "mem", tmp_path / "duck")
    assert mem.interactions["part"].value_counts().to_dict().keys() >= {"train", "valid"}


def test_bad_input_names_file_and_column(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("user_id,item_id,domain\nu,i,d\n")
    (tmp_path / "in" / "b.csv").write_text("user_id,item,domain\nu,i,d\n")
    with pytest.raises(DataError, match=r"b\.csv: missing column 'item_id'"):
        prepare_large(tmp_path / "in", tmp_path / "out")
    (tmp_path / "in" / "b.csv").write_text("user_id,item_id,domain,rating\nu,i,d,five\n")
    (tmp_path / "in" / "a.csv").unlink()
    with pytest.raises(DataError, match=r"b\.csv, line 2: rating 'five' is not a number"):
        prepare_large(tmp_path / "in", tmp_path / "out")
    with pytest.raises(DataError, match="no file matches"):
        prepare_large(str(tmp_path / "nothing-*.csv"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_engine_duckdb_and_errors(tmp_path: Path) -> None:
    _frame(500).to_csv(tmp_path / "inter.csv", index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["prepare", "tabular", str(tmp_path / "inter.csv"),
                            str(tmp_path / "ds"), "--engine", "duckdb", "--memory-limit", "200MB",
                            "--k-core", "2"])
    assert r.exit_code == 0, r.output
    assert "duckdb" in r.output and "2-core filter in domain" in r.output
    assert MultiDomainDataset.load(tmp_path / "ds").n_users > 0
    (tmp_path / "bad.csv").write_text("user_id,domain\nu,d\n")
    r = runner.invoke(app, ["prepare", "tabular", str(tmp_path / "bad.csv"), str(tmp_path / "x"),
                            "--engine", "duckdb"])
    assert r.exit_code == 2 and "missing column 'item_id'" in r.output and "bad.csv" in r.output
    r = runner.invoke(app, ["prepare", "tabular", str(tmp_path / "inter.csv"), str(tmp_path / "x"),
                            "--engine", "duckdb", "-o", "split=s.csv"])
    assert r.exit_code == 2 and "not supported" in r.output
    r = runner.invoke(app, ["prepare", "cdrib", str(tmp_path), str(tmp_path / "x"),
                            "--engine", "duckdb"])
    assert r.exit_code == 2 and "tabular" in r.output
