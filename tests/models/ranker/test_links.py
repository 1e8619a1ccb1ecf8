"""links: the item-to-item weights of EASE and ItemKNN add up to their scores; the group."""

import numpy as np
import pytest
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.ease import EASE
from crossrec.models.baselines.itemknn import ItemKNN
from crossrec.models.ranker.links import KINDS, link_features
from crossrec.testing.contract import SOURCE, TARGET
from crossrec.testing.synthetic import make_two_domain


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)


def _options() -> FitOptions:
    return FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)


@pytest.mark.parametrize("model", [EASE({"train_on": "all", "l2": 50.0}),
                                   ItemKNN({"train_on": "all"})], ids=["ease", "itemknn"])
def test_links_sum_to_the_score(split, model) -> None:
    model.fit(split.train, _options())
    full = split.train.user_items(None)
    n = split.train.domain_items(TARGET).stop - split.train.domain_items(TARGET).start
    for user in range(5):
        history = full.indices[full.indptr[user]:full.indptr[user + 1]].astype(np.int64)
        links = model.item_links(history, TARGET, np.arange(n))
        score = model.score(Query(torch.tensor([user])), TARGET)[0].numpy()
        np.testing.assert_allclose(links.sum(0), score, rtol=1e-4, atol=1e-5)


def test_link_features_by_hand() -> None:
    class Fixed:
        def item_links(self, history, domain, items):  # [L, C]: row h, column c -> h + c / 10
            return (history[:, None] + items[None, :] / 10.0).astype(np.float32) - 2.0

    hist = np.array([[-1, 1, 3], [-1, -1, -1]])
    items = np.array([0, 5, 2])
    starts = np.array([0, 2, 3])
    cols = link_features([Fixed()], "d", items, starts, hist, decay=0.5)
    assert len(cols) == len(KINDS)
    link_max, count, last, recent = cols
    # user 0: history items 1 then 3; candidates 0 and 5 -> links [[-1, -.5], [1, 1.5]]
    np.testing.assert_allclose(link_max[:2], [1.0, 1.5])
    np.testing.assert_allclose(count[:2], [1, 1])
    np.testing.assert_allclose(last[:2], [1.0, 1.5])
    np.testing.assert_allclose(recent[:2], [(0.5 * -1 + 1) / 1.5, (0.5 * -0.5 + 1.5) / 1.5])
    assert all(np.isnan(c[2]) for c in cols)  # no history


def test_group_fits_scores_explains_and_survives_restore(group_fit) -> None:
    from crossrec.models.ranker.explain import _reason
    from crossrec.models.ranker.features import DEFAULT_GROUPS

    assert "links" not in DEFAULT_GROUPS  # opt-in
    fit = group_fit(["sources", "popularity", "links"])
    knn = fit.model.source_names[0]
    assert [n for n in fit.names if "link" in n] == [f"{knn}:{k}" for k in KINDS]  # pop: none
    assert np.isfinite(fit.column(f"{knn}:link_max")).any()
    fit.assert_restore_scores_the_same()
    s = fit.split.train.domain_items(TARGET)
    full = fit.split.train.user_items(None)
    history = full.indices[full.indptr[0]:full.indptr[1]].astype(np.int64)
    assert _reason(fit.model, f"{knn}:link_max", s.start, history).startswith("bought with")
