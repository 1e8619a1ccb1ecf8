"""Stage.rows: Adam over the rows of a table that can train equals Adam over the whole table."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from crossrec.data.split import Split, cold_start_users
from crossrec.models.base import FitOptions, Stage, TorchRecommender
from crossrec.models.baselines.bpr import BPR
from crossrec.models.cross.emcdr import EMCDR
from crossrec.models.cross.ptupcdr import PTUPCDR
from crossrec.testing import make_two_domain
from crossrec.training.trainer import Trainer

OPTIONS = FitOptions(target="target", sources=("source",), seed=0, progress=False)


@pytest.fixture(scope="module")
def split() -> Split:
    data = make_two_domain(n_users=80, n_items=(40, 30), n_overlap=60, seed=2)
    return cold_start_users(data, "source", "target", 0.3, seed=0)


def _built(model: TorchRecommender, split: Split) -> TorchRecommender:
    torch.manual_seed(OPTIONS.seed)  # as TorchRecommender.fit does before build()
    model.train_data, model.options = split.train, OPTIONS
    model.build(split.train, OPTIONS)
    return model


def _state(model: TorchRecommender) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("make", [
    lambda: EMCDR(embedding_size=8, epochs=3, batch_size=64, mapping_epochs=2),
    lambda: PTUPCDR(embedding_size=8, mf_epochs=3, batch_size=64, meta_epochs=2),
], ids=["emcdr", "ptupcdr"])
def test_mf_stages_with_rows_equal_whole_tables(split: Split, make) -> None:
    runs = []
    for keep_rows in (True, False):
        model = _built(make(), split)
        stages = model.default_stages(OPTIONS.sources, OPTIONS.target)
        assert any(s.rows for s in stages)  # the MF stages name their item rows
        if not keep_rows:
            stages = [replace(s, rows={}) for s in stages]
        Trainer(OPTIONS).fit(model, split.train, stages)
        runs.append(_state(model))
    for name, value in runs[1].items():
        torch.testing.assert_close(runs[0][name], value, rtol=0, atol=0, msg=name)


def test_rows_are_the_stage_domains_items(split: Split) -> None:
    model = _built(EMCDR(embedding_size=8), split)
    source_mf, target_mf, mapping = model.default_stages(OPTIONS.sources, OPTIONS.target)
    src, tgt = split.train.domain_items("source"), split.train.domain_items("target")
    assert source_mf.rows == {"source_item.weight": src, "source_bias.weight": src}
    assert target_mf.rows == {"target_item.weight": tgt, "target_bias.weight": tgt}
    assert mapping.rows == {}
    before = _state(model)
    Trainer(OPTIONS).fit(model, split.train, [source_mf])
    after = _state(model)
    assert not torch.equal(after["source_item.weight"][src], before["source_item.weight"][src])
    outside = torch.ones(split.train.n_items, dtype=torch.bool)
    outside[src] = False
    torch.testing.assert_close(after["source_item.weight"][outside],
                               before["source_item.weight"][outside], rtol=0, atol=0)


def test_a_gradient_outside_the_rows_is_an_error(split: Split) -> None:
    model = _built(BPR(embedding_size=8), split)
    stage = Stage("all", epochs=1, batch_size=64,  # both domains, rows of the source only
                  rows={"item_embedding.weight": split.train.domain_items("source")})
    with pytest.raises(ValueError, match="item_embedding.weight got a gradient outside rows"):
        Trainer(OPTIONS).fit(model, split.train, [stage])
    bad = replace(stage, rows={"item_table.weight": slice(0, 1)})
    with pytest.raises(ValueError, match="not parameters of the model"):
        Trainer(OPTIONS).fit(model, split.train, [bad])


def test_rows_ignored_with_a_weight_decay(split: Split) -> None:
    """Adam's weight decay moves rows without a gradient too: rows must not restrict it."""
    rows = {"item_embedding.weight": split.train.domain_items("source")}
    runs = []
    for stage_rows in (rows, {}):
        model = _built(BPR(embedding_size=8), split)
        stage = Stage("source", epochs=2, batch_size=64, weight_decay=0.1, domains=("source",),
                      rows=stage_rows)
        Trainer(OPTIONS).fit(model, split.train, [stage])
        runs.append(model.item_embedding.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
