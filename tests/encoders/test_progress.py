"""Encoding says what it caches and where, and reports progress into a redirected stdout."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from crossrec.console import progress
from crossrec.encoders import encode_with_stats
from crossrec.encoders.cache import chunk_size
from crossrec.testing.text import HashingEncoder

LINE = "encoding item texts: "


def _texts(n: int) -> list[str]:
    return [f"item {i} " + "red stapler " * (i % 7) for i in range(n)]


def test_first_run_names_model_and_cache_then_lines_every_tenth(tmp_path, capsys):
    texts = _texts(230)
    vecs, stats = encode_with_stats(texts, HashingEncoder(32), cache=tmp_path, batch_size=4)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("encoding 230 item texts with test:hashing-bow:32; caching "
                             "vectors in ")
    assert out[0].endswith("test_hashing-bow_32")  # the key's directory under the root
    lines = [x for x in out if x.startswith(LINE)]
    assert len(lines) >= 10 and lines[-1].startswith(LINE + "230/230 (100%)")
    done = [int(x[len(LINE):].split("/")[0].replace(",", "")) for x in lines]
    assert all(b - a <= 23 for a, b in zip([0, *done], done, strict=False))  # <= 10 % apart
    np.testing.assert_array_equal(vecs, HashingEncoder(32).encode(texts))

    again, s2 = encode_with_stats(texts, HashingEncoder(32), cache=tmp_path, batch_size=4)
    out = capsys.readouterr().out.splitlines()
    assert s2.encoded == 0 and len(out) == 1
    assert out[0].startswith("loaded 230 item vectors (230 distinct texts) from the cache ")
    np.testing.assert_array_equal(again, vecs)

    _, s3 = encode_with_stats(texts + ["a new lamp"], HashingEncoder(32), cache=tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("encoding 1 item texts (230 of 231 distinct texts cached)")


def test_quiet_when_asked(tmp_path, capsys):
    encode_with_stats(_texts(50), HashingEncoder(16), cache=None, progress=False)
    assert capsys.readouterr().out == ""


def test_without_a_cache_says_so(capsys):
    encode_with_stats(_texts(20), HashingEncoder(16), cache=None)
    assert "no vector cache" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(("n", "batch", "most"), [(38212, 64, 1024), (230, 4, 1024),
                                                  (9, 64, 1024), (5000, 64, 100)])
def test_chunks_are_at_most_a_tenth_and_whole_batches(n, batch, most):
    c = chunk_size(n, batch, most)
    assert 1 <= c <= most and (c <= max(n // 10, 1))
    if c >= batch:
        assert c % batch == 0


def test_plain_lines_reach_a_redirected_stdout(tmp_path):
    code = ("from crossrec.encoders import encode_items\n"
            "from crossrec.testing.text import HashingEncoder\n"
            "texts = [f'item {i} red stapler' for i in range(500)]\n"
            f"encode_items(texts, HashingEncoder(16), cache={str(tmp_path)!r}, batch_size=8)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("FORCE_COLOR", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=True, timeout=120)
    lines = [x for x in r.stdout.splitlines() if x.startswith(LINE)]
    assert len(lines) >= 10 and "500/500 (100%)" in lines[-1], r.stdout
    assert "\x1b[" not in r.stdout  # no terminal control codes in a log


def test_progress_lines_once_per_tenth_and_one_end(capsys):
    with progress(1000, "scoring users", live=False) as advance:
        for _ in range(1000):
            advance(1)
        advance(5)  # past the end: nothing more
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("scoring users: 1,000/1,000 (100%)")
