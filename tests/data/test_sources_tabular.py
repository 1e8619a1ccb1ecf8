import gzip
import json

import numpy as np
import pandas as pd
import pytest

from crossrec.data.builder import DatasetBuilder
from crossrec.data.sources import READERS, read
from crossrec.data.sources.tabular import read_tabular
from crossrec.data.split import predefined
from crossrec.errors import DataError

LOGS = (
    "user_id,item_id,domain,rating,timestamp\n"
    "u1,b1,books,5,2021-01-01\n"
    "u1,m1,movies,4,1609459300\n"
    "u2,b1,books,,2021-01-01T00:00:10Z\n"
    "u2,m2,movies,3,2021-01-02 00:00:00+01:00\n"
)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def raw_rows(ds):
    inter = ds.interactions
    return list(zip(ds.users.raw(inter["user"]), ds.item_ids(inter["item"].to_numpy()),
                    np.asarray(ds.domains)[inter["domain"]], strict=True))


def test_csv_with_items_and_split(tmp_path):
    logs = write(tmp_path / "logs.csv", LOGS)
    items = tmp_path / "items.jsonl"
    items.write_text(
        json.dumps({"item_id": "b1", "domain": "books", "title": "A book",
                    "categories": [["Books", "Fiction"], ["Books", "Crime"]]}) + "\n\n"
        + json.dumps({"item_id": "m9", "domain": "movies", "title": "Unseen", "brand": "X"})
        + "\n")
    split = write(tmp_path / "split.csv",
                  "user_id,item_id,domain,part\nu2,m2,movies,test\nu1,m1,movies,VALID\n")
    ds = read_tabular(logs, items=items, split=split).build()
    assert ds.name == "logs" and ds.domains == ("books", "movies")
    inter = ds.interactions
    assert inter["timestamp"].tolist() == [1609459200, 1609459300, 1609459210, 1609542000]
    assert np.isnan(inter["rating"].iloc[2]) and inter["rating"].iloc[0] == 5
    assert inter["part"].astype(str).tolist() == ["train", "valid", "train", "test"]
    assert len(predefined(ds, "movies").test) == 1
    b1 = ds.item_index("books", ["b1"])[0]
    assert ds.item_text[b1] == "A book"
    assert ds.item_attrs["categories"].iloc[b1] == "Books, Fiction, Crime"
    assert "m9" in ds.item_ids(np.arange(ds.n_items))  # catalogue item without interactions


@pytest.mark.parametrize("fmt", ["tsv", "txt", "parquet", "jsonl", "csv.gz", "json"])
def test_other_formats_read_the_same(tmp_path, fmt):
    frame = pd.read_csv(write(tmp_path / "ref.csv", LOGS), dtype=str, keep_default_na=False)
    path = tmp_path / f"logs.{fmt}"
    if fmt in ("tsv", "txt"):
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "parquet":
        frame.assign(rating=pd.to_numeric(frame["rating"])).to_parquet(path)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "json":
        frame.to_json(path, orient="records")
    else:
        with gzip.open(path, "wt") as f:
            f.write(LOGS)
    ref = read_tabular(tmp_path / "ref.csv").build()
    got = read_tabular(path).build()
    assert raw_rows(got) == raw_rows(ref)
    pd.testing.assert_frame_equal(got.interactions, ref.interactions)


def test_column_mapping_and_single_domain(tmp_path):
    path = write(tmp_path / "reviews.csv", "reviewerID,asin,overall\nA1,X1,5\nA2,X1,4\n")
    ds = read_tabular(path, domain="books",
                      columns={"user_id": "reviewerID", "item_id": "asin", "rating": "overall"}
                      ).build()
    assert raw_rows(ds) == [("A1", "X1", "books"), ("A2", "X1", "books")]
    assert ds.interactions["rating"].tolist() == [5.0, 4.0]


def test_several_sources_fuse_into_one_builder(tmp_path):
    a = write(tmp_path / "a.csv", "user_id,item_id\nu1,i1\nu2,i2\n")
    b = write(tmp_path / "b.tsv", "user_id\titem_id\nu1\tj1\n")
    builder = read("tabular", interactions=a, domain="books", name="fused")
    assert read("tabular", interactions=b, domain="music", builder=builder) is builder
    ds = builder.build()
    assert ds.name == "fused" and ds.domains == ("books", "music")
    assert len(ds.overlap_users("books", "music")) == 1


def test_registry_lists_every_reader(tmp_path):
    assert set(READERS) == {"tabular", "recbole", "amazon_reviews", "arts_office", "cdrib"}
    with pytest.raises(DataError, match="unknown data format 'csv'; known: amazon_reviews, "
                                        "arts_office, cdrib, recbole, tabular"):
        read("csv", interactions="x.csv")
    with pytest.raises(DataError, match="data format 'cdrib'.*'root'"):
        read("cdrib")
    tiny = write(tmp_path / "tiny.csv", "user_id,item_id\nu,i\n")
    assert isinstance(read("tabular", interactions=tiny, domain="d"), DatasetBuilder)


# ---------------------------------------------------------------- bad input -> clear errors
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id,item_id,domain\nu1,i1,a\nu1,i2,a,extra\n",
         r"logs.csv, line 3: expected 3 fields \('user_id,item_id,domain'\), found 4"),
        ("user_id,item_id,domain\nu1,i1,a\n\nu1,i2\n",
         r"logs.csv, line 4: expected 3 fields .*found 2"),
        ("user_id,item_id,domain,rating\nu1,i1,a,5\n\nu1,i2,a,five\n",
         r"logs.csv, line 4: rating 'five' is not a number"),
        ("user_id,item_id,domain,timestamp\nu1,i1,a,1\nu1,i2,a,yesterday\n",
         r"logs.csv, line 3: timestamp 'yesterday' is neither a number nor an ISO date"),
        ("user,item_id,domain\nu1,i1,a\n",
         r"logs.csv: missing column 'user_id' \(columns found: user, item_id, domain\)"),
        ("user_id,item_id\nu1,i1\n", r"logs.csv: missing column 'domain'"),
        ("", r"logs.csv: the file is empty"),
        ("\n\n", r"logs.csv: the file is empty"),
        ("user_id,item_id,domain\n", r"logs.csv: the file has no data rows"),
        ('user_id,item_id,domain\nu1,"i1,a\n', r"logs.csv"),
    ],
)
def test_malformed_csv(tmp_path, text, message):
    path = write(tmp_path / "logs.csv", text)
    with pytest.raises(DataError, match=message):
        read_tabular(path)


def test_malformed_json_lines(tmp_path):
    path = write(tmp_path / "logs.jsonl",
                 '{"user_id": "u1", "item_id": "i1", "domain": "a"}\n\n{"user_id": "u2", \n')
    with pytest.raises(DataError, match=r"logs.jsonl, line 3: invalid JSON"):
        read_tabular(path)
    write(path, '{"user_id": "u1", "item_id": "i1", "domain": "a", "rating": 4}\n'
                '{"user_id": "u1", "item_id": "i2", "domain": "a", "rating": "bad"}\n')
    with pytest.raises(DataError, match=r"logs.jsonl, line 2: rating 'bad' is not a number"):
        read_tabular(path)
    write(path, '["u1", "i1"]\n')
    with pytest.raises(DataError, match=r"logs.jsonl, line 1: expected a JSON object"):
        read_tabular(path)


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "logs.parquet"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i", "i"], "domain": "a",
                  "rating": ["4", "x"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"logs.parquet, row 2: rating 'x' is not a number"):
        read_tabular(path)
    write(tmp_path / "not.parquet", "hello")
    with pytest.raises(DataError, match="not.parquet: cannot read as Parquet"):
        read_tabular(tmp_path / "not.parquet")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"nope.csv: no such file"):
        read_tabular(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"logs.xlsx: cannot tell the format.*pass format="):
        read_tabular(write(tmp_path / "logs.xlsx", "x"))
    ok = read_tabular(write(tmp_path / "logs.dat", "user_id,item_id\nu,i\n"), format="csv",
                      domain="d")
    assert len(ok.build().interactions) == 1
    with pytest.raises(DataError, match="unknown name"):
        read_tabular(tmp_path / "logs.dat", format="csv", columns={"usr": "u"})


def test_split_file_errors(tmp_path):
    logs = write(tmp_path / "logs.csv", LOGS)
    split = write(tmp_path / "split.csv",
                  "user_id,item_id,domain,part\nu1,m1,movies,test\nu9,m1,movies,test\n")
    with pytest.raises(DataError, match=r"split.csv, line 3: split row \(user_id='u9', "
                                        r"item_id='m1', domain='movies'\) matches no interaction"):
        read_tabular(logs, split=split)
    write(split, "user_id,item_id,domain,part\nu1,m1,movies,holdout\n")
    with pytest.raises(DataError, match=r"split.csv, line 2: part 'holdout' is not one of "
                                        "train, valid, test"):
        read_tabular(logs, split=split)
    write(split, "user_id,item_id,domain,part\nu1,m1,movies,test\nu1,m1,movies,valid\n")
    with pytest.raises(DataError, match=r"split.csv, line 3: .* listed earlier with another part"):
        read_tabular(logs, split=split)
    write(split, "user_id,item_id,domain\nu1,m1,movies\n")
    with pytest.raises(DataError, match=r"split.csv: missing column 'part'"):
        read_tabular(logs, split=split)


def test_items_file_missing_column(tmp_path):
    logs = write(tmp_path / "logs.csv", LOGS)
    items = write(tmp_path / "items.csv", "id,title\nb1,x\n")
    with pytest.raises(DataError, match=r"items.csv: missing column 'item_id'"):
        read_tabular(logs, items=items)
    with pytest.raises(DataError, match=r"items.csv: missing column 'item_id' "
                                        r"\(mapped from 'asin'\)"):
        read_tabular(logs, items=items, columns={"item_id": "asin"})
