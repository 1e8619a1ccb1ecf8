"""EASE: the contract for both catalogues, and the closed form against numpy."""

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from crossrec.data import DatasetBuilder
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.ease import EASE, ease_weights
from crossrec.testing.contract import RecommenderContract


class TestEASETarget(RecommenderContract):
    model_cls = EASE
    fast_config = {"train_on": "target"}
    scores_every_domain = False
    history_is_exact = True


class TestEASEAll(RecommenderContract):
    model_cls = EASE
    fast_config = {"train_on": "all"}
    transfers = True
    history_is_exact = True


def _closed_form(x: np.ndarray, l2: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_weights_match_numpy() -> None:
    x = (np.random.default_rng(0).random((40, 9)) < 0.3).astype(np.float64)
    got = ease_weights(sp.csr_matrix(x), l2=2.0).numpy()
    np.testing.assert_allclose(got, _closed_form(x, 2.0), atol=1e-5)


def _data(rows: list[tuple[str, str]]) -> "DatasetBuilder":
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": ["i0", "i1", "i2", "i3", "never"]})
    return (DatasetBuilder("hand").add_interactions(frame, domain="d")
            .add_items(items, domain="d").build())


ROWS = [("a", "i0"), ("a", "i1"), ("b", "i0"), ("b", "i2"), ("c", "i1"), ("c", "i2"),
        ("c", "i3"), ("d", "i0"), ("d", "i1"), ("d", "i3")]


def test_scores_and_items_without_interactions() -> None:
    data = _data(ROWS)
    model = EASE(l2=1.0).fit(data, FitOptions(target="d", progress=False))
    x = data.user_items("d").toarray()
    active = [data.item_index("d", [i])[0] for i in ["i0", "i1", "i2", "i3"]]
    never = data.item_index("d", ["never"])[0]
    expected = x[:, active] @ _closed_form(x[:, active], 1.0)
    scores = model.score(Query(torch.arange(data.n_users)), "d").numpy()
    np.testing.assert_allclose(scores[:, active], expected, atol=1e-5)
    # an item nobody interacted with ranks last, one below the row's minimum, finite
    np.testing.assert_allclose(scores[:, never], expected.min(axis=1) - 1.0, atol=1e-5)


def test_max_items_keeps_the_most_popular() -> None:
    data = _data(ROWS)  # counts: i0 3, i1 3, i2 2, i3 2
    model = EASE(l2=1.0, max_items=2).fit(data, FitOptions(target="d", progress=False))
    kept = sorted(data.item_ids(model.items).tolist())
    assert kept == ["i0", "i1"]
    scores = model.score(Query(torch.arange(data.n_users)), "d")
    assert torch.isfinite(scores).all()
    dropped = data.item_index("d", ["i2", "i3", "never"])
    assert (scores[:, dropped] < scores[:, model.items].min(dim=1, keepdim=True).values).all()


def _fitted(rows: list[tuple[str, str]], items: list[str], max_items: int = 20_000) -> "EASE":
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    data = (DatasetBuilder("sub").add_interactions(frame, domain="d")
            .add_items(pd.DataFrame({"item_id": items}), domain="d").build())
    return EASE(l2=3.0, max_items=max_items).fit(data, FitOptions(target="d", progress=False))


def test_update_matches_a_fresh_inverse() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((60, 40)) < 0.2).astype(np.float64)
    from crossrec.models.baselines.ease import _ease_inverse, ease_update

    b, diag = (t.numpy() for t in _ease_inverse(sp.csr_matrix(x), l2=3.0))
    y = x.copy()
    y[:5, 20:] = 0.0  # five users lose part of their rows
    y[7, 3] = 1.0 if y[7, 3] == 0 else y[7, 3]
    changed = np.flatnonzero((x != y).any(axis=1))
    got, got_diag = ease_update(torch.from_numpy(b), torch.from_numpy(diag),
                                sp.csr_matrix(x[changed]), sp.csr_matrix(y[changed]))
    np.testing.assert_allclose(got.numpy(), _closed_form(y, 3.0), atol=2e-5)
    p = np.linalg.inv(y.T @ y + 3.0 * np.eye(40))
    np.testing.assert_allclose(got_diag.numpy(), np.diag(p), rtol=1e-4)


def test_fit_subset_equals_a_fresh_fit_on_the_subset() -> None:
    rng = np.random.default_rng(4)
    items = [f"i{j}" for j in range(100)]
    rows = [(f"u{u}", items[j]) for u in range(150) for j in range(99) if rng.random() < 0.1]
    rows.append(("u0", "i99"))
    full = _fitted(rows, items)
    # three users lose their rows in items i60.. (i99 then has no row at all)
    sub_rows = [(u, i) for u, i in rows if not (u in ("u0", "u1", "u2") and int(i[1:]) >= 60)]
    data = full.train_data
    inter = data.interactions
    users = data.users.raw(inter["user"].to_numpy())
    items_of = data.item_ids(inter["item"].to_numpy())
    gone = set(rows) - set(sub_rows)
    lost = np.array([(u, i) in gone for u, i in zip(users, items_of, strict=True)])
    sub = data.with_interactions(inter[~lost])
    derived = full.fit_subset(sub, FitOptions(target="d", progress=False))
    fresh = EASE(l2=3.0).fit(sub, FitOptions(target="d", progress=False))
    assert derived is not None
    np.testing.assert_array_equal(derived.items, fresh.items)
    np.testing.assert_allclose(derived.weights.numpy(), fresh.weights.numpy(), atol=2e-5)
    q = Query(torch.arange(sub.n_users))
    np.testing.assert_allclose(derived.score(q, "d").numpy(), fresh.score(q, "d").numpy(),
                               atol=1e-4)


def test_fit_subset_declines_what_it_cannot_update() -> None:
    rng = np.random.default_rng(5)
    items = [f"i{j}" for j in range(12)]
    rows = [(f"u{u}", items[j]) for u in range(30) for j in range(12) if rng.random() < 0.3]
    full = _fitted(rows, items)
    inter = full.train_data.interactions
    # most users change: a fresh inverse is cheaper
    assert full.fit_subset(full.train_data.with_interactions(inter.iloc[::2]),
                           FitOptions(target="d", progress=False)) is None
    restored = EASE(l2=3.0).restore(full.train_data, full.options, full.state())
    assert restored.fit_subset(full.train_data, full.options) is None


def _former_score(model: EASE, query: Query, domain: str) -> torch.Tensor:
    """The score path before the single-copy block: rows gathered, then columns."""
    train = model.train_data
    items = train.domain_items(domain)
    catalogue = model.config.catalogue(train, model.options.target)
    history = model.history_matrix(query, catalogue)[:, model.items]
    h = torch.from_numpy(history.toarray())
    local = model.items + catalogue.start - items.start
    inside = (local >= 0) & (local < items.stop - items.start)
    cols = torch.from_numpy(np.flatnonzero(inside))
    rows = torch.from_numpy(np.unique(history.indices).astype(np.int64))
    known = h.index_select(1, rows) @ model.weights.index_select(0, rows).index_select(1, cols)
    out = torch.empty(h.shape[0], items.stop - items.start)
    out[:] = known.min(dim=1, keepdim=True).values - 1.0
    out[:, torch.from_numpy(local[inside])] = known
    return out


def test_one_copy_block_gives_the_former_floats() -> None:
    from crossrec.testing.contract import SOURCE, TARGET
    from crossrec.testing.synthetic import make_two_domain

    data = make_two_domain()
    model = EASE(train_on="all", max_items=150).fit(
        data, FitOptions(target=TARGET, sources=(SOURCE,), progress=False))
    queries = [Query(torch.arange(16)), Query(torch.arange(40, 41)),
               Query(torch.tensor([-1, -1]), torch.tensor([[0, 5, 130], [-1, -1, 7]]))]
    for query in queries:
        for domain in (SOURCE, TARGET):
            assert torch.equal(model.score(query, domain), _former_score(model, query, domain))
    # items stored out of order (columns of a domain not one block): the gathered path
    perm = np.random.default_rng(0).permutation(len(model.items))
    shuffled = EASE(train_on="all", max_items=150).restore(
        data, model.options, {"items": model.items[perm],
                              "weights": model.weights.numpy()[np.ix_(perm, perm)]})
    for domain in (SOURCE, TARGET):
        np.testing.assert_allclose(shuffled.score(queries[0], domain),
                                   model.score(queries[0], domain), rtol=1e-5, atol=1e-6)
