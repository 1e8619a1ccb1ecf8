"""Text→collaborative mapping (CB2CF / DropoutNet / Heater style) for items without interactions.

Collaborative item factors come from a truncated SVD of the binary user × item matrix of every
domain (PureSVD, Cremonesi et al. 2010): ``X ≈ U S Vᵀ``; a user's factor is their history
folded in, ``h V`` (``[k]``), and an item scores ``h V vᵢ``. Users shared by the domains tie
the domains' items into one space. A ridge regression learned on *warm* items (those with
training interactions) maps an item's text vector (any crossrec encoder) to its factor
``vᵢ``; an item with no interaction — a cold-start item, or every item of a brand-new domain —
gets the mapped factor, so it receives a collaborative score from its text alone.

``cold_scale`` (chosen on validation users from ``cold_scale_grid``) multiplies the mapped
factors of cold items: ridge shrinks them towards zero, which would rank every cold item below
every warm one whatever its fit.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import FitOptions, Query, Recommender, choose_on_validation
from crossrec.models.text import TextConfig


def ridge(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Closed-form ridge regression with an intercept column.

    Args:
        x: ``[n, d]`` inputs.
        y: ``[n, k]`` targets.
        l2: penalty on the weights (not the intercept).

    Returns:
        ``float32 [d + 1, k]``: predict with ``[x, 1] @ w``.
    """
    x1 = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    gram = x1.T @ x1
    reg = np.full(x1.shape[1], l2)
    reg[-1] = 1e-6
    gram[np.diag_indices_from(gram)] += reg
    return np.linalg.solve(gram, x1.T @ y.astype(np.float64)).astype(np.float32)


def apply_ridge(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[n, d] -> [n, k]``: ``[x, 1] @ w``."""
    return (x @ w[:-1] + w[-1]).astype(np.float32)


def cf_item_factors(train: MultiDomainDataset, k: int, seed: int = 0) -> np.ndarray:
    """``float32 [n_items, k']`` PureSVD item factors ``V`` of every domain (``k' <= k``);
    rows of items without interactions are zero."""
    from scipy.sparse.linalg import svds

    x = train.user_items(None).astype(np.float32)
    x.data[:] = 1.0
    k = max(1, min(k, min(x.shape) - 1))
    v0 = np.random.default_rng(seed).standard_normal(min(x.shape)).astype(np.float32)
    _, _, vt = svds(x, k=k, v0=v0)
    return np.ascontiguousarray(vt.T[:, ::-1]).astype(np.float32)


class Text2CFConfig(TextConfig):
    """Text→CF settings.

    Attributes:
        factors: SVD rank ``k``.
        l2: ridge penalty of the text→factor map.
        min_count: items with at least this many training interactions train the map.
        cold_scale: factor on cold items' mapped vectors; None = chosen on validation.
        cold_scale_grid: the values tried.
        mapped_only: score every item through its mapped factor (pure content path).
    """

    factors: int = Field(64, ge=1)
    l2: float = Field(10.0, gt=0.0)
    min_count: int = Field(1, ge=1)
    cold_scale: float | None = Field(None, ge=0.0)
    cold_scale_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    mapped_only: bool = False


class Text2CF(Recommender):
    """PureSVD over every domain, with text-mapped factors for items that have no interaction.

    State: ``factors`` (``float32 [n_items, k]``, the scoring table: true factors for warm
    items, ``cold_scale`` × mapped ones for cold items), ``mapped`` (``[n_items, k]``), ``warm``
    (``bool [n_items]``), ``text_map`` (``[dim + 1, k]``) and ``cold_scale`` (``[1]``).
    """

    Config = Text2CFConfig
    name = "text2cf"
    deterministic = True
    config: Text2CFConfig

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        self.train_data, self.options = train, options
        c = self.config
        vectors = c.item_vectors(train, progress=options.progress, target=options.target)
        factors = cf_item_factors(train, c.factors, options.seed)
        counts = np.bincount(train.interactions["item"].to_numpy(np.int64),
                             minlength=train.n_items)
        fit_rows = counts >= c.min_count
        self.text_map = ridge(vectors[fit_rows], factors[fit_rows], c.l2)
        self.mapped = apply_ridge(vectors, self.text_map)
        self.true = factors
        self.warm = counts > 0
        grid = (c.cold_scale,) if c.cold_scale is not None else c.cold_scale_grid
        self.scale, self.curve = choose_on_validation(grid, self._apply, self, options.validate)
        return self

    def _apply(self, scale: float) -> None:
        self.scale = scale
        table = self.mapped * scale if self.config.mapped_only else np.where(
            self.warm[:, None], self.true, self.mapped * scale)
        self.table = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))

    def user_factors(self, query: Query) -> torch.Tensor:
        """``[B, k]`` folded-in users: their binary history (every domain) times ``V``."""
        hist: sp.csr_matrix = self.history_matrix(query)
        return torch.from_numpy(np.asarray(hist @ self.true, dtype=np.float32))

    def score(self, query: Query, domain: str) -> torch.Tensor:
        train = self._check_fitted()
        items = train.domain_items(domain)
        return self.user_factors(query) @ self.table[items].T

    def retrieval_items(self, domain: str) -> torch.Tensor | None:
        self._check_fitted()
        return self.table[self.train_data.domain_items(domain)].clone()

    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        return self.user_factors(query)

    def state(self) -> dict[str, np.ndarray]:
        return {"true": self.true, "mapped": self.mapped, "warm": self.warm,
                "text_map": self.text_map, "cold_scale": np.array([self.scale], np.float32)}

    def restore(self, train: MultiDomainDataset, options: FitOptions,
                state: dict[str, np.ndarray]) -> Self:
        self.train_data, self.options = train, options
        self.true, self.mapped = np.asarray(state["true"]), np.asarray(state["mapped"])
        self.warm, self.text_map = np.asarray(state["warm"]), np.asarray(state["text_map"])
        self._apply(float(state["cold_scale"][0]))
        return self
