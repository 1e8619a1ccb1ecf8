import numpy as np
import pytest

from crossrec.data.sources.arts_office import read_arts_office
from crossrec.data.split import predefined
from crossrec.errors import DataError

ARTS = "idBefore,item_title,idAfter,item_attribute\n0,red pen,0,arts crafts pens acme\n" \
       "1,blue ink,1,arts crafts ink acme\n"
OFFICE = "idBefore,item_title,idAfter,item_attribute\n0,stapler,2,office products staplers bo\n"
USERS = "AREVIEWER1\t0\nAREVIEWER2\t1\nAREVIEWER3\t2\n"


def toy(folder, train="0\t2\t0|0|0\t2|1|1\t1|2|2\t\n0\t2\t0|0|0\t2|1|1\t0|2|2\t\n",
        valid="2\t0\t1|0|0\t\n", test="1\t1\t1|0|0\t2|1|1\t\n1\t1\t1|0|0\t0|1|1\t\n"):
    folder.mkdir(exist_ok=True)
    for name, text in {"item_listA_F.csv": ARTS, "item_listO_AA_F.csv": OFFICE,
                       "userlist.txt": USERS, "train_F2.txt": train, "valid_F2.txt": valid,
                       "test_F2.txt": test}.items():
        (folder / name).write_text(text)
    return folder


def test_toy_rows_and_parts(tmp_path):
    root = toy(tmp_path / "ao")
    ds = read_arts_office(root).build(dedupe=False)
    assert ds.domains == ("arts", "office")
    inter = ds.interactions
    rows = list(zip(ds.users.raw(inter["user"]), ds.item_ids(inter["item"].to_numpy()),
                    inter["timestamp"], inter["part"].astype(str), strict=True))
    assert rows == [
        ("AREVIEWER1", "0", 0, "train"), ("AREVIEWER1", "2", 1, "train"),
        ("AREVIEWER1", "1", 2, "train"), ("AREVIEWER1", "0", 2, "train"),
        ("AREVIEWER3", "1", 0, "valid"),
        ("AREVIEWER2", "1", 0, "train"), ("AREVIEWER2", "2", 1, "test"),
        ("AREVIEWER2", "0", 1, "test"),
    ]
    i = ds.item_index("office", ["2"])[0]
    assert ds.item_text[i] == "stapler"
    assert ds.item_attrs["categories"].iloc[i] == "office products staplers bo"
    # the repeated item 0 of AREVIEWER1 is kept once, at its earliest position
    assert len(read_arts_office(root).build().interactions) == 7


def test_empty_file_and_user_in_two_files(tmp_path):
    with pytest.raises(DataError, match="valid_F2.txt: the file is empty"):
        read_arts_office(toy(tmp_path / "a", valid=""))
    with pytest.raises(DataError, match=r"test_F2.txt, line 1: user AREVIEWER3 is also in "
                                        "valid_F2.txt"):
        read_arts_office(toy(tmp_path / "b", test="2\t0\t1|0|0\t\n"))


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("0\t2\t0|0|0\t2|1|1\n", r"train_F2.txt, line 1: k = 2 but 2 items"),
        ("0\t1\t0|0|0\t2|5|5\n",
         r"train_F2.txt, line 1: item 2 is '2\|5\|5', expected 'item\|1\|1'"),
        ("0\t1\t0|0|0\t99|1|1\n", r"train_F2.txt, line 1: item 99 is in neither item list"),
        ("7\t0\t0|0|0\n", r"train_F2.txt, line 1: user index 7 is not in userlist.txt"),
        ("0\t1\t0|0|0\t2|1|1\n0\t1\t1|0|0\t2|1|1\n",
         r"train_F2.txt, line 2: the history differs from the line before"),
        ("zero\t1\n", r"train_F2.txt, line 1: expected 'user_index<TAB>k<TAB>item\|p\|p ...'"),
    ],
)
def test_malformed_sequences(tmp_path, train, message):
    with pytest.raises(DataError, match=message):
        read_arts_office(toy(tmp_path / "ao", train=train))


def test_malformed_item_list_and_users(tmp_path):
    root = toy(tmp_path / "ao")
    (root / "item_listA_F.csv").write_text(ARTS + "2,broken line\n")
    with pytest.raises(DataError, match=r"item_listA_F.csv, line 4: expected 4 fields"):
        read_arts_office(root)
    root = toy(tmp_path / "ao2")
    (root / "userlist.txt").write_text(USERS + "no index here\n")
    with pytest.raises(DataError, match=r"userlist.txt, line 4: expected"):
        read_arts_office(root)
    (root / "userlist.txt").unlink()
    with pytest.raises(DataError, match=r"userlist.txt: no such file"):
        read_arts_office(root)


@pytest.fixture(scope="module")
def real_builder(arts_office_dir):
    return read_arts_office(arts_office_dir)


def test_real_counts_before_dedupe(real_builder):
    # SOURCE.md totals: 9,577 users; Arts 110,877 interactions over 18,639 items,
    # Office 97,664 over 15,780 items (19,757 listed)
    stats = real_builder.build(dedupe=False).stats()
    assert stats["users"] == 9577
    assert stats["domains"]["arts"]["interactions"] == 110_877
    assert stats["domains"]["office"]["interactions"] == 97_664
    assert stats["domains"]["arts"]["items_with_interactions"] == 18_639
    assert stats["domains"]["office"]["items_with_interactions"] == 15_780
    assert stats["domains"]["office"]["items"] == 19_757


def test_real_split_and_dedupe(real_builder):
    ds = real_builder.build()
    stats = ds.stats()
    assert stats["overlap"]["arts|office"] == 9577
    assert stats["domains"]["arts"]["interactions"] == 110_016
    assert stats["domains"]["office"]["interactions"] == 96_645
    split = predefined(ds, "office")
    # 577 valid users and 1,000 test users with 2 targets each, less targets that repeat a
    # history item (the earliest row is kept, in training)
    assert split.valid["user"].nunique() == 577 and len(split.valid) == 1148
    assert split.test["user"].nunique() == 1000 and len(split.test) == 1982
    assert len(np.intersect1d(split.valid["user"], split.test["user"])) == 0
