import logging

import pytest

from crossrec.data.sources.recbole import read_recbole
from crossrec.errors import DataError

INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "1\t10\t5\t100\n1\t11\t3\t200\n2\t10\t4\t300\n2\t12\t2\t400\n3\t13\t1\t500\n")
ITEM = ("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        "10\tToy \"Story\"\tAnimation Comedy\n11\tHeat\tAction Crime\n12\tBig\tComedy Romance\n"
        "13\tShoah\tDocumentary\n")


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text(INTER)
    (folder / "toy.item").write_text(ITEM)
    return folder


def test_one_domain_named_after_the_dataset(toy):
    ds = read_recbole(toy).build()
    assert ds.domains == ("toy",) and ds.name == "toy"
    assert len(ds.interactions) == 5 and ds.n_users == 3
    assert ds.interactions["timestamp"].tolist() == [100, 200, 300, 400, 500]
    toy_story = ds.item_index("toy", ["10"])[0]
    assert ds.item_text[toy_story] == 'Toy "Story"'  # no CSV quoting in atomic files
    assert ds.item_attrs["categories"].iloc[toy_story] == "Animation Comedy"


def test_first_listed_domain_wins_and_the_rest_is_dropped(toy, caplog):
    with caplog.at_level(logging.INFO):
        ds = read_recbole(toy / "toy.inter",
                          domains={"fun": ["Comedy"], "tense": ["Action", "Romance"]}).build()
    assert ds.domains == ("fun", "tense")
    # "Big" is Comedy and Romance: it goes to the first listed domain only
    assert sorted(ds.item_ids(range(*_bounds(ds, "fun")))) == ["10", "12"]
    assert sorted(ds.item_ids(range(*_bounds(ds, "tense")))) == ["11"]
    assert len(ds.interactions) == 4  # the Documentary's interaction is dropped
    assert "1 of 4 items have none of the listed genres; dropped with their 1 interactions" \
        in caplog.text


def test_genre_list_shortcut(toy):
    ds = read_recbole(toy, domains=["Romance", "Comedy"], domain_by="genre").build()
    assert ds.domains == ("Romance", "Comedy")
    assert ds.item_ids(range(*_bounds(ds, "Romance"))).tolist() == ["12"]


def _bounds(ds, domain):
    s = ds.domain_items(domain)
    return s.start, s.stop


def test_errors(toy):
    with pytest.raises(DataError, match=r"domain 'x' lists genre\(s\) \['Westernn'\] that no item "
                                        "has; known genres: Action, Animation"):
        read_recbole(toy, domains={"x": ["Westernn"]})
    with pytest.raises(DataError, match=r"toy.item: no genre field \(looked for style"):
        read_recbole(toy, domains=["Action"], domain_by="style")
    (toy / "toy.inter").write_text(INTER + "4\t10\t5\n")
    with pytest.raises(DataError, match=r"toy.inter, line 7: expected 4 fields"):
        read_recbole(toy)
    (toy / "toy.inter").write_text(INTER + "4\t10\tfive\t600\n")
    with pytest.raises(DataError, match=r"toy.inter, line 7: rating 'five' is not a number"):
        read_recbole(toy)
    with pytest.raises(DataError, match=r"expected one '.inter' file \(found: none\)"):
        read_recbole(toy.parent)


def test_movielens_100k(ml100k_dir):
    ds = read_recbole(ml100k_dir).build()
    assert ds.stats()["domains"]["ml-100k"] == {
        "users": 943, "items": 1682, "items_with_interactions": 1682, "interactions": 100_000,
        "density": 100_000 / (943 * 1682)}
    assert all(ds.item_text)  # every item has a title
    split = read_recbole(ml100k_dir, domains=["Action", "Romance"]).build()
    stats = split.stats()
    # SOURCE.md: 251 Action films, 247 Romance films of which 25 are also Action
    assert stats["domains"]["Action"]["items"] == 251
    assert stats["domains"]["Romance"]["items"] == 222
    assert stats["overlap"]["Action|Romance"] == 924
