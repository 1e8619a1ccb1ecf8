import gzip
import json

import numpy as np
import pytest

from crossrec.data.sources import read
from crossrec.data.sources.amazon import DOWNLOAD_HINT, read_amazon_meta, read_amazon_reviews
from crossrec.errors import DataError

RATINGS_2014 = ("A2SUAM1J3GNN3B,0000013714,4.0,1355616000\n"
                "A3TS466QBAWB9D,B0000C9H0T,5.0,1400000000\n")
RATINGS_2018 = ("0000013714,A2SUAM1J3GNN3B,4.0,1355616000\n"
                "B0000C9H0T,A3TS466QBAWB9D,5.0,1400000000\n")
REVIEWS = [
    {"reviewerID": "A2SUAM1J3GNN3B", "asin": "B000JMLBHU", "overall": 5.0,
     "unixReviewTime": 1393545600, "reviewText": "Great, \"really\"."},
    {"reviewerID": "A3TS466QBAWB9D", "asin": "B000JMLBHU", "overall": 3.0,
     "unixReviewTime": 1393545700},
]
META_2014 = (
    "{'asin': 'B000JMLBHU', 'title': 'Kettle', 'categories': [['Home', 'Kitchen'], "
    "['Home', 'Tea']], 'brand': 'Acme'}\n"
    "{'asin': 'B000NOTSEEN', 'title': 'Not reviewed'}\n"
)


def gz(path, text):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("text", [RATINGS_2014, RATINGS_2018])
def test_ratings_csv_either_column_order(tmp_path, text):
    path = tmp_path / "ratings.csv"
    path.write_text(text)
    ds = read_amazon_reviews({"books": path}).build()
    assert sorted(ds.users.ids) == ["A2SUAM1J3GNN3B", "A3TS466QBAWB9D"]
    assert sorted(ds.item_ids(np.arange(ds.n_items))) == ["0000013714", "B0000C9H0T"]
    assert ds.interactions["rating"].tolist() == [4.0, 5.0]
    assert ds.interactions["timestamp"].tolist() == [1355616000, 1400000000]


def test_forced_order(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(RATINGS_2014)
    ds = read_amazon_reviews({"books": path}, csv_order="item_user").build()
    assert "0000013714" in ds.users  # as asked, even if wrong


def test_gzipped_reviews_python_literal_meta_and_two_domains(tmp_path):
    reviews = gz(tmp_path / "Home_5.json.gz", "\n".join(json.dumps(r) for r in REVIEWS) + "\n")
    python_lines = tmp_path / "reviews_Books_5.json"  # 2014 dumps with Python dict lines
    python_lines.write_text("{'reviewerID': 'A2SUAM1J3GNN3B', 'asin': '0000013714', "
                            "'overall': 4.0, 'unixReviewTime': 1200000000}\n")
    meta = gz(tmp_path / "meta_Home.json.gz", META_2014)
    ds = read("amazon_reviews", files={"home": reviews, "books": python_lines},
              meta={"home": meta}).build()
    assert ds.domains == ("home", "books")
    assert len(ds.overlap_users("home", "books")) == 1
    kettle = ds.item_index("home", ["B000JMLBHU"])[0]
    assert ds.item_text[kettle] == "Kettle"
    assert ds.item_attrs["categories"].iloc[kettle] == "Home, Kitchen, Tea"
    assert ds.item_attrs["brand"].iloc[kettle] == "Acme"
    assert ds.n_items == 2  # the unreviewed meta item is not added


def test_2023_release_keys(tmp_path):
    path = tmp_path / "Books.jsonl"
    path.write_text(json.dumps({"user_id": "AE1", "asin": "X1", "parent_asin": "P1",
                                "rating": 4.0, "timestamp": 1588687728923}) + "\n")
    meta = tmp_path / "meta_Books.jsonl"
    meta.write_text(json.dumps({"parent_asin": "P1", "title": "T", "categories": ["Books", "Kids"],
                                "store": "Pub"}) + "\n")
    ds = read_amazon_reviews({"books": path}, meta={"books": meta}).build()
    assert ds.item_ids([0]).tolist() == ["P1"]
    assert ds.interactions["timestamp"].tolist() == [1588687728]  # milliseconds -> seconds
    assert ds.item_attrs.iloc[0].to_dict() == {"title": "T", "categories": "Books, Kids",
                                               "brand": "Pub"}


def test_malformed_files(tmp_path):
    path = tmp_path / "Home_5.json"
    path.write_text(json.dumps(REVIEWS[0]) + "\n{'reviewerID': 'A1', 'asin': \n")
    with pytest.raises(DataError, match=r"Home_5.json, line 2: invalid JSON"):
        read_amazon_reviews({"home": path})
    path.write_text(json.dumps(REVIEWS[0]) + "\n" + json.dumps({"reviewerID": "A1"}) + "\n")
    with pytest.raises(DataError, match=r"Home_5.json, line 2: no reviewer id or asin"):
        read_amazon_reviews({"home": path})
    path.write_text(json.dumps({**REVIEWS[0], "overall": "five"}) + "\n")
    with pytest.raises(DataError, match=r"Home_5.json, line 1: rating 'five' is not a number"):
        read_amazon_reviews({"home": path})
    csv_path = tmp_path / "ratings.csv"
    csv_path.write_text(RATINGS_2014 + "A1,B0000C9H0T,5.0\n")
    with pytest.raises(DataError, match=r"ratings.csv, line 3: expected 4 fields"):
        read_amazon_reviews({"books": csv_path})
    gz(tmp_path / "empty.json.gz", "")
    with pytest.raises(DataError, match=r"empty.json.gz: the file is empty"):
        read_amazon_reviews({"books": tmp_path / "empty.json.gz"})
    with pytest.raises(DataError, match=r"missing.json: no such file"):
        read_amazon_reviews({"books": tmp_path / "missing.json"})
    with pytest.raises(DataError, match=r"meta: domain\(s\) \['toys'\] have no review file"):
        read_amazon_reviews({"books": csv_path}, meta={"toys": csv_path})
    bad_meta = tmp_path / "meta.json"
    bad_meta.write_text("{'title': 'no asin'}\n")
    with pytest.raises(DataError, match=r"meta.json, line 1: no 'asin' or 'parent_asin'"):
        read_amazon_meta(bad_meta)


def test_download_hint_names_the_public_pages():
    assert "https://nijianmo.github.io/amazon/index.html" in DOWNLOAD_HINT
    assert "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/" in DOWNLOAD_HINT
