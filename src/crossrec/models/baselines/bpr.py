"""BPR-MF: matrix factorisation trained with the Bayesian personalised ranking loss.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI 2009). Each
training interaction (u, i) is paired with ``n_negatives`` items j drawn uniformly from the
same domain as i (or, ``negatives="catalogue"``, from every item the model learns), not in u's
training history; the loss is
``-log σ(e_u·e_i - e_u·e_j) + weight_decay * (|e_u|² + |e_i|² + |e_j|²)``. With ``item_bias`` a
learned per-item bias joins each score (``e_u·e_i + b_i``, L2 on the batch's biases too), as in
MyMediaLite's BPR-MF and Cornac. ``optimizer`` picks Adam through the Trainer (the default) or
plain SGD with hand-written gradients (Cornac's update, a batch at a time).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from typing import Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError
from crossrec.models.base import (
    BaselineConfig,
    FactorConfig,
    FitOptions,
    Query,
    Stage,
    TorchRecommender,
    with_column,
)
from crossrec.models.factor import FactorBatch, factor_batches
from crossrec.models.sampling import NEGATIVE_RETRIES, NegativeSampler, _in_sorted


class BPRConfig(BaselineConfig, FactorConfig):
    """BPR-MF hyper-parameters.

    Attributes:
        embedding_size: dimension of user and item embeddings.
        n_negatives: negatives sampled per positive.
        weight_decay: L2 penalty on the embeddings of each batch.
        init_std: standard deviation of the normal initialisation.
        learning_rate, epochs, batch_size, patience: the training stage (see ``optimizer``).
        sparse_updates: row-sparse embedding gradients and lazy Adam (``torch.optim.SparseAdam``):
            a step reads and writes only the batch's rows, so an epoch costs O(interactions)
            instead of O(steps x table rows). Not the same optimiser as Adam (the moments of
            rows absent from a batch are not decayed), so results differ a little; use it for
            large user and item tables (see the scale benchmark).
        item_bias: learn a bias per item (a popularity term the dot product need not carry).
        negatives: ``"domain"``: from the positive's domain; ``"catalogue"``: uniform over every
            item the model learns (``train_on``), as Rendle's BPR, Cornac and RecBole draw them.
        optimizer: ``"adam"``: the Trainer's loop (autograd, Adam over the whole tables each
            step, checkpoints and resume). ``"sgd"``: plain SGD on the same loss with
            hand-written gradients, each step touching only the batch's rows (O(batch) per
            step, no autograd): ``learning_rate`` is then the step of each pair's gradient
            (Rendle's and Cornac's update, applied to ``batch_size`` pairs at once), early
            stopping on validation as with Adam, no run-directory checkpoints.
    """

    learning_rate: float = Field(5e-3, gt=0.0)
    item_bias: bool = False
    negatives: Literal["domain", "catalogue"] = "domain"
    optimizer: Literal["adam", "sgd"] = "adam"
    sparse_updates: bool = False
    epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)


class CatalogueSampler(NegativeSampler):
    """Uniform negatives over one item range (the model's catalogue), avoiding training
    positives (resampled up to ``NEGATIVE_RETRIES`` times, as ``NegativeSampler``)."""

    def __init__(self, items: slice) -> None:
        super().__init__()
        self.items = items

    def sample(
        self, train: MultiDomainDataset, users: np.ndarray, items: np.ndarray,
        n_negatives: int, rng: np.random.Generator,
    ) -> np.ndarray:
        start, size = self.items.start, self.items.stop - self.items.start
        neg = start + (rng.random((len(users), n_negatives)) * size).astype(np.int64)
        base = users.astype(np.int64)[:, None] * train.n_items
        keys = self.keys(train)
        for _ in range(NEGATIVE_RETRIES):
            clash = _in_sorted(keys, base + neg)
            if not clash.any():
                break
            neg[clash] = start + (rng.random(int(clash.sum())) * size).astype(np.int64)
        return neg

    def __getstate__(self) -> dict:
        return {"items": self.items}  # the key cache is rebuilt on first use

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["items"])


class BPR(TorchRecommender):
    """BPR matrix factorisation over the target domain or all domains merged (``train_on``).

    Embeddings exist for every user and item; with ``train_on="target"`` only the target's
    interactions train them, so users without target history keep their random
    initialisation (cold-start users get no signal: that is the honest baseline). With
    ``train_on="all"`` a user's source interactions shape the same embedding that scores
    target items. A ``query.history`` is folded in as the mean of its items' embeddings.
    """

    Config = BPRConfig
    name = "bpr"
    config: BPRConfig

    def __init__(self, config: BPRConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.sampler = NegativeSampler()

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        d = self.config.embedding_size
        sparse = self.config.sparse_updates
        self.user_embedding = nn.Embedding(train.n_users, d, sparse=sparse)
        self.item_embedding = nn.Embedding(train.n_items, d, sparse=sparse)
        nn.init.normal_(self.user_embedding.weight, std=self.config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=self.config.init_std)
        self.item_bias = nn.Embedding(train.n_items, 1, sparse=sparse) if self.config.item_bias \
            else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)

    def default_stages(self, sources: Sequence[str], target: str) -> list[Stage]:
        c = self.config
        return [
            Stage(
                "train",
                epochs=c.epochs,
                learning_rate=c.learning_rate,
                batch_size=c.batch_size,
                domains=(target,) if c.train_on == "target" else (),
                patience=c.patience,
            )
        ]

    # ------------------------------------------------------------------ training
    def fit(self, train: MultiDomainDataset, options: FitOptions) -> Self:
        """The Trainer's loop (``optimizer="adam"``) or the SGD loop below (``"sgd"``)."""
        if self.config.optimizer == "adam":
            return super().fit(train, options)
        from crossrec.training.trainer import StageSummary, TrainSummary

        torch.manual_seed(options.seed)
        self.train_data, self.options = train, options
        self.build(train, options)
        self.to(options.device)
        self.eval()
        (stage,) = self.default_stages(options.sources, options.target)
        rng = np.random.default_rng(options.seed)
        inter = train.interactions
        if stage.domains:
            wanted = [train.info.domain_index(d) for d in stage.domains]
            inter = inter[np.isin(inter["domain"].to_numpy(), wanted)]
        users, items = inter["user"].to_numpy(np.int64), inter["item"].to_numpy(np.int64)
        if self.config.negatives == "catalogue":
            self.sampler = CatalogueSampler(self.config.catalogue(train, options.target))
        start = time.perf_counter()
        best, best_epoch, best_state, waited, loss, epoch = -np.inf, 0, None, 0, np.nan, 0
        for epoch in range(1, stage.epochs + 1):
            # the epoch's pairs and negatives drawn at once (one sampler call, not one a batch)
            order = rng.permutation(len(users))
            u, i = users[order], items[order]
            negs = self.sampler.sample(train, u, i, self.config.n_negatives, rng)
            u, i, negs = (torch.from_numpy(a).to(options.device) for a in (u, i, negs))
            total, n = 0.0, 0
            for at in range(0, len(order), stage.batch_size):
                batch = slice(at, at + stage.batch_size)
                total += self.sgd_step(u[batch], i[batch], negs[batch], stage.learning_rate)
                n += 1
            loss = total / max(n, 1)
            if not np.isfinite(loss):
                raise FloatingPointError(f"bpr sgd epoch {epoch}: loss is {loss}; lower the "
                                         f"learning rate ({stage.learning_rate})")
            if options.validate is None:
                continue
            value = float(options.validate(self))
            if value > best:
                best, best_epoch, waited = value, epoch, 0
                best_state = copy.deepcopy(self.state_dict())
            else:
                waited += 1
                if waited >= stage.patience:
                    break
        if best_state is not None:
            self.load_state_dict(best_state)
        self.training_summary = TrainSummary([StageSummary(
            stage.name, epoch, best_epoch or epoch, None if best_state is None else best,
            epoch < stage.epochs, float(loss), time.perf_counter() - start)])
        return self

    @torch.no_grad()
    def sgd_step(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                 learning_rate: float) -> float:
        """One SGD step on the pairs ``users [b]``, ``pos [b]``, ``neg [b, k]``: each pair's
        gradient of the loss of ``loss`` (the batch's sum, not its mean), scattered into the
        rows it touches. Returns the mean ranking loss."""
        wd, k = self.config.weight_decay, neg.shape[1]
        lr, wd2 = learning_rate, 2 * self.config.weight_decay
        uw, iw = self.user_embedding.weight, self.item_embedding.weight
        bw = self.item_bias.weight[:, 0] if self.item_bias is not None else None
        flat = neg.reshape(-1)
        u, p = uw.index_select(0, users), iw.index_select(0, pos)  # [b, d]
        n = iw.index_select(0, flat).view(len(neg), k, -1)  # [b, k, d]
        if k == 1:  # the common case in as few passes over [b, d] as it takes
            diff = p - n[:, 0]
            x = (u * diff).sum(1, keepdim=True)  # [b, 1]
        else:
            x = (u * p).sum(1, keepdim=True) - torch.einsum("bd,bkd->bk", u, n)  # [b, k]
        if bw is not None:
            bp, bn = bw.index_select(0, pos), bw.index_select(0, flat).view(len(neg), k)
            x += bp[:, None] - bn
        z = torch.sigmoid(-x).div_(k)  # [b, k]: -d loss / d x of each pair, mean over negatives
        zs = z.sum(1, keepdim=True)  # [b, 1]
        loss = float(F.softplus(-x).mean())
        # user rows: grad = wd2 u - Σ_k z_k (p - n_k)
        if k == 1:
            grad_u = diff.mul_(zs).neg_()
        else:
            grad_u = torch.einsum("bk,bkd->bd", z, n).sub_(zs * p)
        if wd:
            grad_u.add_(u, alpha=wd2)
        uw.index_add_(0, users, grad_u, alpha=-lr)
        # item rows: grad_p = wd2 p - zs u, grad_n_k = wd2 / k n_k + z_k u
        if k == 1:
            zu = u.mul_(zs)  # u is not needed any more
            iw.index_add_(0, pos, zu.sub(p, alpha=wd2) if wd else zu, alpha=lr)
            iw.index_add_(0, flat, torch.add(zu, n[:, 0], alpha=wd2) if wd else zu, alpha=-lr)
        else:
            grad_n = z[:, :, None] * u[:, None, :]
            if wd:
                grad_n.add_(n, alpha=wd2 / k)
            iw.index_add_(0, pos, (zs * u).sub_(p, alpha=wd2), alpha=lr)
            iw.index_add_(0, flat, grad_n.view(-1, grad_n.shape[-1]), alpha=-lr)
        if bw is not None:
            bw.index_add_(0, pos, zs[:, 0] - wd2 * bp, alpha=lr)
            bw.index_add_(0, flat, (z + wd2 / k * bn).reshape(-1), alpha=-lr)
        return loss

    def batches(
        self, train: MultiDomainDataset, stage: Stage, rng: np.random.Generator
    ) -> Iterator[FactorBatch]:
        """One shuffled pass over the stage's interactions, ``stage.batch_size`` at a time,
        each positive with ``n_negatives`` uniform negatives from its domain (or the
        catalogue: ``negatives``)."""
        if self.config.negatives == "catalogue":
            items = self.config.catalogue(train, self.options.target)
            if not isinstance(self.sampler, CatalogueSampler) or self.sampler.items != items:
                self.sampler = CatalogueSampler(items)
        return factor_batches(train, stage.domains, "bpr", stage.batch_size,
                              self.config.n_negatives, self.sampler, rng)

    def loss(self, batch: FactorBatch, stage: str) -> torch.Tensor:
        """Mean BPR loss plus L2 on the batch's embeddings."""
        u = self.user_embedding(batch.users)  # [b, d]
        p = self.item_embedding(batch.items)  # [b, d]
        n = self.item_embedding(batch.negatives)  # [b, k, d]
        pos = (u * p).sum(-1, keepdim=True)  # [b, 1]
        neg = torch.einsum("bd,bkd->bk", u, n)  # [b, k]
        l2 = u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum() / n.shape[1]
        if self.item_bias is not None:
            bp = self.item_bias(batch.items)  # [b, 1]
            bn = self.item_bias(batch.negatives).squeeze(-1)  # [b, k]
            pos, neg = pos + bp, neg + bn
            l2 = l2 + bp.pow(2).sum() + bn.pow(2).sum() / bn.shape[1]
        ranking = F.softplus(neg - pos).mean()
        return ranking + self.config.weight_decay * (l2 / len(u))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, query: Query) -> torch.Tensor:
        """``[B, d]`` user embeddings, or the mean item embedding of ``query.history``."""
        train = self._check_fitted()
        device = self.item_embedding.weight.device
        if query.history is None:
            users = query.users.to(device=device, dtype=torch.long)
            if len(users) and (users.min() < 0 or users.max() >= train.n_users):
                raise DataError(
                    f"user index out of range [0, {train.n_users}) and no history given; "
                    "an anonymous user needs Query.history"
                )
            return self.user_embedding(users)
        catalogue = self.config.catalogue(train, self.options.target)
        hist = self.history_matrix(query, catalogue).tocoo()
        counts = np.maximum(np.bincount(hist.row, minlength=hist.shape[0]), 1)
        weights = torch.from_numpy((1.0 / counts[hist.row]).astype(np.float32)).to(device)
        rows = torch.from_numpy(hist.row.astype(np.int64)).to(device)
        items = torch.from_numpy(hist.col.astype(np.int64) + catalogue.start).to(device)
        vectors = self.item_embedding(items) * weights[:, None]  # [nnz, d]
        out = torch.zeros(hist.shape[0], vectors.shape[1], device=device)
        return out.index_add_(0, rows, vectors)

    @torch.no_grad()
    def score(self, query: Query, domain: str) -> torch.Tensor:
        """Dot products of user and item embeddings.

        Returns:
            ``[B, n_items(domain)]`` float32, on the model's device.
        """
        train = self._check_fitted()
        items = self.config.check_domain(train, domain, self.options.target)
        scores = self.user_vectors(query) @ self.item_embedding.weight[items].T
        if self.item_bias is not None:
            scores = scores + self.item_bias.weight[items, 0]
        return scores

    @torch.no_grad()
    def retrieval_items(self, domain: str) -> torch.Tensor:
        """``[n_items(domain), d]`` item embeddings (the two-tower view of ``score``); with
        ``item_bias`` ``[n_items(domain), d + 1]``, the bias as the last column."""
        items = self.config.check_domain(self._check_fitted(), domain, self.options.target)
        vectors = self.item_embedding.weight[items].detach()
        if self.item_bias is None:
            return vectors
        return with_column(vectors, self.item_bias.weight[items, 0].detach())

    @torch.no_grad()
    def retrieval_users(self, query: Query, domain: str) -> torch.Tensor:
        """``[B, d]`` user vectors (see ``user_vectors``), a constant 1 appended with
        ``item_bias``."""
        self.config.check_domain(self._check_fitted(), domain, self.options.target)
        users = self.user_vectors(query)
        return users if self.item_bias is None else with_column(users, 1.0)

