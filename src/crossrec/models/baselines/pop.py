"""Pop: every user gets the items of the domain ranked by training interaction count."""

from __future__ import annotations

from typing import Self

import numpy as np
import torch

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import BaselineConfig, FitOptions, Query, Recommender


class PopConfig(BaselineConfig):
    """Popularity has no hyper-parameters; ``train_on`` is accepted and has no effect (the
    counts of a domain are the same whether the other domains are merged in or not)."""


class Pop(Recommender):
    """Item popularity: the number of training interactions of each item.

    Example:
        >>> model = Pop().fit(train, FitOptions(target="movies"))  # doctest: +SKIP
        >>> model.score(Query(torch.tensor([0, 1])), "movies").shape  # doctest: +SKIP
        torch.Size([2, n_movies])
    """

    deterministic = True

    Config = PopConfig
    name = "pop"

    def __init__(self, config: PopConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.popularity: np.ndarray | None = None  # float32[n_items], global item order

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        self.train_data, self.options = train, options
        self.popularity = train.item_popularity(None).astype(np.float32)
        return self

    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Same scores for every user (``query.history`` is ignored).

        Returns:
            ``[B, n_items(domain)]`` float32 interaction counts.
        """
        train = self._check_fitted()
        items = train.domain_items(domain)
        row = torch.from_numpy(self.popularity[items])
        return row.unsqueeze(0).repeat(len(query.users), 1)

    def state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        self.train_data, self.options = train, options
        self.popularity = np.asarray(state["popularity"], dtype=np.float32)
        return self
