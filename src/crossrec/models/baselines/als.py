"""ALS: implicit-feedback matrix factorisation by alternating least squares.

Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets" (ICDM 2008).
Every (user, item) cell counts: preference ``p_ui = 1`` where the user interacted, else 0, with
confidence ``c_ui = 1 + alpha`` where ``p_ui = 1`` and 1 elsewhere. The loss is
``Σ_ui c_ui (p_ui - x_u·y_i)² + l2 (Σ_u |x_u|² + Σ_i |y_i|²)``. With the item factors fixed,
each user's factor solves ``(YᵀY + l2 I + alpha Y_uᵀY_u) x_u = (1 + alpha) Σ_{i∈u} y_i``, and the
other way round; an iteration updates every user, then every item.

The solve is the conjugate-gradient update of Takács, Pilászy & Tikk (RecSys 2011), the one the
``implicit`` library uses: ``cg_steps`` CG steps per row, warm-started from the row's previous
factor. Here it runs for *all* rows at once: a CG step is one sparse-dense sampled product
(``torch.sparse.sampled_addmm``: ``y_i·v_u`` for every interaction), one sparse-dense product
and one ``[n, d] @ [d, d]`` product, so an iteration has no Python loop over users or items.
Threads: torch's (``crossrec.threads``).

``implicit``'s confidence is ``alpha·r`` (40 for a binary interaction at ``alpha = 40``); here it
is Hu et al.'s ``1 + alpha·r``: ``implicit`` at ``alpha = a`` is this model at ``alpha = a - 1``.
"""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import BaselineConfig, FitOptions, Query, Recommender


class ALSConfig(BaselineConfig):
    """Implicit-feedback ALS hyper-parameters.

    Attributes:
        embedding_size: dimension of the user and item factors.
        iterations: alternating sweeps (each updates every user, then every item).
        l2: the ridge penalty λ on every factor. The data term grows with ``alpha`` (and the
            number of interactions), so a larger ``alpha`` wants a larger ``l2``.
        alpha: confidence of an observed interaction is ``1 + alpha`` (unobserved: 1).
        cg_steps: conjugate-gradient steps per row and sweep (warm-started).
        init_scale: factors start uniform in ``[0, init_scale)``.
    """

    embedding_size: int = Field(64, ge=1)
    iterations: int = Field(15, ge=1)
    l2: float = Field(100.0, ge=0.0)
    alpha: float = Field(10.0, ge=0.0)
    cg_steps: int = Field(3, ge=1)
    init_scale: float = Field(0.01, gt=0.0)


def _csr(matrix: sp.csr_matrix, values: np.ndarray | None = None) -> torch.Tensor:
    """A torch CSR tensor with ``matrix``'s structure (``values`` or its data), float32."""
    data = matrix.data if values is None else values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(data, dtype=np.float32)), matrix.shape,
            check_invariants=False)


def _with_values(pattern: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(pattern.crow_indices(), pattern.col_indices(), values,
                                       pattern.shape, check_invariants=False)


def cg_sweep(matrix: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float, alpha: float,
             cg_steps: int) -> None:
    """Update every row of ``x`` (in place) towards its least-squares solution given ``y``.

    Row ``u`` solves ``A_u x_u = b_u`` with ``A_u = yᵀy + l2 I + alpha y_uᵀ y_u`` and
    ``b_u = (1 + alpha) Σ_{i∈u} y_i``, where ``y_u`` are the rows of ``y`` that ``matrix``'s row
    ``u`` holds, by ``cg_steps`` conjugate-gradient steps from the current ``x_u`` — for all rows
    at once (rows converge independently: each has its own step sizes).

    Args:
        matrix: binary ``[n, m]`` torch CSR (float32).
        x: ``[n, d]`` factors to update.
        y: ``[m, d]`` fixed factors.
        l2: ridge penalty.
        alpha: extra confidence of an observed cell.
        cg_steps: CG steps.
    """
    gram = y.T @ y
    gram.diagonal().add_(l2)
    y_t = y.T  # a view: sampled_addmm reads columns of y_t, i.e. rows of y
    weights = alpha * matrix.values()

    ap = torch.empty_like(x)  # one [n, d] buffer for every A v (no large allocation a step)

    def apply(v: torch.Tensor) -> torch.Tensor:  # A v, row by row, into ap
        dots = torch.sparse.sampled_addmm(matrix, v, y_t, beta=0.0).values()  # v_u·y_i
        return torch.mm(_with_values(matrix, dots.mul_(weights)), y, out=ap).addmm_(v, gram)

    r = (matrix @ y).mul_(1.0 + alpha).sub_(apply(x))  # b - A x
    p = r.clone()
    rs = torch.linalg.vecdot(r, r)
    tiny = torch.tensor(1e-20, dtype=x.dtype)
    for _ in range(cg_steps):
        apply(p)
        pap = torch.linalg.vecdot(p, ap)
        step = torch.where((rs > tiny) & (pap > 0), rs / pap.clamp_min(tiny), 0.0)[:, None]
        x.addcmul_(step, p)
        r.addcmul_(step, ap, value=-1.0)
        rs_new = torch.linalg.vecdot(r, r)
        beta = torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), 0.0)[:, None]
        p.mul_(beta).add_(r)
        rs = rs_new


def fold_in(history: sp.csr_matrix, y: torch.Tensor, l2: float, alpha: float) -> torch.Tensor:
    """Exact least-squares user factors for ``history`` ``[B, m]`` given item factors ``y``
    (what a sweep converges to for a user with that history): one ``[d, d]`` solve per row.

    Returns:
        ``[B, d]`` float32; a row without history is 0.
    """
    d = y.shape[1]
    coo = history.tocoo()
    rows = torch.from_numpy(coo.row.astype(np.int64))
    yi = y[torch.from_numpy(coo.col.astype(np.int64))].double()  # [nnz, d]
    a = (y.T @ y).double() + l2 * torch.eye(d, dtype=torch.float64)
    a = a.expand(history.shape[0], d, d).clone()
    a.index_add_(0, rows, alpha * yi[:, :, None] * yi[:, None, :])
    b = torch.zeros(history.shape[0], d, dtype=torch.float64)
    b.index_add_(0, rows, (1.0 + alpha) * yi)
    return torch.linalg.solve(a, b).float()


class ALS(Recommender):
    """Implicit-feedback ALS over the target catalogue or all domains merged (``train_on``).

    Every user has a factor: with ``train_on="all"`` a user's source interactions set it, so it
    scores target items (transfer); with ``"target"`` a user without target history solves to
    (nearly) 0 and gets (nearly) equal scores. A ``Query.history`` is folded in exactly
    (``fold_in``): the factor a sweep would give that history with the item factors fixed.
    """

    Config = ALSConfig
    name = "als"
    config: ALSConfig

    def __init__(self, config: ALSConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.user_factors: torch.Tensor | None = None  # float32 [n_users, d]
        self.item_factors: torch.Tensor | None = None  # float32 [n_catalogue, d]

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        self.train_data, self.options = train, options
        c = self.config
        catalogue = self.config.catalogue(train, options.target)
        matrix = train.user_items(None)[:, catalogue].tocsr().astype(np.float32)
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        matrix.sort_indices()
        by_item = matrix.T.tocsr()
        by_item.sort_indices()
        rng = np.random.default_rng(options.seed)
        n, m = matrix.shape
        x = torch.from_numpy(rng.random((n, c.embedding_size), dtype=np.float32) * c.init_scale)
        y = torch.from_numpy(rng.random((m, c.embedding_size), dtype=np.float32) * c.init_scale)
        users, items = _csr(matrix), _csr(by_item)
        for _ in range(c.iterations):
            cg_sweep(users, x, y, c.l2, c.alpha, c.cg_steps)
            cg_sweep(items, y, x, c.l2, c.alpha, c.cg_steps)
        self.user_factors, self.item_factors = x, y
        return self

    def _fitted(self) -> MultiDomainDataset:
        train = self._check_fitted()
        if self.item_factors is None:
            raise RuntimeError("ALS is not fitted; call fit() first")
        return train

    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]`` user factors, or the exact fold-in of ``query.history``."""
        train = self._fitted()
        if query.history is None:
            users = query.users.detach().cpu().to(torch.long)
            if len(users) and (users.min() < 0 or users.max() >= train.n_users):
                raise DataError(
                    f"user index out of range [0, {train.n_users}) and no history given; "
                    "an anonymous user needs Query.history"
                )
            return self.user_factors[users]
        catalogue = self.config.catalogue(train, self.options.target)
        history = self.history_matrix(query, catalogue)
        return fold_in(history, self.item_factors, self.config.l2, self.config.alpha)

    def _items(self, domain: str) -> torch.Tensor:
        train = self._fitted()
        items = self.config.check_domain(train, domain, self.options.target)
        start = items.start - self.config.catalogue(train, self.options.target).start
        return self.item_factors[start : start + items.stop - items.start]

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products of user and item factors.

        Returns:
            ``[B, n_items(domain)]`` float32.
        """
        items = self._items(domain)
        return self.user_vectors(query) @ items.T

    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d]`` item factors (the two-tower view of ``score``)."""
        return self._items(domain).clone()

    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d]`` user factors (see ``user_vectors``)."""
        self._items(domain)  # DataError for a domain the model cannot score
        return self.user_vectors(query)

    def state(self) -> dict[str, np.ndarray]:
        self._fitted()
        return {"user_factors": self.user_factors.numpy(),
                "item_factors": self.item_factors.numpy()}

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        self.train_data, self.options = train, options
        self.user_factors = torch.from_numpy(np.array(state["user_factors"], dtype=np.float32))
        self.item_factors = torch.from_numpy(np.array(state["item_factors"], dtype=np.float32))
        return self
