"""``crossrec encode --workers N``: Ray Data actors fill the same vector cache, exactly."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.encoders import VectorCache, encode_with_stats
from crossrec.encoders.distributed import encode_distributed
from crossrec.testing import make_two_domain
from crossrec.testing.text import HashingEncoder

pytestmark = pytest.mark.distributed
runner = CliRunner()
WORDS = ["red", "stapler", "office", "paint", "brush", "canvas", "ink", "desk", "lamp", "pen"]


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    out = [" ".join(rng.choice(WORDS, size=rng.integers(1, 8))) + f" item {i}" for i in range(n)]
    return out + out[:5] + [""]  # duplicates and an empty text


def test_workers_fill_the_cache_the_single_process_path_reads(ray_local, tmp_path):
    texts = _texts(60)
    factory = partial(HashingEncoder, 64)
    vecs, stats = encode_distributed(texts, factory(), factory, workers=2, cache=tmp_path,
                                     batch_size=4)
    assert (stats.items, stats.unique, stats.encoded, stats.from_cache) == (66, 61, 61, 0)
    np.testing.assert_array_equal(vecs, HashingEncoder(64).encode(texts))
    shards = list((tmp_path / "test_hashing-bow_64").glob("part-*.parquet"))
    assert len(shards) >= 1 and not list(tmp_path.rglob("*.tmp"))
    again, stats = encode_distributed(texts, factory(), factory, workers=2, cache=tmp_path)
    assert (stats.encoded, stats.from_cache) == (0, 61)
    np.testing.assert_array_equal(again, vecs)
    # the single-process path finds everything in the same cache
    single, s1 = encode_with_stats(texts, HashingEncoder(64), cache=tmp_path, progress=False)
    assert s1.encoded == 0
    np.testing.assert_array_equal(single, vecs)
    # new texts only: the workers get exactly those
    _, s2 = encode_distributed(texts + ["a brand new lamp"], factory(), factory, workers=2,
                               cache=VectorCache(tmp_path, factory().key, 64))
    assert (s2.encoded, s2.from_cache) == (1, 61)


def test_worker_with_another_encoder_refuses(ray_local, tmp_path):
    with pytest.raises(Exception, match="differs from the driver's"):
        encode_distributed(["a", "b"], HashingEncoder(64), partial(HashingEncoder, 32),
                           workers=1, cache=None)


def test_cli_workers_equal_single_process_minilm(ray_local, minilm, tmp_path, monkeypatch):
    """MiniLM loaded once per actor; vectors equal those of one process; a rerun encodes 0."""
    prepared = tmp_path / "synthetic"
    make_two_domain(seed=3).save(prepared)
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "v.npy"
    r = runner.invoke(app, ["encode", str(prepared), "--workers", "2", "--batch-size", "32",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "encoded 220, from cache 0" in r.output
    r = runner.invoke(app, ["encode", str(prepared), "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "encoded 0, from cache 220" in r.output
    from crossrec.encoders import item_texts

    texts = item_texts(make_two_domain(seed=3))
    np.testing.assert_allclose(np.load(out), minilm.encode(texts, batch_size=32), atol=1e-5)
    r = runner.invoke(app, ["encode", str(prepared), "--workers", "-1"])
    assert r.exit_code == 2 and "--workers must be >= 1" in r.output
