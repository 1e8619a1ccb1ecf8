"""Experiment configs: TOML loading, dotted overrides, unknown keys rejected with their name."""

from pathlib import Path

import pytest

from crossrec.config import cache_dir, data_dir, load_config
from crossrec.errors import ConfigError

BASE = """
name = "t"
[data]
format = "tabular"
path = "x.csv"
[split]
kind = "leave_one_out"
target = "b"
[[models]]
name = "pop"
[[models]]
name = "bpr"
epochs = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


def test_load_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert [s["name"] for s in cfg.model_specs()] == ["pop", "bpr"]
    assert cfg.train.seeds == [0, 1, 2]
    assert cfg.eval.ks == [10, 20]
    assert cfg.eval.n_negatives == 0


def test_dotted_overrides(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["eval.ks=[5]", "train.seeds=[7]", "split.ratio=0.5",
                                              "model.epochs=9", "models.0.name=itemknn"])
    assert cfg.eval.ks == [5] and cfg.train.seeds == [7] and cfg.split.ratio == 0.5
    specs = cfg.model_specs()
    assert specs[1]["epochs"] == 9  # broadcast only to models that have the field
    assert "epochs" not in specs[0] and specs[0]["name"] == "itemknn"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="eval.topk"):
        load_config(write(tmp_path, BASE + "\n[eval]\ntopk = 3\n"))
    with pytest.raises(ConfigError, match="no model in this experiment has 'nonsense'"):
        load_config(write(tmp_path, BASE), ["model.nonsense=1"])


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[data\n"))
    with pytest.raises(ConfigError, match="key=value"):
        load_config(write(tmp_path, BASE), ["eval.ks"])
    no_model = BASE.split("[[models]]")[0]
    with pytest.raises(ConfigError, match="model"):
        load_config(write(tmp_path, no_model))


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSREC_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path / "c"))
    assert data_dir() == tmp_path / "d"
    assert cache_dir() == tmp_path / "c"


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.toml"))
    assert files
    for f in files:
        cfg = load_config(f)
        assert cfg.model_specs()
