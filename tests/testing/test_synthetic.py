"""make_two_domain: shape, determinism, and the planted answer."""

import numpy as np

from crossrec.data.split import cold_start_users
from crossrec.testing import make_two_domain
from crossrec.testing.synthetic import THEMES


def test_shape_and_overlap() -> None:
    data = make_two_domain(n_users=100, n_items=(40, 30), n_overlap=60)
    assert data.domains == ("source", "target")
    assert data.n_users == 100
    assert data.info.n_domain_items("source") == 40
    assert data.info.n_domain_items("target") == 30
    assert len(data.overlap_users("source", "target")) == 60
    assert len(data.domain_users("source")) == 80 and len(data.domain_users("target")) == 80
    assert (data.interactions["timestamp"] > 0).all()
    assert all(text for text in data.item_text)


def test_deterministic_by_seed() -> None:
    a, b, c = make_two_domain(seed=1), make_two_domain(seed=1), make_two_domain(seed=2)
    assert a.interactions.equals(b.interactions) and a.item_text == b.item_text
    assert not a.interactions.equals(c.interactions)


def test_users_stay_in_their_cluster_and_titles_say_so() -> None:
    data = make_two_domain()
    answer = data.report["synthetic"]
    user_cluster = np.asarray(answer["user_cluster"])
    item_cluster = np.asarray(answer["item_cluster"])
    inter = data.interactions
    same = user_cluster[inter["user"].to_numpy()] == item_cluster[inter["item"].to_numpy()]
    assert 0.8 < same.mean() < 0.97  # affinity 0.9
    for item in range(data.n_items):
        words = THEMES[item_cluster[item]]
        assert any(w in data.item_text[item] for w in words)


def test_target_blocks_are_not_aligned_with_positions() -> None:
    data = make_two_domain(n_clusters=8, n_items=(80, 80), seed=3)
    item_cluster = np.asarray(data.report["synthetic"]["item_cluster"])
    src = item_cluster[data.domain_items("source")]
    tgt = item_cluster[data.domain_items("target")]
    assert set(src) == set(tgt) == set(range(8))
    assert not np.array_equal(src, tgt)


def test_cold_start_split() -> None:
    split = cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)
    info = split.describe()
    assert info["test_cold_users"] == info["test_users"] == 30


def test_text_noise_is_backward_compatible_and_moves_titles() -> None:
    plain = make_two_domain(seed=4)
    assert plain.item_text == make_two_domain(seed=4, text_noise=0.0).item_text
    noisy = make_two_domain(seed=4, text_noise=0.3)
    assert noisy.interactions.equals(plain.interactions)  # only the titles change
    answer = noisy.report["synthetic"]
    moved = np.asarray(answer["text_cluster"]) != np.asarray(answer["item_cluster"])
    assert 0.15 < moved.mean() < 0.45
    for item in np.flatnonzero(moved):
        assert any(w in noisy.item_text[item] for w in THEMES[answer["text_cluster"][item]])
    assert plain.report["synthetic"]["text_cluster"] == plain.report["synthetic"]["item_cluster"]


def test_hashing_encoder_puts_a_cluster_together() -> None:
    from crossrec.testing.text import HashingEncoder

    data = make_two_domain()
    vectors = HashingEncoder().encode(data.item_text)
    assert vectors.shape == (data.n_items, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    cluster = np.asarray(data.report["synthetic"]["item_cluster"])
    sim = vectors @ vectors.T
    same = cluster[:, None] == cluster[None, :]
    assert sim[same].mean() > sim[~same].mean() + 0.3
