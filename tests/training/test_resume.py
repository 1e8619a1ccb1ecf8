"""Resume: a run killed after k epochs and resumed equals the run that was never stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from crossrec.data.split import Split, cold_start_users
from crossrec.eval.ranking import evaluate
from crossrec.models.base import FitOptions, Recommender, Stage
from crossrec.models.baselines.bpr import BPR
from crossrec.testing import make_two_domain
from crossrec.training.checkpoint import (
    RESUME_DIR,
    CheckpointError,
    find_resume_point,
    load_resume_point,
)
from crossrec.training.trainer import LOG_FILE, Trainer


class Crash(RuntimeError):
    """Stands for the process dying in the middle of an epoch."""


@pytest.fixture(scope="module")
def split() -> Split:
    data = make_two_domain(n_users=120, n_items=(60, 50), n_overlap=90, seed=3)
    return cold_start_users(data, "source", "target", 0.3, seed=0)


def _validate(split: Split, crash_at: int | None = None) -> Callable[[Recommender], float]:
    """NDCG@10 on the valid users; raises ``Crash`` on call ``crash_at`` (1-based)."""
    calls = [0]

    def validate(model: Recommender) -> float:
        calls[0] += 1
        if calls[0] == crash_at:
            raise Crash(f"killed during epoch {crash_at}")
        return evaluate(model, split, part="valid", ks=(10,), metrics=("ndcg",)).value("ndcg@10")

    return validate


# Adam over each stage's item rows only (Stage.rows), so its resume point holds row views
STAGES = [Stage("pre", epochs=2, domains=("source",), validate=False, batch_size=64,
                learning_rate=0.02, rows={"item_embedding.weight": slice(0, 60)}),
          Stage("fine", epochs=5, domains=("target",), patience=3, batch_size=64,
                learning_rate=0.02, rows={"item_embedding.weight": slice(60, 110)})]


def _fit(split: Split, run_dir: Path, *, resume: bool = False, crash_at: int | None = None
         ) -> tuple[BPR, object]:
    options = FitOptions(target="target", sources=("source",), seed=7, progress=False,
                         run_dir=run_dir, resume=resume, validate=_validate(split, crash_at))
    torch.manual_seed(options.seed)  # as TorchRecommender.fit does before build()
    model = BPR(embedding_size=8, n_negatives=2)
    model.train_data, model.options = split.train, options
    model.build(split.train, options)
    summary = Trainer(options).fit(model, split.train, STAGES)
    return model, summary


@pytest.fixture(scope="module")
def straight(split: Split, tmp_path_factory: pytest.TempPathFactory) -> tuple[BPR, object, Path]:
    """The uninterrupted run every other one is compared with."""
    run_dir = tmp_path_factory.mktemp("straight")
    return (*_fit(split, run_dir), run_dir)


def _log(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / LOG_FILE).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _no_seconds(summary: object) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "seconds"}
            for s in summary.to_dict()["stages"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("crash_at", [2, 4])  # stage "fine" epoch 2, and epoch 4
def test_resumed_run_equals_uninterrupted(split: Split, straight: tuple, tmp_path: Path,
                                          crash_at: int) -> None:
    straight, s_summary, straight_dir = straight
    with pytest.raises(Crash):
        _fit(split, tmp_path / "crashed", crash_at=crash_at)
    point = load_resume_point(find_resume_point(tmp_path / "crashed"))
    assert (point.stage_index, point.epoch) == (1, crash_at - 1)
    assert len(_log(tmp_path / "crashed")) == 2 + crash_at - 1
    resumed, r_summary = _fit(split, tmp_path / "crashed", resume=True)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert _no_seconds(r_summary) == _no_seconds(s_summary)
    assert _log(tmp_path / "crashed") == _log(straight_dir)


def test_resume_after_the_last_epoch_trains_nothing_more(split: Split, straight: tuple) -> None:
    done, _, run_dir = straight
    again, summary = _fit(split, run_dir, resume=True)
    for name, value in done.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)
    assert [s.epochs for s in summary.stages] == [2, 5]
    assert len(_log(run_dir)) == 7


def test_resume_without_checkpoint_starts_afresh_and_checks_the_plan(
        split: Split, straight: tuple, tmp_path: Path) -> None:
    fresh, _ = _fit(split, tmp_path / "a", resume=True)  # nothing to resume: a normal run
    torch.testing.assert_close(fresh.user_embedding.weight, straight[0].user_embedding.weight,
                               rtol=0, atol=0)
    assert (tmp_path / "a" / RESUME_DIR / "state.json").is_file()
    options = FitOptions(target="target", progress=False, run_dir=tmp_path / "a", resume=True)
    with pytest.raises(CheckpointError, match="this run plans"):
        Trainer(options).fit(fresh, split.train, [Stage("other", epochs=1)])


def test_a_fresh_run_removes_the_previous_resume_point(split: Split, tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _fit(split, tmp_path, crash_at=2)
    assert find_resume_point(tmp_path) is not None
    options = FitOptions(target="target", progress=False, run_dir=tmp_path)
    with pytest.raises(ValueError, match="no parameter name"):  # fails before any epoch
        Trainer(options).fit(BPR(), split.train, [Stage("s", trainable=("nope",))])
    assert find_resume_point(tmp_path) is None
