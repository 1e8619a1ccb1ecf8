"""UserKNN: the contract for both catalogues, and the scores against a dense numpy reference."""

import numpy as np
import torch

from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.baselines.userknn import UserKNN
from crossrec.testing.contract import RecommenderContract
from crossrec.testing.synthetic import make_two_domain


class TestUserKNNTarget(RecommenderContract):
    model_cls = UserKNN
    fast_config = {"train_on": "target"}
    scores_every_domain = False


class TestUserKNNAll(RecommenderContract):
    model_cls = UserKNN
    fast_config = {"train_on": "all", "neighbors": 30}
    transfers = True


def test_matches_dense_reference() -> None:
    data = make_two_domain(n_users=80, n_overlap=60)
    split = cold_start_users(data, "source", "target", 0.3, seed=0)
    train = split.train
    model = UserKNN(train_on="all", neighbors=5, shrink=2.0).fit(
        train, FitOptions(target="target", sources=("source",), progress=False))
    x = train.user_items(None).toarray() > 0
    users = np.arange(12)
    got = model.score(Query(torch.from_numpy(users)), "target").numpy()
    norms = np.sqrt(x.sum(1))
    t = x[:, train.domain_items("target")].astype(np.float64)
    for r, u in enumerate(users):
        sim = (x[u].astype(float) @ x.T.astype(float)) / (norms[u] * norms + 2.0 + 1e-12)
        sim[u] = 0.0
        top = np.argsort(-sim, kind="stable")[:5]
        expected = sim[top] @ t[top]
        np.testing.assert_allclose(got[r], expected, rtol=1e-5, atol=1e-6)
