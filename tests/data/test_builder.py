import numpy as np
import pandas as pd
import pytest

from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import SEP
from crossrec.errors import DataError


def frame(rows, columns=("user_id", "item_id", "domain")):
    return pd.DataFrame(rows, columns=list(columns))


def triples(ds):
    """(user_id, domain, item_id) of every interaction, as a set."""
    inter = ds.interactions
    users = ds.users.raw(inter["user"].to_numpy())
    items = ds.item_ids(inter["item"].to_numpy())
    doms = np.asarray(ds.domains)[inter["domain"].to_numpy()]
    return set(zip(users, doms, items, strict=True))


def test_dedupe_keeps_earliest_by_timestamp():
    rows = frame([("u1", "i1", "a", 1.0, 50), ("u1", "i1", "a", 4.0, 20),
                  ("u1", "i2", "a", 3.0, 10)],
                 ("user_id", "item_id", "domain", "rating", "timestamp"))
    ds = DatasetBuilder("t").add_interactions(rows).build()
    assert len(ds.interactions) == 2
    kept = ds.interactions[ds.interactions["item"] == ds.item_index("a", ["i1"])[0]]
    assert kept["rating"].tolist() == [4.0] and kept["timestamp"].tolist() == [20]
    step = {"step": "duplicate (user, item) kept once (earliest)", "dropped": 1}
    assert step in ds.report["steps"]
    assert ds.report["raw_interactions"] == 3 and ds.report["interactions"] == 2


def test_dedupe_without_timestamp_keeps_first_and_can_be_off():
    rows = frame([("u1", "i1", "a", 1.0), ("u1", "i1", "a", 5.0)],
                 ("user_id", "item_id", "domain", "rating"))
    assert DatasetBuilder().add_interactions(rows).build().interactions["rating"].tolist() == [1.0]
    assert len(DatasetBuilder().add_interactions(rows).build(dedupe=False).interactions) == 2


def test_same_item_id_in_two_domains_is_two_items():
    rows = frame([("u1", "x", "a"), ("u1", "x", "b")])
    ds = DatasetBuilder().add_interactions(rows).build()
    assert ds.n_items == 2 and len(ds.interactions) == 2
    assert ds.item_index("a", ["x"])[0] != ds.item_index("b", ["x"])[0]


def test_k_core_known_answer():
    # 2-core of domain a cascades: u4 (1 row) -> i4 -> u3 -> i3; u1 and u2 keep i1, i2.
    a = [("u1", "i1"), ("u1", "i2"), ("u1", "i3"), ("u2", "i1"), ("u2", "i2"),
         ("u3", "i3"), ("u3", "i4"), ("u4", "i4")]
    # domain b is filtered on its own: u1 has 1 row there and loses it, nothing else is left
    b = [("u1", "j1"), ("u5", "j2"), ("u5", "j3"), ("u6", "j2"), ("u6", "j3")]
    builder = DatasetBuilder("k")
    builder.add_interactions(frame(a, ("user_id", "item_id")), domain="a")
    builder.add_interactions(frame(b, ("user_id", "item_id")), domain="b")
    ds = builder.build(k_core=2)
    assert triples(ds) == {("u1", "a", "i1"), ("u1", "a", "i2"), ("u2", "a", "i1"),
                           ("u2", "a", "i2"), ("u5", "b", "j2"), ("u5", "b", "j3"),
                           ("u6", "b", "j2"), ("u6", "b", "j3")}
    steps = {s["step"]: s["dropped"] for s in ds.report["steps"]}
    assert steps["2-core filter in domain 'a'"] == 4
    assert steps["2-core filter in domain 'b'"] == 1
    # k-core drops catalogue items without interactions
    assert ds.n_items == 4


def test_domain_without_interactions_error_text():
    builder = DatasetBuilder("toy").add_interactions(frame([("u1", "i1", "a")]))
    with pytest.raises(DataError, match="dataset 'toy': domain 'zzz' has no interactions$"):
        builder.build(domains=["a", "zzz"])
    with pytest.raises(DataError, match="domain 'a' has no interactions after 2-core filtering"):
        builder.build(k_core=2)


def test_no_interactions_error():
    with pytest.raises(DataError, match="dataset 'empty': no interactions were added"):
        DatasetBuilder("empty").build()


def test_items_grouped_by_domain_and_domain_order():
    rows = frame([("u1", "b1", "b"), ("u1", "a1", "a"), ("u2", "b2", "b"), ("u2", "a2", "a"),
                  ("u3", "c1", "c")])
    ds = DatasetBuilder().add_interactions(rows).build()
    assert ds.domains == ("b", "a", "c")  # order of first appearance
    assert (np.diff(ds.item_domain) >= 0).all()
    assert ds.item_ids(np.arange(ds.domain_items("a").start, ds.domain_items("a").stop)).tolist() \
        == ["a1", "a2"]
    ds2 = DatasetBuilder().add_interactions(rows).build(domains=["a", "b"])
    assert ds2.domains == ("a", "b")
    assert ds2.item_ids(np.arange(ds2.n_items)).tolist() == ["a1", "a2", "b1", "b2"]
    assert any("rows of domains not asked for ['c']" in s["step"] for s in ds2.report["steps"])
    # interaction items point to the right (domain, item)
    assert triples(ds2) == {("u1", "b", "b1"), ("u1", "a", "a1"), ("u2", "b", "b2"),
                            ("u2", "a", "a2")}


def test_catalogue_items_and_text():
    builder = DatasetBuilder().add_interactions(frame([("u1", "i1", "a"), ("u1", "i9", "a")]))
    builder.add_items(pd.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["One", "", "Three"],
                                    "text": ["t1", "t2", "t3"]}), domain="a")
    builder.add_items(pd.DataFrame({"item_id": ["k"], "domain": ["other"]}))  # not a domain
    ds = builder.build()
    assert ds.item_ids(np.arange(ds.n_items)).tolist() == ["i1", "i9", "i2", "i3"]
    assert ds.item_text == ["One", "", "t2", "Three"]  # title, else text
    assert ds.report["items_without_metadata"] == 1  # i9
    assert ds.items.ids[0] == f"a{SEP}i1"
    only_used = builder.build(keep_items_without_interactions=False)
    assert only_used.item_ids(np.arange(only_used.n_items)).tolist() == ["i1", "i9"]


def test_empty_ids_dropped_and_reported():
    rows = frame([("u1", "i1", "a"), ("", "i2", "a"), ("u2", "nan", "a")])
    ds = DatasetBuilder().add_interactions(rows).build()
    assert len(ds.interactions) == 1
    assert ds.report["steps"][0] == {"step": "drop rows with empty user_id or item_id",
                                     "dropped": 2}


def test_bad_input_errors():
    b = DatasetBuilder()
    with pytest.raises(DataError, match=r"f.csv: missing column 'item_id'"):
        b.add_interactions(pd.DataFrame({"user_id": ["u"]}), domain="a", source="f.csv")
    with pytest.raises(DataError, match="missing column 'domain'"):
        b.add_interactions(pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}))
    with pytest.raises(DataError, match="column 'rating' is not numeric"):
        b.add_interactions(frame([("u", "i", "x")], ("user_id", "item_id", "rating")), domain="a")
    with pytest.raises(DataError, match="column 'part' has value 'later'"):
        b.add_interactions(frame([("u", "i", "later")], ("user_id", "item_id", "part")),
                           domain="a")


def test_parts_default_to_train_and_dtypes():
    b = DatasetBuilder()
    b.add_interactions(frame([("u1", "i1", "Test")], ("user_id", "item_id", "part")), domain="a")
    b.add_interactions(frame([("u1", "i2")], ("user_id", "item_id")), domain="a")
    inter = b.build().interactions
    assert inter["part"].astype(str).tolist() == ["test", "train"]
    assert {c: str(t) for c, t in inter.dtypes.items()} == {
        "user": "int32", "item": "int32", "domain": "int8", "rating": "float32",
        "timestamp": "int64", "part": "category"}
    assert np.isnan(inter["rating"]).all() and (inter["timestamp"] == 0).all()


def _reference(rows: pd.DataFrame, k: int) -> set:
    """Straightforward pandas dedupe + per-domain k-core, to check the optimised builder."""
    rows = rows.sort_values("timestamp", kind="stable").drop_duplicates(
        ["user_id", "domain", "item_id"])
    kept = []
    for _, d in rows.groupby("domain"):
        while k:
            ok = (d.groupby("user_id")["item_id"].transform("size") >= k) & (
                d.groupby("item_id")["user_id"].transform("size") >= k)
            if ok.all():
                break
            d = d[ok]
        kept.append(d)
    out = pd.concat(kept)
    return set(zip(out["user_id"], out["domain"], out["item_id"], strict=True))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [0, 2, 3])
def test_matches_reference_on_random_data(seed, k):
    rng = np.random.default_rng(seed)
    n = 400
    rows = pd.DataFrame({"user_id": rng.choice([f"u{i}" for i in range(40)], n),
                         "item_id": rng.choice([f"i{i}" for i in range(30)], n),
                         "domain": rng.choice(["a", "b"], n),
                         "timestamp": rng.integers(0, 20, n)})
    ds = DatasetBuilder().add_interactions(rows).build(k_core=k)
    assert triples(ds) == _reference(rows, k)
    # the earliest timestamp of each kept (user, domain, item) survives
    earliest = rows.groupby(["user_id", "domain", "item_id"])["timestamp"].min()
    inter = ds.interactions
    got = pd.Series(inter["timestamp"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [ds.users.raw(inter["user"]), np.asarray(ds.domains)[inter["domain"]],
         ds.item_ids(inter["item"].to_numpy())]))
    assert (got == earliest.reindex(got.index)).all()
