"""Co-occurrence evidence: the batched computation against a dense reference, per user."""

import numpy as np
import scipy.sparse as sp

from crossrec.evidence import Evidence, explain_batch, explain_items
from crossrec.testing.synthetic import make_two_domain


def _reference(train, history: np.ndarray, items: np.ndarray, n: int) -> list[list[Evidence]]:
    """The one-user formula on a dense float32 binary matrix."""
    x = (train.user_items(None).toarray() > 0).astype(np.float32)
    h, r = x[:, history], x[:, items]
    norm = np.maximum(np.outer(np.sqrt(h.sum(0)), np.sqrt(r.sum(0))), 1e-12)
    sim = (h.T @ r) / norm
    out = []
    for j in range(len(items)):
        order = np.argsort(-sim[:, j], kind="stable")[:n]
        out.append([Evidence(train.domains[train.item_domain[history[o]]],
                             str(train.item_ids([history[o]])[0]), float(sim[o, j]))
                    for o in order if sim[o, j] > 0])
    return out


def test_batch_equals_one_user_at_a_time_and_the_reference() -> None:
    train = make_two_domain()
    full = train.user_items(None)
    rng = np.random.default_rng(0)
    histories, items = [], []
    for u in range(12):
        h = full.indices[full.indptr[u]:full.indptr[u + 1]].astype(np.int64)
        histories.append(np.concatenate([h, h[:1]]) if u == 3 else h)  # a repeated item
        items.append(rng.choice(train.n_items, size=5 if u != 5 else 0, replace=False))
    histories[7] = np.zeros(0, np.int64)  # no evidence: empty lists
    got = explain_batch(full, histories, items, train, 3)
    assert len(got) == 12
    for h, r, g in zip(histories, items, got, strict=True):
        assert g == explain_items(full, h, r, train, 3)
        assert len(g) == len(r)
        if len(h):
            want = _reference(train, h, r, 3)
            assert [[(e.domain, e.item_id) for e in x] for x in g] == \
                [[(e.domain, e.item_id) for e in x] for x in want]
            np.testing.assert_allclose([e.weight for x in g for e in x],
                                       [e.weight for x in want for e in x], rtol=1e-6)
    assert got[7] == [[] for _ in range(5)] and got[5] == []
    assert any(e for g in got for x in g for e in x)
    assert explain_batch(full, [], [], train, 3) == []


def test_weights_are_cosines_of_user_sets() -> None:
    train = make_two_domain()
    m = sp.csr_matrix(train.user_items(None))
    u = 0
    h = m.indices[m.indptr[u]:m.indptr[u + 1]].astype(np.int64)
    (ev,) = explain_batch(m, [h], [h[:1]], train, 1)
    assert ev[0][0].weight == 1.0  # an item against itself


def test_model_signals_of_another_model_are_one_call_per_query() -> None:
    from crossrec.evidence import model_signals

    class Reasons:
        calls = 0

        def signals(self, query, domain, items, n):  # noqa: ANN001, ANN201
            Reasons.calls += 1
            return [[f"{domain}:{query}:{i}"] * n for i in items]

    got = model_signals(Reasons(), ["q0", "q1"], "d", [np.arange(2), np.arange(1)], 2)
    assert got == [[["d:q0:0"] * 2, ["d:q0:1"] * 2], [["d:q1:0"] * 2]]
    assert Reasons.calls == 2
