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
    cfg = load_config(write(tmp_path, BASE), ["eval.ks=[5]", "train.seeds=[7]",
                                              "split.min_interactions=2",
                                              "model.epochs=9", "models.0.name=itemknn"])
    assert cfg.eval.ks == [5] and cfg.train.seeds == [7] and cfg.split.min_interactions == 2
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


THIRD = BASE + """
[[models]]
name = "itemknn"
label = "knn-all"
{line}
"""


def test_a_misspelt_key_in_the_third_model_table_fails_at_load(tmp_path, monkeypatch):
    import crossrec.models as models

    built = []
    monkeypatch.setattr(models, "build_model", lambda spec: built.append(spec))
    path = write(tmp_path, THIRD.format(line="nieghbors = 3"))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "models[2]" in msg and "knn-all" in msg
    assert "nieghbors" in msg and "did you mean 'neighbors'" in msg
    assert "models[0]" not in msg and "models[1]" not in msg and not built
    with pytest.raises(ConfigError, match=r"models\[2\] \(itemknn, label 'knn-all'\): neighbors"):
        load_config(write(tmp_path, THIRD.format(line='neighbors = "many"')))
    assert load_config(write(tmp_path, THIRD.format(line="neighbors = 3"))).models[2]


def test_a_misspelt_model_name_fails_at_load(tmp_path):
    text = THIRD.format(line="").replace('name = "itemknn"', 'name = "itemkn"')
    with pytest.raises(ConfigError, match=r"exp.toml: .*models\[2\] \(label 'knn-all'\): "
                                          r"unknown model 'itemkn'; did you mean 'itemknn'"):
        load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"model: unknown model 'nope'"):
        load_config(write(tmp_path, BASE.split("[[models]]")[0] + '[model]\nname = "nope"\n'))
    with pytest.raises(ConfigError, match=r"models\[0\] \(label 'p'\): no 'name'"):
        load_config(write(tmp_path, BASE.replace('name = "pop"', 'label = "p"')))


@pytest.mark.parametrize("override, match", [
    ("eval.metrics=['ndgc']", r"eval.metrics: unknown metric\(s\) \['ndgc'\]"),
    ("eval.metrics=[]", "eval.metrics: give at least one metric"),
    ("eval.ks=[10, 0]", "eval.ks: cut-offs must be positive"),
    ("train.device='gpu'", "train.device: 'gpu' is not a torch device"),
    ("train.early_stopping='ndcg@ten'", "train.early_stopping: 'ndcg@ten' is not"),
    ("train.early_stopping='ndgc@10'", "train.early_stopping: 'ndgc@10' is not"),
    ("models.x.name=pop", r"--set models.x.name: models is a list of 2 table\(s\); 'x'"),
    ("models.5.name=pop", r"--set models.5.name: .*'5' is not an index of it \(0 to 1\)"),
    ("data.path.x=1", "--set data.path.x: data.path is str 'x.csv', not a table"),
    ("split.ratio=0.5", r"split.ratio: not a setting of split kind 'leave_one_out' \(target, "),
    ("split.kind='cold_start_users'", None),
    ("split.kind='cold_users'", "split: Input tag 'cold_users' found using 'kind'"),
    ("split.min_interactions=0", "split.min_interactions: Input should be greater than"),
])
def test_bad_settings_fail_at_load(tmp_path, override, match):
    if match is None:  # a good setting: listed here as the partner of the bad ones
        load_config(write(tmp_path, BASE), [override])
        return
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, BASE), [override])


@pytest.mark.parametrize("kind, overrides, match", [
    ("cold_start_users", ["split.ratio=1.0"], "split.ratio: Input should be less than 1"),
    ("cold_start_users", ["split.ratio=0"], "split.ratio: Input should be greater than 0"),
    ("cold_start_items", ["split.valid_share=1.5"], "split.valid_share: Input should be less"),
    ("new_domain", ["split.ratio=0.2"], "split.ratio: not a setting of split kind 'new_domain'"),
    ("temporal", ["split.valid_frac=0.5", "split.test_frac=0.5"],
     r"valid_frac \+ test_frac must be < 1"),
    ("temporal", ["split.n_shots=2"], "split.n_shots: not a setting of split kind 'temporal'"),
    ("predefined", ["split.seed_follows_run=false"], "split.seed_follows_run: not a setting"),
])
def test_split_kinds_check_their_own_keys(tmp_path, kind, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, BASE), [f"split.kind='{kind}'", *overrides])


def test_split_kinds_types_and_seeding(tmp_path):
    from crossrec.config import ColdStartUsersSplit, TemporalSplit

    users = load_config(write(tmp_path, BASE), ["split.kind='cold_start_users'",
                                                "split.ratio=0.3"]).split
    assert isinstance(users, ColdStartUsersSplit) and users.ratio == 0.3
    assert users.redrawn_per_seed and users.split_seed(4) == 4
    fixed = users.model_copy(update={"seed_follows_run": False})
    assert not fixed.redrawn_per_seed and fixed.split_seed(4) == 0
    cut = load_config(write(tmp_path, BASE), ["split.kind='temporal'"]).split
    assert isinstance(cut, TemporalSplit) and not cut.redrawn_per_seed
    assert "ratio" not in cut.model_dump()


@pytest.mark.parametrize("override", ["train.device='cuda'", "train.device='cuda:1'",
                                      "train.device='mps'", "train.early_stopping='mrr'",
                                      "train.early_stopping='recall@20'", "eval.ks=[1, 50]"])
def test_good_settings_load(tmp_path, override):
    load_config(write(tmp_path, BASE), [override])
