"""Trainer: early stopping, best weights restored, freezing, logs, checkpoints, determinism."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from crossrec.data.dataset import MultiDomainDataset
from crossrec.models.base import FitOptions, ModelConfig, Query, Stage, TorchRecommender
from crossrec.testing import make_two_domain
from crossrec.training.trainer import CHECKPOINT_FILE, LOG_FILE, Trainer, move


class ToyConfig(ModelConfig):
    scale: float = 1.0


class Toy(TorchRecommender):
    """Item biases regressed towards random targets drawn from the trainer's generator."""

    Config = ToyConfig
    name = "toy"

    def build(self, train: MultiDomainDataset, options: FitOptions) -> None:
        self.bias = nn.Parameter(torch.zeros(train.n_items))
        self.head = nn.Linear(1, 1)

    def batches(self, train: MultiDomainDataset, stage: Stage,
                rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(3):
            items = torch.from_numpy(rng.integers(0, train.n_items, size=stage.batch_size))
            yield items, torch.from_numpy(rng.random(stage.batch_size).astype(np.float32))

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        items, y = batch
        pred = self.head(self.bias[items].unsqueeze(-1)).squeeze(-1) * self.config.scale
        return (pred - y).pow(2).mean()

    def score(self, query: Query, domain: str) -> torch.Tensor:
        items = self._check_fitted().domain_items(domain)
        return self.bias[items].detach().expand(len(query.users), -1).clone()


@pytest.fixture(scope="module")
def data() -> MultiDomainDataset:
    return make_two_domain(n_users=40, n_items=(10, 8), n_overlap=30)


def _built(data: MultiDomainDataset, seed: int = 0) -> Toy:
    torch.manual_seed(seed)
    model = Toy()
    model.train_data = data
    model.build(data, FitOptions(target="target"))
    return model


def test_early_stopping_restores_best_and_logs(data: MultiDomainDataset, tmp_path: Path) -> None:
    values = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])
    snapshots: list[torch.Tensor] = []

    def validate(model: Toy) -> float:
        assert not model.training and not torch.is_grad_enabled()
        snapshots.append(model.bias.detach().clone())
        return next(values)

    model = _built(data)
    options = FitOptions(target="target", validate=validate, progress=False, run_dir=tmp_path)
    summary = Trainer(options).fit(model, data, [Stage("s", epochs=6, patience=2,
                                                       learning_rate=0.1, batch_size=16)])
    (stage,) = summary.stages
    assert (stage.epochs, stage.best_epoch, stage.best_valid, stage.stopped_early) == (
        4, 2, 0.5, True)
    assert len(snapshots) == 4
    torch.testing.assert_close(model.bias.detach(), snapshots[1], rtol=0, atol=0)
    lines = [json.loads(x) for x in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
    assert [x["best"] for x in lines] == [True, True, False, False]
    assert [x["valid"] for x in lines] == [0.1, 0.5, 0.3, 0.2]
    assert set(lines[0]) == {"stage", "epoch", "loss", "valid", "seconds", "best"}
    saved = load_file(str(tmp_path / CHECKPOINT_FILE))
    torch.testing.assert_close(saved["bias"], snapshots[1], rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp"))


def test_without_validation_runs_all_epochs(data: MultiDomainDataset, tmp_path: Path) -> None:
    model = _built(data)
    options = FitOptions(target="target", progress=False, run_dir=tmp_path)
    summary = Trainer(options).fit(model, data, [Stage("a", epochs=3, batch_size=8),
                                                 Stage("b", epochs=2, batch_size=8)])
    assert [(s.name, s.epochs, s.best_epoch, s.best_valid) for s in summary.stages] == [
        ("a", 3, 3, None), ("b", 2, 2, None)]
    assert len((tmp_path / LOG_FILE).read_text().splitlines()) == 5
    torch.testing.assert_close(load_file(str(tmp_path / CHECKPOINT_FILE))["bias"],
                               model.bias.detach())
    assert not model.training


def test_trainable_prefixes_freeze_the_rest(data: MultiDomainDataset) -> None:
    model = _built(data)
    head_before = model.head.weight.detach().clone()
    Trainer(FitOptions(target="target", progress=False)).fit(
        model, data, [Stage("bias-only", epochs=2, learning_rate=0.1, trainable=("bias",))])
    torch.testing.assert_close(model.head.weight.detach(), head_before, rtol=0, atol=0)
    assert model.bias.abs().sum() > 0
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    with pytest.raises(ValueError, match="no parameter name starts with"):
        Trainer(FitOptions(target="target", progress=False)).fit(
            model, data, [Stage("x", trainable=("nope",))])


def test_deterministic_given_seed(data: MultiDomainDataset) -> None:
    def run(seed: int) -> torch.Tensor:
        model = _built(data)
        Trainer(FitOptions(target="target", seed=seed, progress=False)).fit(
            model, data, [Stage("s", epochs=3, learning_rate=0.05, batch_size=8)])
        return model.bias.detach()

    torch.testing.assert_close(run(0), run(0), rtol=0, atol=0)
    assert not torch.equal(run(0), run(1))


def test_non_finite_loss_raises(data: MultiDomainDataset) -> None:
    model = _built(data)
    model.config.scale = float("nan")
    with pytest.raises(FloatingPointError, match="loss is nan"):
        Trainer(FitOptions(target="target", progress=False)).fit(model, data, [Stage("s")])


def test_fit_through_the_model(data: MultiDomainDataset) -> None:
    model = Toy().fit(data, FitOptions(target="target", progress=False))
    assert model.score(Query(torch.tensor([0, 1])), "target").shape == (2, 8)


def test_progress_bar_runs(data: MultiDomainDataset) -> None:
    model = _built(data)
    Trainer(FitOptions(target="target", progress=True)).fit(model, data, [Stage("s", epochs=2)])


def test_move_nested() -> None:
    batch = {"a": (torch.zeros(2), [torch.ones(1)]), "n": 3}
    moved = move(batch, "cpu")
    assert moved["n"] == 3 and torch.equal(moved["a"][1][0], torch.ones(1))
