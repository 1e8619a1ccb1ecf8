"""The model interfaces: Recommender (fit/score), TorchRecommender (loss + stages), Query, Stage.

Every model scores *all* items of one domain for a batch of users; evaluation and serving call
``score`` and nothing else. Learned state goes through ``state`` / ``restore`` as plain named
arrays, so a bundle can be written with safetensors (never pickle).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crossrec.errors import DataError

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset


class ModelConfig(BaseModel):
    """Base of every model's config: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BaselineConfig(ModelConfig):
    """Config shared by baselines that can learn from the target alone or all domains merged."""

    train_on: Literal["target", "all"] = "target"

    def catalogue(self, train: MultiDomainDataset, target: str) -> slice:
        """Global items the model learns from: the target's items, or every item ("all")."""
        if self.train_on == "target":
            return train.domain_items(target)
        return slice(0, train.n_items)

    def check_domain(self, train: MultiDomainDataset, domain: str, target: str) -> slice:
        """The global items of ``domain``; a DataError if the model never learned that domain."""
        items = train.domain_items(domain)  # DataError for an unknown domain
        if self.train_on == "target" and domain != target:
            raise DataError(
                f"this model was fitted with train_on='target' on domain {target!r}; it cannot "
                f"score domain {domain!r} (fit with train_on='all' to score every domain)"
            )
        return items


class FactorConfig(ModelConfig):
    """Fields shared by the factorisation models (BPR-MF and the MF-based transfer models).

    Attributes:
        embedding_size: dimension of the user and item factors.
        n_negatives: sampled negatives per positive (ranking objectives).
        weight_decay: L2 penalty on the embeddings of each batch.
        init_std: standard deviation of the normal initialisation.
        batch_size: interactions per training batch.
        patience: epochs without validation improvement before early stopping.
    """

    embedding_size: int = Field(64, ge=1)
    n_negatives: int = Field(1, ge=1)
    weight_decay: float = Field(1e-3, ge=0.0)
    init_std: float = Field(0.1, gt=0.0)
    batch_size: int = Field(4096, ge=1)
    patience: int = Field(5, ge=1)


@dataclass
class Query:
    """What evaluation and serving pass to ``score``.

    Attributes:
        users: ``[B]`` user indices (int64); -1 for an anonymous user (then ``history`` is
            required by models that need a history).
        history: optional ``[B, L]`` global item indices across domains, -1 = padding; when
            given it replaces the users' training history (anonymous / live requests).
    """

    users: torch.Tensor
    history: torch.Tensor | None = None


@dataclass
class FitOptions:
    """How to fit: roles of the domains, seed, device, validation hook, logging."""

    target: str
    sources: tuple[str, ...] = ()
    seed: int = 0
    device: str = "cpu"
    validate: Callable[[Recommender], float] | None = None  # higher is better (e.g. NDCG@10)
    progress: bool = True
    run_dir: Path | None = None
    resume: bool = False  # continue from run_dir's last end-of-epoch checkpoint, if any


@dataclass
class Stage:
    """One phase of training (e.g. pre-train on sources, then fine-tune on the target).

    ``name`` is passed to ``TorchRecommender.loss``; ``domains`` limits the batches to those
    domains (empty = all); ``trainable`` lists parameter-name prefixes to train (empty = all);
    ``validate=False`` skips ``FitOptions.validate`` (and early stopping) in this stage, for
    stages whose validation value means nothing yet (e.g. pre-training before a mapping).
    ``rows`` maps a parameter name (``"source_item.weight"``) to the slice of its first
    dimension that can get a gradient in the stage (e.g. the stage's item range): Adam then
    updates those rows only, which is what it would do to the whole table when the other rows'
    gradients are zero (the Trainer checks the first batch) and ``weight_decay`` is 0 (with
    a weight decay ``rows`` is ignored).
    """

    name: str
    epochs: int = 20
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 1024
    domains: tuple[str, ...] = ()
    trainable: tuple[str, ...] = ()
    patience: int = 5  # epochs without validation improvement before stopping
    validate: bool = True  # False: no validation (e.g. pre-training stages); last weights kept
    extra: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, slice] = field(default_factory=dict)  # parameter name -> rows that train


class Recommender(ABC):
    """A model that, once fitted, scores every item of a domain for a batch of users."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    name: ClassVar[str] = "recommender"
    #: True when fitting draws nothing at random: the same data give the same model whatever
    #: the seed (benchmarks then fit once per split instead of once per seed).
    deterministic: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | dict | None = None, **overrides: Any) -> None:
        data = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        self.config = self.Config(**{**data, **overrides})
        self.train_data: MultiDomainDataset | None = None
        self.options: FitOptions | None = None

    @abstractmethod
    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        """Learn from the training interactions (never from valid/test truth)."""

    def fit_subset(self, train: MultiDomainDataset, options: FitOptions) -> Self | None:
        """This model's fit on ``train``, whose rows are a subset of this model's training
        rows, derived from this fit when that is cheaper than a fresh one (EASE); None (the
        default) = the caller fits afresh."""
        return None

    @abstractmethod
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, n_items(domain)]`` float32 scores, higher is better. No masking of seen items."""

    def retrieval_vectors(self, query: Query,
                          domain: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The two-tower view of a factorised model; None when ``score`` is no dot product.

        ``users @ items.T`` equals ``score(query, domain)`` up to float rounding: item biases,
        per-domain offsets and popularity priors are extra item columns that meet a constant
        column on the user side. Serving searches ``items`` with an index
        (``crossrec.serving.retrieval``). Models implement the two halves,
        ``retrieval_items`` and ``retrieval_users``.

        Returns:
            ``users [B, d']`` and ``items [n_items(domain), d']`` float32, or None.
        """
        items = self.retrieval_items(domain)
        if items is None:
            return None
        return self.retrieval_users(query, domain), items

    def retrieval_items(self, domain: str) -> torch.Tensor | None:
        """``[n_items(domain), d']`` item side of the two-tower view; None: not factorised."""
        return None

    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d']`` user side of the two-tower view (models with ``retrieval_items``)."""
        raise NotImplementedError(f"{type(self).__name__} has no two-tower view")

    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays by name (for the bundle). Models with nothing learned return {}."""
        return {}

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        """Rebuild a fitted model from ``state`` without training (inverse of ``state``)."""
        self.train_data, self.options = train, options
        return self

    def _check_fitted(self) -> MultiDomainDataset:
        if self.train_data is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        return self.train_data

    def history_matrix(self, query: Query, items: slice | None = None) -> sp.csr_matrix:
        """Binary history of the query's users over the global items ``items``.

        The history is ``query.history`` when given (it replaces the training history), else
        each user's interactions in ``self.train_data``. Items outside ``items`` are dropped.

        Args:
            query: the users (``[B]``) and optional history (``[B, L]``, -1 = padding).
            items: a slice of global item indices (default: all items).

        Returns:
            ``float32`` CSR matrix ``[B, items.stop - items.start]`` of 0/1, columns local to
            ``items``.
        """
        train = self._check_fitted()
        items = items if items is not None else slice(0, train.n_items)
        n_cols = items.stop - items.start
        if query.history is None:
            users = query.users.detach().cpu().numpy().astype(np.int64).reshape(-1)
            if len(users) and (users.min() < 0 or users.max() >= train.n_users):
                raise DataError(
                    f"user index out of range [0, {train.n_users}) and no history given; "
                    "an anonymous user needs Query.history"
                )
            full = train.user_items(None)
            hist = full[users][:, items]
            hist.data[:] = 1.0
            return hist.astype(np.float32)
        h = query.history.detach().cpu().numpy().astype(np.int64)
        if h.ndim != 2:
            raise DataError(f"Query.history must be [B, L], got shape {tuple(h.shape)}")
        if h.size and h.max() >= train.n_items:
            raise DataError(f"Query.history has item index {int(h.max())} >= {train.n_items}")
        rows, cols = np.nonzero((h >= items.start) & (h < items.stop))
        data = np.ones(len(rows), dtype=np.float32)
        hist = sp.csr_matrix(
            (data, (rows, h[rows, cols] - items.start)), shape=(h.shape[0], n_cols)
        )
        hist.sum_duplicates()
        hist.data[:] = 1.0
        return hist


def choose_on_validation(values: Sequence[float], apply: Callable[[float], None],
                         model: Recommender, validate: Callable[[Recommender], float] | None,
                         ) -> tuple[float, dict[str, float]]:
    """Grid search of one scalar set after training (a prior weight, a shrinkage).

    Applies each of ``values`` in turn and scores ``model`` with ``validate`` (higher is
    better, ``FitOptions.validate``); the best is applied and returned, a tie going to the
    value listed first (list the simplest first). With one value or no ``validate`` the first
    value is applied unscored. Returns ``(chosen, {str(float(value)): validation score})``.
    """
    curve: dict[str, float] = {}
    best, chosen = -np.inf, float(values[0])
    if len(values) > 1 and validate is not None:
        with torch.no_grad():
            for v in values:
                apply(float(v))
                score = curve[str(float(v))] = float(validate(model))
                if score > best:
                    best, chosen = score, float(v)
    apply(chosen)
    return chosen, curve


def with_column(x: torch.Tensor, column: torch.Tensor | float) -> torch.Tensor:
    """``[n, d]`` -> ``[n, d + 1]``: ``x`` with ``column`` (``[n]`` or a scalar) appended, the
    extra dimension of a two-tower view that carries a bias (or its constant 1)."""
    col = torch.as_tensor(column, dtype=x.dtype, device=x.device).reshape(-1, 1)
    return torch.cat([x, col.expand(len(x), 1)], dim=1)


class TorchRecommender(nn.Module, Recommender):
    """A PyTorch model: it owns its parameters, batches and loss; ``Trainer`` owns the loop.

    Subclasses implement ``build`` (create parameters for the id spaces of ``train``),
    ``batches`` (yield training batches for a stage), ``loss`` and ``score``; optionally
    ``default_stages``.
    """

    def __init__(self, config: ModelConfig | dict | None = None, **overrides: Any) -> None:
        nn.Module.__init__(self)
        Recommender.__init__(self, config, **overrides)

    @abstractmethod
    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        """Create the parameters for the id spaces of ``train`` (called by fit and restore)."""

    @abstractmethod
    def batches(
        self, train: MultiDomainDataset, stage: Stage, rng: np.random.Generator
    ) -> Iterator[Any]:
        """Yield the training batches of one epoch of ``stage``."""

    @abstractmethod
    def loss(self, batch: Any, stage: str) -> torch.Tensor:
        """Scalar training loss of one batch (the model owns its objective)."""

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        """Training plan; the default is one stage on every domain."""
        return [Stage("train")]

    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        from crossrec.training.trainer import Trainer

        torch.manual_seed(options.seed)
        self.train_data, self.options = train, options
        self.build(train, options)
        self.to(options.device)
        stages = self.default_stages(options.sources, options.target)
        self.training_summary = Trainer(options).fit(self, train, stages)  # epochs, best valid
        self.eval()
        return self

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    def restore(
        self, train: MultiDomainDataset, options: FitOptions, state: dict[str, np.ndarray]
    ) -> Self:
        self.train_data, self.options = train, options
        self.build(train, options)
        self.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        self.to(options.device)
        self.eval()
        return self
