"""Data-parallel training inside ``Trainer`` once ``torch.distributed`` is initialised.

Ray Train's ``TorchTrainer`` and ``torchrun`` start N processes that each build the same model
from the same seed; the ``Trainer`` of each finds the process group and trains through a
``DataParallel``:

- **Batches.** Every rank draws the same shuffled batches from the same seeded generator, with
  the stage's batch size divided by N (``micro_stage``), and rank ``r`` trains on micro-batches
  ``r, r + N, r + 2N, ...``. One optimiser step thus covers N consecutive micro-batches, about
  one batch of the single-process run: ``batch_size`` stays the *global* batch and the
  learning rate keeps its meaning. The generator that draws the batches stays in step on
  every rank, so the resume point that rank 0 writes fits them all. (Each rank draws all
  micro-batches and trains on its own; the drawing is repeated N times. A loss with in-batch
  negatives sees the ``batch_size / N`` rows of its micro-batch.)
- **Gradients.** The model sits in ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU: the
  backend of the process group); DDP averages the gradients of the N micro-batches, so every
  rank takes the same Adam step. When an epoch's micro-batches do not divide by N, the ranks
  left without one in the last step train on a copy of rank 0's micro-batch with weight 0 and
  the others scale theirs by N / k: the step is the mean over the k real micro-batches, and
  every rank still steps (Adam's state stays equal everywhere).
- **Decisions.** Rank 0 validates and broadcasts the value, so early stopping and the best
  epoch are the same everywhere; only rank 0 writes the log, checkpoint and resume point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from crossrec.models.base import Stage, TorchRecommender


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def micro_stage(stage: Stage, world_size: int) -> Stage:
    """``stage`` with the batch size of one rank: ``ceil(batch_size / world_size)``."""
    return dataclasses.replace(stage, batch_size=max(1, math.ceil(stage.batch_size / world_size)))


class _Loss(nn.Module):
    """The model's loss as a ``forward``, which DDP needs to see to all-reduce gradients."""

    def __init__(self, model: TorchRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, stage: str) -> torch.Tensor:
        return self.model.loss(batch, stage)


class DataParallel:
    """One rank's view of data-parallel training (see the module docstring).

    Args:
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    @property
    def device(self) -> torch.device:
        """Where the collectives of values run: the GPU under NCCL, else the CPU."""
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def wrap(self, model: TorchRecommender) -> nn.Module:
        """``model.loss`` as a DDP module over the parameters that train in this stage.

        Wrap after setting ``requires_grad`` for the stage (DDP reduces the gradients of the
        parameters that require one when it is built). Buffers are left out of DDP's
        broadcasts: every rank builds them from the same data. ``find_unused_parameters``:
        a stage's loss need not touch every parameter in every batch.
        """
        from torch.nn.parallel import DistributedDataParallel

        wrapper = _Loss(model)
        buffers = [f"model.{name}" for name, _ in model.named_buffers()]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapper, buffers)
        return DistributedDataParallel(wrapper, find_unused_parameters=True)

    def shard(self, batches: Iterable[Any]) -> Iterator[tuple[Any, float]]:
        """This rank's ``(micro-batch, loss weight)`` of each step over the shared ``batches``.

        Weight 1 for a full step; in a last step of ``k < N`` micro-batches, ``N / k`` for the
        ranks that have one and 0 (on a copy of rank 0's) for the others.
        """
        n = self.world_size
        first, mine, k = None, None, 0
        for batch in batches:
            if k == 0:
                first = batch
            if k == self.rank:
                mine = batch
            k += 1
            if k == n:
                yield mine, 1.0
                first, mine, k = None, None, 0
        if k:
            yield (mine, n / k) if self.rank < k else (first, 0.0)

    def sum_over_ranks(self, *values: float) -> list[float]:
        """Each of ``values`` summed over the ranks."""
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def from_rank0(self, value: float | None) -> float | None:
        """Rank 0's ``value`` on every rank (None stays None)."""
        import torch.distributed as dist

        t = torch.tensor([math.nan if value is None else value], dtype=torch.float64,
                         device=self.device)
        dist.broadcast(t, 0)
        out = float(t.item())
        return None if math.isnan(out) else out

    def agree(self, values: list[float]) -> bool:
        """Whether every rank holds rank 0's ``values`` (the same answer on every rank)."""
        import torch.distributed as dist

        mine = torch.tensor(values, dtype=torch.float64, device=self.device)
        theirs = mine.clone()
        dist.broadcast(theirs, 0)
        differ = torch.tensor([float(not torch.equal(mine, theirs))], device=self.device)
        dist.all_reduce(differ, op=dist.ReduceOp.MAX)
        return differ.item() == 0.0

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()
