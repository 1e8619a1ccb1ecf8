"""``crossrec encode``: a dataset or a config, cached, with a readable summary."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import crossrec.encoders as encoders
from crossrec.cli import app
from crossrec.testing import make_two_domain

runner = CliRunner()


@pytest.fixture
def prepared(tmp_path):
    path = tmp_path / "synthetic"
    make_two_domain(seed=3).save(path)
    return path


@pytest.fixture
def shared_minilm(minilm, monkeypatch, tmp_path):
    """``load_encoder`` gives the session's MiniLM (no reload); records what it was asked."""
    calls = []

    def load(name, **kw):
        calls.append((name, kw))
        if name == "minilm" and kw.get("backend", "torch") == "torch":
            return minilm
        return original(name, **kw)

    original = encoders.load_encoder
    monkeypatch.setattr(encoders, "load_encoder", load)
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path / "cache"))
    return calls


def test_encode_twice_second_run_encodes_nothing(prepared, shared_minilm, tmp_path):
    out = tmp_path / "vectors.npy"
    r = runner.invoke(app, ["encode", str(prepared), "--batch-size", "32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "220 items" in r.output and "encoded 220," in r.output and "items/s" in r.output
    assert "encoding 220 item texts with all-MiniLM-L6-v2; caching vectors in " in r.output
    assert sum(x.startswith("encoding item texts: ") for x in r.output.splitlines()) >= 10
    v = np.load(out)
    assert v.shape == (220, 384) and v.dtype == np.float32
    r = runner.invoke(app, ["encode", str(prepared)])
    assert r.exit_code == 0, r.output
    assert "encoded 0, from cache 220" in r.output
    assert "loaded 220 item vectors (220 distinct texts) from the cache " in r.output
    assert (tmp_path / "cache" / "vectors").is_dir()


def test_encode_from_a_config_with_template(prepared, shared_minilm, tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""
[data]
prepared = "{prepared.as_posix()}"
[split]
kind = "cold_start_users"
target = "target"
[model]
name = "pop"
[encoder]
template = "{{domain}}: {{title}}"
max_seq_length = 64
""")
    r = runner.invoke(app, ["encode", str(cfg), "--cache", str(tmp_path / "vec")])
    assert r.exit_code == 0, r.output
    assert shared_minilm[-1] == ("minilm", {"max_seq_length": 64, "backend": "torch"})
    assert "encoded 220," in r.output
    # another template changes every text: all re-encoded
    r = runner.invoke(app, ["encode", str(cfg), "--cache", str(tmp_path / "vec"),
                            "--template", "{title}"])
    assert r.exit_code == 0, r.output
    assert "encoded 0," not in r.output


def test_encode_bad_options_are_clear_errors(prepared, shared_minilm):
    r = runner.invoke(app, ["encode", str(prepared), "--encoder", "bert-huge"])
    assert r.exit_code == 2 and "'bert-huge' is not one of minilm, mpnet" in r.output
    r = runner.invoke(app, ["encode", str(prepared), "--batch-size", "0"])
    assert r.exit_code == 2 and "--batch-size" in r.output
