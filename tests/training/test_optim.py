"""The stage optimiser: lazy Adam on sparse embedding tables, its checkpoints, its limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from crossrec.data.split import Split, cold_start_users
from crossrec.models.base import FitOptions, Stage
from crossrec.models.baselines.bpr import BPR
from crossrec.testing import make_two_domain
from crossrec.training.checkpoint import find_resume_point, load_resume_point
from crossrec.training.optim import OptimizerGroup, build_optimizer, sparse_parameters
from crossrec.training.trainer import Trainer


class Crash(RuntimeError):
    """Stands for the process dying at the end of an epoch."""


@pytest.fixture(scope="module")
def split() -> Split:
    data = make_two_domain(n_users=120, n_items=(60, 50), n_overlap=90, seed=3)
    return cold_start_users(data, "source", "target", 0.3, seed=0)


def _bpr(split: Split, options: FitOptions, **config) -> BPR:
    torch.manual_seed(options.seed)
    model = BPR(embedding_size=8, n_negatives=2, **config)
    model.train_data, model.options = split.train, options
    model.build(split.train, options)
    return model


def test_lazy_adam_moves_only_the_batch_rows(split: Split) -> None:
    options = FitOptions(target="target", progress=False)
    model = _bpr(split, options, sparse_updates=True)
    assert sparse_parameters(model) == {id(model.user_embedding.weight),
                                        id(model.item_embedding.weight)}
    stage = Stage("s", learning_rate=0.1)
    optimizer, hooks = build_optimizer(model, stage, list(model.parameters()))
    assert isinstance(optimizer, OptimizerGroup) and hooks == []
    users, items = torch.tensor([3, 5]), torch.tensor([[1, 7], [2, 9]])
    before = model.user_embedding.weight.detach().clone()
    before_items = model.item_embedding.weight.detach().clone()
    loss = (model.user_embedding(users)[:, None, :] * model.item_embedding(items)).sum()
    loss.backward()
    assert model.user_embedding.weight.grad.is_sparse
    optimizer.step()
    moved = (model.user_embedding.weight.detach() != before).any(1).nonzero().flatten()
    assert moved.tolist() == [3, 5]
    moved = (model.item_embedding.weight.detach() != before_items).any(1).nonzero().flatten()
    assert moved.tolist() == [1, 2, 7, 9]


def test_dense_tables_keep_plain_adam(split: Split) -> None:
    model = _bpr(split, FitOptions(target="target", progress=False))
    optimizer, _ = build_optimizer(model, Stage("s"), list(model.parameters()))
    assert type(optimizer) is torch.optim.Adam


def test_weight_decay_with_sparse_tables_is_refused(split: Split) -> None:
    model = _bpr(split, FitOptions(target="target", progress=False), sparse_updates=True)
    with pytest.raises(ValueError, match="SparseAdam has no weight decay"):
        build_optimizer(model, Stage("s", weight_decay=0.01), list(model.parameters()))


def test_group_of_dense_and_sparse_parameters_steps_both() -> None:
    model = nn.ModuleDict({"table": nn.Embedding(10, 4, sparse=True), "head": nn.Linear(4, 1)})
    optimizer, _ = build_optimizer(model, Stage("s", learning_rate=0.1),  # type: ignore[arg-type]
                                   list(model.parameters()))
    assert set(optimizer.state_dict()) == {"adam", "sparse_adam"}
    before = [p.detach().clone() for p in model.parameters()]
    model["head"](model["table"](torch.tensor([2]))).sum().backward()
    optimizer.step()
    assert all((p.detach() != b).any() for p, b in zip(model.parameters(), before, strict=True))
    with pytest.raises(ValueError, match="lacks"):
        optimizer.load_state_dict({"adam": optimizer.state_dict()["adam"]})


def _fit(split: Split, run_dir: Path, *, resume: bool = False, crash_at: int | None = None
         ) -> BPR:
    calls = [0]

    def validate(model: BPR) -> float:
        calls[0] += 1
        if calls[0] == crash_at:
            raise Crash(f"killed after epoch {crash_at}")
        return float(calls[0] % 3)  # any value: early stopping must resume the same way

    options = FitOptions(target="target", sources=("source",), seed=7, progress=False,
                         run_dir=run_dir, resume=resume, validate=validate)
    model = _bpr(split, options, sparse_updates=True)
    stages = [Stage("train", epochs=4, batch_size=64, learning_rate=0.02, patience=10)]
    Trainer(options).fit(model, split.train, stages)
    return model


def test_sparse_run_resumes_bit_identical(split: Split, tmp_path: Path) -> None:
    straight = _fit(split, tmp_path / "straight")
    with pytest.raises(Crash):
        _fit(split, tmp_path / "crashed", crash_at=3)
    point = load_resume_point(find_resume_point(tmp_path / "crashed"))
    assert point.epoch == 2 and set(point.optimizer) == {"sparse_adam"}
    resumed = _fit(split, tmp_path / "crashed", resume=True)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
