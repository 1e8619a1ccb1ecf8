"""Another modality in text_transfer: a vector file read and aligned with the items (clear
errors for bad files), and vectors that carry what the text lacks make the model better, with
either fusion; the contract holds with a modality."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossrec.data.split import cold_start_users
from crossrec.encoders.vector_file import load_item_vectors
from crossrec.errors import DataError
from crossrec.models.base import FitOptions
from crossrec.models.cross.text_transfer import TextTransfer
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k
from crossrec.testing.text import hashing_encoder

FAST = {"encoder": "hashing", "embedding_size": 16, "n_experts": 2, "max_seq_len": 16,
        "n_layers": 1, "pretrain_epochs": 2, "epochs": 15, "n_negatives": 32, "batch_size": 64,
        "pretrain_batch_size": 64, "learning_rate": 3e-2, "pretrain_learning_rate": 1e-2,
        "dropout": 0.0, "adapter_dropout": 0.0, "adapt_negatives": 0}
OPTIONS = FitOptions(target="target", sources=("source",), progress=False)


def write_cluster_vectors(data, path: Path, *, dim: int = 8, noise: float = 0.3,
                          seed: int = 0) -> Path:
    """One row per item: its (true) cluster's random centre plus noise — the signal that
    ``text_noise`` takes out of the titles."""
    rng = np.random.default_rng(seed)
    clusters = np.asarray(data.report["synthetic"]["item_cluster"])
    centres = rng.normal(size=(clusters.max() + 1, dim))
    vectors = centres[clusters] + noise * rng.normal(size=(len(clusters), dim))
    domains = np.asarray(data.domains, dtype=object)[data.item_domain]
    pd.DataFrame({"domain": domains, "item_id": data.item_ids(np.arange(data.n_items)),
                  "vector": list(vectors.astype(np.float32))}).to_parquet(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def _hashing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with hashing_encoder(64, cache_dir=tmp_path_factory.mktemp("cache")):
        yield


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cluster_vectors(make_two_domain(), tmp_path_factory.mktemp("v") / "v.parquet")


class TestTextTransferGated(RecommenderContract):
    model_cls = TextTransfer
    transfers = True

    @pytest.fixture(scope="class", autouse=True)
    def _config(self, vector_file: Path) -> None:  # before the class-scoped ``fitted``
        type(self).fast_config = {**FAST, "modality_file": str(vector_file),
                                  "modality_fusion": "gated"}


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_vectors_that_carry_what_the_text_lacks_help(tmp_path, fusion) -> None:
    # every title carries another cluster's theme words: the text is no guide at all
    data = make_two_domain(text_noise=1.0, seed=1)
    split = cold_start_users(data, "source", "target", 0.3, seed=0)
    path = write_cluster_vectors(data, tmp_path / "v.parquet")
    text_only = TextTransfer(FAST).fit(split.train, OPTIONS)
    # the gate starts at an even mix with the (useless) text: give it the epochs to move
    fused = TextTransfer({**FAST, "modality_file": str(path), "modality_fusion": fusion,
                          "epochs": 30}).fit(split.train, OPTIONS)
    ours, theirs = recall_at_k(fused, split), recall_at_k(text_only, split)
    assert ours >= theirs + 0.1, (ours, theirs)
    assert fused.fit_report["items_with_vectors"] == data.n_items
    assert fused.fit_report["frozen_text_values"] == data.n_items * (64 + 8)


def test_vector_file_alignment_and_missing_items(tmp_path) -> None:
    data = make_two_domain()
    t = data.domain_items("target")
    ids = data.item_ids(np.arange(t.start, t.start + 3))
    path = tmp_path / "few.parquet"  # no domain column: ids are unique across domains here
    pd.DataFrame({"item_id": [*ids, "no-such-item"],
                  "vector": [[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]}).to_parquet(path)
    found = load_item_vectors(path, data)
    assert (found.found, found.missing, found.unknown) == (3, data.n_items - 3, 1)
    np.testing.assert_allclose(found.vectors[t.start], [0.6, 0.8])  # L2-normalised
    assert not found.vectors[: t.start].any()  # source items: zero rows


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"item_id": ["t1"]}), "missing column 'vector'"),
    (pd.DataFrame({"item_id": ["t1", "t2"], "vector": [[1.0, 2.0], [1.0]]}),
     "row 2: vector has 1 values, row 1 has 2"),
    (pd.DataFrame({"item_id": ["t1", "t2"], "vector": [[1.0, 2.0], [np.nan, 1.0]]}),
     "row 2: vector holds a non-finite value"),
    (pd.DataFrame({"domain": ["target", "target"], "item_id": ["t1", "t1"],
                   "vector": [[1.0], [2.0]]}), "row 2: item 't1' is given twice"),
])
def test_bad_vector_files_name_the_row(tmp_path, frame, message) -> None:
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=message):
        load_item_vectors(path, make_two_domain())
    with pytest.raises(DataError, match="not found"):
        load_item_vectors(tmp_path / "none.parquet", make_two_domain())
