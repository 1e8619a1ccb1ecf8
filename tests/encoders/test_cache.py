"""The vector cache: nothing encoded twice, changed texts re-encoded alone, atomic shards."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec.encoders import VectorCache, encode_items, encode_with_stats
from crossrec.encoders.cache import text_hash


def test_second_run_encodes_nothing(minilm, counting, texts, tmp_path):
    enc = counting(minilm)
    first, s1 = encode_with_stats(texts, enc, cache=tmp_path, batch_size=2, progress=False)
    assert len(enc.seen) == len(set(texts)) == s1.encoded  # the duplicate encoded once
    assert (s1.items, s1.unique, s1.from_cache) == (len(texts), len(set(texts)), 0)
    second, s2 = encode_with_stats(texts, enc, cache=tmp_path, batch_size=2, progress=False)
    assert len(enc.seen) == len(set(texts))  # no new call
    assert (s2.encoded, s2.from_cache) == (0, len(set(texts)))
    assert "encoded 0, from cache 5" in s2.summary()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, minilm.encode(texts), atol=1e-5)


def test_changed_text_reencodes_only_that_item(minilm, counting, texts, tmp_path):
    enc = counting(minilm)
    before = encode_items(texts, enc, cache=tmp_path, progress=False)
    enc.seen.clear()
    changed = list(texts)
    changed[2] = "watercolor paint brush set, 12 sizes"
    after = encode_items(changed, enc, cache=tmp_path, progress=False)
    assert enc.seen == [changed[2]]
    keep = [i for i in range(len(texts)) if i != 2]
    np.testing.assert_array_equal(after[keep], before[keep])
    assert not np.allclose(after[2], before[2])


def test_cache_is_keyed_by_encoder(minilm, counting, texts, tmp_path):
    a = counting(minilm)
    encode_items(texts, a, cache=tmp_path, progress=False)
    b = counting(minilm)
    b.key = minilm.key.replace(":torch", ":onnx-int8")  # another backend, same texts
    encode_items(texts, b, cache=tmp_path, progress=False)
    assert len(b.seen) == len(set(texts))
    assert len(list(tmp_path.iterdir())) == 2  # one folder per encoder key


def test_half_written_shard_is_never_visible(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    cache = VectorCache(tmp_path, "k", 3)
    cache.add([text_hash("a")], np.ones((1, 3), np.float32))

    def crash(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.add([text_hash("b")], np.full((1, 3), 2, np.float32))
    monkeypatch.undo()
    assert [p.name.startswith("part-") for p in cache.dir.iterdir()] == [True]  # no leftovers
    found, vec = VectorCache(tmp_path, "k", 3).lookup([text_hash("a"), text_hash("b")])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(vec[0], 1.0)
    # a stray temporary (a writer killed mid-way) is ignored by readers
    (cache.dir / ".part-x.parquet.tmp").write_bytes(b"garbage")
    assert VectorCache(tmp_path, "k", 3).lookup([text_hash("a")])[0].tolist() == [True]


def test_no_cache_and_empty_input(minilm, counting, texts):
    enc = counting(minilm)
    v = encode_items(texts, enc, cache=None, progress=False)
    assert v.shape == (len(texts), minilm.dim)
    assert encode_items([], enc, cache=None, progress=False).shape == (0, minilm.dim)
