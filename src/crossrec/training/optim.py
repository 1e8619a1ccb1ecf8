"""The optimiser of one training stage: Adam, row views for ``Stage.rows``, lazy Adam for sparse
embedding tables.

- Dense parameters get ``torch.optim.Adam`` (with the stage's weight decay).
- ``Stage.rows``: a table that only gets gradients in some rows is optimised through a view of
  those rows (the same steps as Adam over the whole table, less work; see :func:`row_views`).
- Embedding tables built with ``nn.Embedding(..., sparse=True)`` get row-sparse gradients and
  ``torch.optim.SparseAdam`` ("lazy Adam"): each step reads and writes only the rows in the
  batch, so a step costs O(batch), not O(rows of the table). It is not the same optimiser as
  Adam: the moments of rows absent from a batch are not decayed in that step. Models opt in
  (e.g. ``bpr`` with ``sparse_updates = true``); weight decay must then be a loss term
  (``Stage.weight_decay`` 0), because SparseAdam has none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crossrec.models.base import Stage, TorchRecommender


class OptimizerGroup:
    """Several optimisers stepped together (dense Adam + SparseAdam), one ``state_dict``."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.optimizers) - set(state))
        if missing:
            raise ValueError(f"optimiser state lacks {missing}: it was saved by another "
                             "optimiser set-up (sparse_updates changed?)")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def sparse_parameters(model: nn.Module) -> set[int]:
    """``id`` of every embedding weight that gets sparse gradients (``sparse=True``)."""
    return {id(m.weight) for m in model.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse}


def build_optimizer(
    model: TorchRecommender, stage: Stage, params: list[nn.Parameter], distributed: bool = False
) -> tuple[torch.optim.Optimizer | OptimizerGroup, list[Any]]:
    """The stage's optimiser over ``params`` and the hooks to remove after the stage.

    Plain ``Adam`` when no parameter is sparse (the common case, and the state layout older
    checkpoints have); else an :class:`OptimizerGroup` of ``adam`` (dense) and ``sparse_adam``.
    Under DDP (``distributed``) the row views are skipped: DDP reduces whole gradients, and the
    steps are the same without them.
    """
    sparse_ids = sparse_parameters(model)
    sparse = [p for p in params if id(p) in sparse_ids]
    dense = [p for p in params if id(p) not in sparse_ids]
    if sparse and stage.weight_decay:
        raise ValueError(f"stage {stage.name!r}: weight_decay={stage.weight_decay} with sparse "
                         "embedding tables; SparseAdam has no weight decay (put the L2 penalty "
                         "in the loss, or turn sparse updates off)")
    if distributed:
        optimised, hooks = dense, []
    else:
        optimised, hooks = row_views(model, stage, dense)
    if not sparse:
        return torch.optim.Adam(optimised, lr=stage.learning_rate,
                                weight_decay=stage.weight_decay), hooks
    optimizers: dict[str, torch.optim.Optimizer] = {
        "sparse_adam": torch.optim.SparseAdam(sparse, lr=stage.learning_rate)}
    if optimised:
        optimizers["adam"] = torch.optim.Adam(optimised, lr=stage.learning_rate)
    return OptimizerGroup(optimizers), hooks


class _RowGrad:
    """Post-accumulate-grad hook of a parameter trained on ``rows`` only: hands those rows of
    its gradient to ``view`` (the tensor Adam updates) and clears the parameter's own gradient
    (the optimiser does not know it, so nothing else would). The first call checks that no
    other row got a gradient."""

    def __init__(self, view: torch.Tensor, rows: slice, label: str) -> None:
        self.view, self.rows, self.label, self.checked = view, rows, label, False

    def __call__(self, param: torch.Tensor) -> None:
        grad = param.grad
        if not self.checked:
            if grad[: self.rows.start].any() or grad[self.rows.stop :].any():
                raise ValueError(f"{self.label} got a gradient outside rows {self.rows.start}:"
                                 f"{self.rows.stop}; fix the model's Stage.rows")
            self.checked = True
        self.view.grad = grad[self.rows]
        param.grad = None


def row_views(
    model: TorchRecommender, stage: Stage, params: list[nn.Parameter]
) -> tuple[list[torch.Tensor], list[Any]]:
    """The tensors the stage's optimiser updates, and the hooks to remove after the stage.

    A parameter named in ``stage.rows`` is replaced by a view of those rows (same storage),
    whose gradient a ``_RowGrad`` hook sets after each backward; the others stay as they are.
    Adam over the view equals Adam over the whole table when the other rows never get a
    gradient (their moments stay 0, so their update is 0), but skips its work on them. Not
    applied with a weight decay, which would move those rows too. Sparse tables are not passed
    here (SparseAdam touches only the rows of the batch anyway).
    """
    if not stage.rows or stage.weight_decay:
        return list(params), []
    names = {id(p): name for name, p in model.named_parameters()}
    sparse_names = {names[i] for i in sparse_parameters(model) if i in names}
    unknown = sorted(set(stage.rows) - set(names.values()) - sparse_names)
    if unknown:
        raise ValueError(f"stage {stage.name!r}: Stage.rows names {unknown}, which are not "
                         "parameters of the model")
    out: list[torch.Tensor] = []
    hooks = []
    for p in params:
        rows = stage.rows.get(names[id(p)])
        if rows is None:
            out.append(p)
            continue
        start, stop, step = rows.indices(len(p))
        if step != 1:
            raise ValueError(f"stage {stage.name!r}: Stage.rows[{names[id(p)]!r}] must be a "
                             f"contiguous slice, got {rows}")
        view = p.detach()[start:stop]  # a leaf sharing p's storage
        label = f"stage {stage.name!r}: {names[id(p)]}"
        hooks.append(p.register_post_accumulate_grad_hook(
            _RowGrad(view, slice(start, stop), label)))
        out.append(view)
    return out, hooks
