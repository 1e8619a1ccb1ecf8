"""Two towers: they learn a cross-domain hop that raw cosine cannot see, and read back."""

import numpy as np

from crossrec.models.ranker.tower import PREFIX, Towers, fit_towers, read_towers


def _hop(seed: int = 0, n_clusters: int = 5, dim: int = 32, users: int = 400,
         items: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Users of cluster c have outside profiles near direction a_c and choose items whose
    vectors lie near direction b_c, where every b is orthogonal to every a (raw cosine of a
    profile to any item is noise)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    a, b = basis[:n_clusters], basis[n_clusters:2 * n_clusters]
    uc = rng.integers(0, n_clusters, users)
    ic = np.arange(items) % n_clusters
    prof = a[uc] + 0.3 * rng.normal(size=(users, dim)) / np.sqrt(dim)
    vec = b[ic] + 0.3 * rng.normal(size=(items, dim)) / np.sqrt(dim)
    prof /= np.linalg.norm(prof, axis=1, keepdims=True)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    pu, pi = [], []
    for u in range(users):
        chosen = rng.choice(np.flatnonzero(ic == uc[u]), 4, replace=False)
        pu += [u] * 4
        pi += chosen.tolist()
    return (prof.astype(np.float32), np.array(pu), np.array(pi), vec.astype(np.float32),
            (uc[:, None] == ic[None, :]))


def _in_cluster_share(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(relevant, top, 1).mean())


def test_towers_learn_the_hop_raw_cosine_misses() -> None:
    prof, users, items, vec, relevant = _hop()
    train = users < 300  # users 300.. are never seen in training
    towers = fit_towers(prof, users[train], items[train], vec, seed=0, k=16, hidden=64,
                        epochs=30, batch=256, lr=3e-3)
    assert towers is not None
    learned = towers.users(prof[300:]) @ towers.items(vec).T
    raw = prof[300:] @ vec.T
    assert _in_cluster_share(learned, relevant[300:]) > 0.9
    assert _in_cluster_share(raw, relevant[300:]) < 0.5


def test_too_few_users_give_no_towers() -> None:
    prof, users, items, vec, _ = _hop(users=40)
    assert fit_towers(prof, users, items, vec, seed=0, epochs=1) is None


def test_towers_read_back_from_state_keys() -> None:
    prof, users, items, vec, _ = _hop()
    towers = fit_towers(prof, users, items, vec, seed=0, k=8, hidden=16, epochs=2)
    state = {f"tower.{k}.office.supplies": w for k, w in towers.weights.items()}
    state["text_map.office"] = np.zeros(3)
    back = read_towers(state)
    assert list(back) == ["office.supplies"] and set(back["office.supplies"].weights) == set(PREFIX)
    again = Towers(back["office.supplies"].weights)
    np.testing.assert_array_equal(again.users(prof[:5]), towers.users(prof[:5]))
    np.testing.assert_array_equal(again.items(vec[:5]), towers.items(vec[:5]))
