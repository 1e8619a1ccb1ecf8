"""``evaluate --workers N``: shards as Ray tasks, merged; identical to one process."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.data.split import Split, cold_start_users
from crossrec.eval.distributed import evaluate_distributed
from crossrec.eval.ranking import evaluate
from crossrec.experiment import build_model
from crossrec.models.base import FitOptions
from crossrec.testing import make_two_domain

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def split() -> Split:
    data = make_two_domain(n_users=300, n_items=(60, 50), n_overlap=200, seed=2)
    return cold_start_users(data, "source", "target", 0.3, seed=0)


@pytest.mark.parametrize("name,n_negatives", [("bpr", None), ("pop", None), ("bpr", 7)])
def test_ray_shards_equal_single_process(ray_local, split: Split, name: str,
                                         n_negatives: int | None) -> None:
    spec = {"name": name, "epochs": 2} if name == "bpr" else {"name": name}
    model = build_model(spec).fit(split.train, FitOptions(target="target", sources=("source",),
                                                          progress=False))
    kw = dict(ks=(5, 10), metrics=("recall", "ndcg", "hr", "mrr"), batch_size=16,
              n_negatives=n_negatives, seed=1)
    whole = evaluate(model, split, **kw)
    merged = evaluate_distributed(model, split, workers=3, **kw)  # 3 tasks on 2 CPUs
    pd.testing.assert_frame_equal(merged.per_user, whole.per_user, check_exact=True)
    pd.testing.assert_frame_equal(merged.summary, whole.summary, check_exact=True)
    assert merged.params == whole.params and len(whole.per_user) >= 20


def test_cli_evaluate_workers_prints_the_same_table(ray_local, tmp_path) -> None:
    data = tmp_path / "synthetic"
    make_two_domain(seed=3).save(data)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""
[data]
prepared = "{data.as_posix()}"
[split]
kind = "cold_start_users"
target = "target"
ratio = 0.3
[eval]
ks = [5, 10]
[model]
name = "bpr"
epochs = 2
""")
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    bundle = str(tmp_path / "run" / "bundle")
    one = runner.invoke(app, ["evaluate", bundle], env={"COLUMNS": "200"})
    two = runner.invoke(app, ["evaluate", bundle, "--workers", "2"], env={"COLUMNS": "200"})
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    assert "ndcg@10" in one.output and two.output == one.output
