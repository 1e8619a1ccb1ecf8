"""Bad data is refused with file and line, or dropped and counted with drop_bad_rows; every
filter that drops rows is in the cleaning report; both prepare engines agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossrec.data.builder import DatasetBuilder
from crossrec.data.large import prepare_large
from crossrec.data.sources import read
from crossrec.data.sources.recbole import read_recbole
from crossrec.errors import DataError

INTER = "user_id,item_id,domain\na,m1,movies\nb,m1,movies\na,b1,books\n"


def _memory(inter: Path, out: Path, drop: bool = False, **opts) -> dict:
    ds = read("tabular", inter, drop_bad_rows=drop, **opts).build(drop_bad_rows=drop)
    ds.save(out)
    return json.loads((out / "meta.json").read_text())


def _duckdb(inter: Path, out: Path, drop: bool = False, **opts) -> dict:
    return prepare_large(inter, out, drop_bad_rows=drop, **opts)


ENGINES = {"memory": _memory, "duckdb": _duckdb}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("row", "message"), [
    ("b,m1,movies,inf,1", r"x\.csv, line 3: rating 'inf' is not a finite number \(1 such rows"),
    ("b,m1,movies,-Infinity,1", r"x\.csv, line 3: rating '-Infinity' is not a finite number"),
    ("b,m1,movies,4,1e30", r"x\.csv, line 3: timestamp '1e30' is out of range"),
    ("b,m1,movies,4,-inf", r"x\.csv, line 3: timestamp '-inf' is out of range"),
    ("b,m1,movies,4,9.3e18", r"x\.csv, line 3: timestamp '9.3e18' is out of range"),
])
def test_non_finite_and_out_of_range_values_are_refused_then_dropped(
        tmp_path: Path, engine: str, row: str, message: str) -> None:
    f = tmp_path / "x.csv"
    f.write_text(f"user_id,item_id,domain,rating,timestamp\na,m1,movies,5,1\n{row}\n"
                 "c,m1,movies,3,2\n")
    with pytest.raises(DataError, match=message):
        ENGINES[engine](f, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    meta = ENGINES[engine](f, tmp_path / "out", drop=True)
    step = meta["report"]["steps"][0]
    assert "(--drop-bad-rows)" in step["step"] and step["dropped"] == 1
    assert meta["stats"]["interactions"] == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_item_in_another_domain_than_its_interactions(tmp_path: Path, engine: str) -> None:
    (tmp_path / "i.csv").write_text(INTER)
    (tmp_path / "items.csv").write_text("item_id,domain,title\nb1,books,A Book\n"
                                        "m1,books,The Movie\nb2,books,Unread\n")
    with pytest.raises(DataError, match=r"items\.csv, line 3: item 'm1' is listed in domain "
                                        r"'books', but its interactions are in domain 'movies'"):
        ENGINES[engine](tmp_path / "i.csv", tmp_path / "out", items=tmp_path / "items.csv")
    meta = ENGINES[engine](tmp_path / "i.csv", tmp_path / "out", drop=True,
                           items=tmp_path / "items.csv")
    assert meta["report"]["steps"][-1] == {
        "step": "item rows in another domain than the item's interactions (--drop-bad-rows)",
        "dropped": 1}
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert sorted(map(tuple, items[["domain", "item_id"]].values.tolist())) == [
        ("books", "b1"), ("books", "b2"), ("movies", "m1")]  # no phantom books/m1


def test_same_id_listed_in_both_domains_is_not_a_mismatch(tmp_path: Path) -> None:
    (tmp_path / "i.csv").write_text(INTER)
    (tmp_path / "items.csv").write_text("item_id,domain\nm1,movies\nm1,books\n")
    ds = read("tabular", tmp_path / "i.csv", items=tmp_path / "items.csv").build()
    assert ds.n_items == 3  # books/m1 is a catalogue item of its own, listed on purpose


def test_builder_frames_refuse_infinite_and_wild_values() -> None:
    b = DatasetBuilder()
    with pytest.raises(DataError, match=r"<frame>, row 2: rating inf is not a finite number"):
        b.add_interactions(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"],
                                         "rating": [1.0, np.inf]}), domain="d")
    with pytest.raises(DataError, match=r"row 1: timestamp 1e\+30 is out of range"):
        b.add_interactions(pd.DataFrame({"user_id": ["a"], "item_id": ["x"],
                                         "timestamp": [1e30]}), domain="d")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("which", ["interactions", "items"])
def test_not_utf8_names_the_line_and_column(tmp_path: Path, engine: str, which: str) -> None:
    good = INTER.encode()
    bad = b"user_id,item_id,domain\n" + b"a,m1,movies\n" * 5 + b"b,m\xff1,movies\n"
    items_good = b"item_id,domain\nm1,movies\n"
    items_bad = b"item_id,domain\nm1,movies\nb1,bo\xe9ks\n"
    (tmp_path / "i.csv").write_bytes(bad if which == "interactions" else good)
    (tmp_path / "items.csv").write_bytes(items_bad if which == "items" else items_good)
    name, line, col = ("i.csv", 7, 4) if which == "interactions" else ("items.csv", 3, 6)
    with pytest.raises(DataError, match=rf"{name}, line {line}, column {col}: not UTF-8 text "
                                        r"\(byte 0x(ff|e9)\)"):
        ENGINES[engine](tmp_path / "i.csv", tmp_path / "out", items=tmp_path / "items.csv")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_two_megabyte_title_is_accepted(tmp_path: Path, engine: str) -> None:
    (tmp_path / "i.csv").write_text(INTER)
    title = "x" * 2_200_000
    (tmp_path / "items.csv").write_text(f"item_id,domain,title\nm1,movies,{title}\n")
    ENGINES[engine](tmp_path / "i.csv", tmp_path / "out", items=tmp_path / "items.csv")
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert items["text"].str.len().max() == len(title)


@pytest.mark.parametrize("engine", ENGINES)
def test_malformed_row_names_its_line(tmp_path: Path, engine: str) -> None:
    (tmp_path / "i.csv").write_text("user_id,item_id,domain\na,m1,movies\na,m2,movies,x\n")
    with pytest.raises(DataError, match=r"i\.csv, line 3: expected 3 fields "
                                        r"\('user_id,item_id,domain'\), found 4"):
        ENGINES[engine](tmp_path / "i.csv", tmp_path / "out")


def test_genre_rule_drops_are_in_the_report(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\n1\t10\n1\t11\n2\t10\n2\t13\n3\t13\n")
    (folder / "toy.item").write_text("item_id:token\tclass:token_seq\n10\tComedy\n11\tAction\n"
                                     "13\tDocumentary\n")
    ds = read_recbole(folder, domains=["Comedy", "Action"]).build()
    step = ds.report["steps"][0]
    assert step == {"step": "toy.item: items with none of the genres of the domain rule "
                            "(1 items), with their interactions", "dropped": 2}
    assert ds.report["raw_interactions"] == 3  # after the genre rule; the step says how many
