import numpy as np
import pytest

from crossrec.data.sources.cdrib import read_cdrib
from crossrec.data.split import predefined
from crossrec.errors import DataError


def toy(root, common=2):
    """Pair a_b with C = ``common``: users 0, 1 shared; user 5 is a different person per side."""
    files = {
        "a_b": {"train": "0\t0\n1\t1\n5\t0\n", "valid": "1\t0\n", "test": "0\t1\n"},
        "b_a": {"train": "0\t0\n1\t0\n5\t1\n", "valid": "5\t0\n", "test": "1\t1\n"},
    }
    for folder, parts in files.items():
        (root / folder).mkdir(parents=True)
        for part, text in parts.items():
            (root / folder / f"{part}.txt").write_text(text)
    (root / "b_a" / "a_b_data_info.txt").write_text(f"raw info\ncommon user num {common}\n")
    return root


def test_toy_pair(tmp_path):
    ds = read_cdrib(toy(tmp_path), "a_b").build()
    assert ds.domains == ("a", "b") and ds.name == "a_b"
    assert sorted(ds.users.ids) == ["0", "1", "a:5", "b:5"]
    assert sorted(ds.users.raw(ds.overlap_users("a", "b"))) == ["0", "1"]
    parts = ds.interactions["part"].astype(str).tolist()
    assert parts.count("valid") == 2 and parts.count("test") == 2
    # the other order names the same pair; C can be given
    again = read_cdrib(tmp_path, "b_a", common_users=1).build()
    assert again.domains == ("b", "a")
    assert sorted(again.users.ids) == ["0", "a:1", "a:5", "b:1", "b:5"]


def test_errors(tmp_path):
    toy(tmp_path)
    with pytest.raises(DataError, match="pair must look like 'cloth_sport'"):
        read_cdrib(tmp_path, "cloth")
    with pytest.raises(DataError, match=r"x_y: no such folder \(CDRIB pair .x_y. needs x_y/"):
        read_cdrib(tmp_path, "x_y", common_users=3)
    (tmp_path / "b_a" / "a_b_data_info.txt").unlink()
    with pytest.raises(DataError, match="a_b_data_info.txt: not found.*pass common_users="):
        read_cdrib(tmp_path, "a_b")
    (tmp_path / "a_b" / "valid.txt").write_text("1\t0\n\n2\tseven\n")
    with pytest.raises(DataError, match=r"a_b/valid.txt, line 3: item 'seven' is not an integer"):
        read_cdrib(tmp_path, "a_b", common_users=2)
    (tmp_path / "a_b" / "valid.txt").write_text("1\t0\t9\n")
    with pytest.raises(DataError, match=r"a_b/valid.txt, line 1: expected 2 fields"):
        read_cdrib(tmp_path, "a_b", common_users=2)


# SOURCE.md, "Counts": users (overlap + only-here), items, train / valid / test
REAL = {
    "cloth_sport": {"cloth": (41_829, 17_943, 187_880, 3_156, 3_085),
                    "sport": (27_328, 12_655, 163_291, 3_589, 3_546), "overlap": 9_828},
    "game_video": {"game": (25_025, 12_319, 155_036, 1_381, 1_304),
                   "video": (19_457, 8_751, 156_091, 1_435, 1_458), "overlap": 2_179},
}


@pytest.mark.parametrize("pair", sorted(REAL))
def test_real_pair_counts(cdrib_dir, pair):
    ds = read_cdrib(cdrib_dir, pair).build()
    expected = REAL[pair]
    stats = ds.stats()
    assert stats["overlap"] == {"|".join(ds.domains): expected["overlap"]}
    assert ds.report["steps"][0]["dropped"] == 0  # no duplicates in the files
    for d in ds.domains:
        users, items, train, valid, test = expected[d]
        inter = ds.domain_interactions(d)
        counts = inter["part"].astype(str).value_counts()
        assert (stats["domains"][d]["users"], stats["domains"][d]["items"]) == (users, items)
        assert (counts["train"], counts["valid"], counts["test"]) == (train, valid, test)
    # the authors' protocol: held-out users of a domain are cold there (no training rows)
    split = predefined(ds, ds.domains[0])
    for d in ds.domains:
        held = np.union1d(split.truth("valid", d)["user"], split.truth("test", d)["user"])
        assert (split.user_groups(held, d) == "cold").all()
    n_cold = {"cloth_sport": 990, "game_video": 226}[pair]
    truth = split.truth("test")
    held = np.union1d(split.truth("valid")["user"], truth["user"])
    assert len(held) == n_cold
