"""The contract's own Recall@k helper, on hand-made scores."""

import numpy as np
import pandas as pd
import torch

from crossrec.data import DatasetBuilder
from crossrec.data.split import Split
from crossrec.models.base import FitOptions, Query, Recommender
from crossrec.testing.contract import recall_at_k


class Fixed(Recommender):
    """Scores items by a fixed vector (item 0 best)."""

    def fit(self, train, options):
        self.train_data, self.options = train, options
        return self

    def score(self, query: Query, domain: str) -> torch.Tensor:
        n = self._check_fitted().info.n_domain_items(domain)
        return torch.arange(n, 0, -1, dtype=torch.float32).expand(len(query.users), -1)


def test_recall_masks_training_items() -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["0", "1", "2", "3"]})
    data = DatasetBuilder("t").add_interactions(frame, domain="d").build()
    inter = data.interactions
    train = data.with_interactions(inter.iloc[[0]])  # a saw item 0
    truth = inter.iloc[[1, 2, 3]][["user", "item", "domain", "rating", "timestamp"]]
    split = Split(train, truth.iloc[:0], truth.reset_index(drop=True), "d", "hand")
    model = Fixed().fit(train, FitOptions(target="d"))
    # a: item 0 masked, top-1 = item 1 (a hit); b: top-1 = item 0 (miss of {2, 3})
    assert np.isclose(recall_at_k(model, split, k=1), (1.0 + 0.0) / 2)
    # b with k=3: top-3 = {0, 1, 2} -> 1 of 2
    assert np.isclose(recall_at_k(model, split, k=3), (1.0 + 0.5) / 2)
