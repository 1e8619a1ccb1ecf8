"""The crossrec command end to end on small data: prepare, stats, train, evaluate, recommend,
benchmark (table, report.md, PNG, JSON rows)."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.testing import make_two_domain

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic"
    make_two_domain(seed=3).save(path)
    return path


def experiment(tmp_path, prepared, models: str) -> str:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""
name = "cli"
[data]
prepared = "{prepared.as_posix()}"
[split]
kind = "cold_start_users"
source = ["source"]
target = "target"
ratio = 0.3
[train]
seeds = [0, 1]
[eval]
ks = [5, 10]
report_group = "cold"
{models}
""")
    return str(cfg)


MODELS = """
[[models]]
name = "pop"
[[models]]
name = "itemknn"
train_on = "all"
[[models]]
name = "bpr"
train_on = "all"
epochs = 2
"""


def test_prepare_and_stats(tmp_path):
    inter = tmp_path / "inter.csv"
    pd.DataFrame({"user_id": ["a", "a", "b", "b", "c", "a"],
                  "item_id": ["x", "y", "x", "z", "y", "x"],
                  "domain": ["books", "books", "books", "music", "music", "books"]}
                 ).to_csv(inter, index=False)
    out = tmp_path / "ds"
    r = invoke("prepare", "tabular", str(inter), str(out))
    assert r.exit_code == 0, r.output
    assert "duplicate" in r.output and "books" in r.output
    r = invoke("data", "stats", str(out))
    assert r.exit_code == 0, r.output
    assert "books & music" in r.output


def test_prepare_bad_input_is_a_clear_error(tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item\na,x\n")
    r = invoke("prepare", "tabular", str(inter), str(tmp_path / "ds"))
    assert r.exit_code == 2
    assert "missing column 'item_id'" in r.output and "inter.csv" in r.output
    assert not (tmp_path / "ds").exists()
    r = invoke("prepare", "nosuchformat", str(inter), str(tmp_path / "ds"))
    assert r.exit_code == 2 and "unknown data format" in r.output


def test_train_evaluate_recommend(tmp_path, prepared):
    cfg = experiment(tmp_path, prepared, MODELS)
    out = tmp_path / "run"
    r = invoke("train", cfg, "--model", "1", "--out", str(out))
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["protocol"] == "full"
    r = invoke("evaluate", str(out / "bundle"))
    assert r.exit_code == 0, r.output
    assert "ndcg@10" in r.output
    r = invoke("recommend", str(out / "bundle"), "--user", "u0", "--user", "ghost", "-k", "3")
    assert r.exit_code == 0, r.output
    assert "(model)" in r.output and "popular_fallback" in r.output


def test_benchmark_json_and_report(tmp_path, prepared):
    cfg = experiment(tmp_path, prepared, MODELS)
    js = tmp_path / "rows.json"
    out = tmp_path / "report"
    r = invoke("benchmark", cfg, "--json", str(js), "--out", str(out))
    assert r.exit_code == 0, r.output
    payload = json.loads(js.read_text())
    rows = payload["rows"]
    assert {"model", "group", "metric", "k", "mean", "std", "n_users", "seeds"} <= set(rows[0])
    assert {r["model"] for r in rows} == {"pop", "itemknn(train_on=all)",
                                          "bpr(train_on=all,epochs=2)"}
    assert all(r["seeds"] == 2 for r in rows)
    assert (out / "report.md").exists() and list(out.glob("*.png"))
    assert payload["config"]["protocol"] == "full"
    cold = [r for r in rows if r["group"] == "cold" and r["metric"] == "recall" and r["k"] == 10]
    by_model = {r["model"]: r["mean"] for r in cold}
    assert by_model["itemknn(train_on=all)"] > by_model["pop"]  # the known answer


def test_config_errors_are_clear(tmp_path, prepared):
    cfg = experiment(tmp_path, prepared, '[[models]]\nname = "nosuch"\n')
    r = invoke("train", cfg)
    assert r.exit_code == 2 and "unknown model 'nosuch'" in r.output
    cfg = experiment(tmp_path, prepared, '[[models]]\nname = "bpr"\nepochz = 1\n')
    r = invoke("train", cfg)
    assert r.exit_code == 2 and "epochz" in r.output


def test_benchmark_several_configs(tmp_path, prepared):
    one = experiment(tmp_path, prepared, '[[models]]\nname = "pop"\n')
    two_path = tmp_path / "two.toml"
    two_path.write_text(open(one).read().replace('name = "cli"', 'name = "cli2"'))
    js = tmp_path / "rows.json"
    r = invoke("benchmark", one, str(two_path), "--out", str(tmp_path / "rep"), "--json", str(js),
               "--seeds", "0")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "cli" / "report.md").exists()
    assert (tmp_path / "rep" / "cli2" / "report.md").exists()
    assert json.loads((tmp_path / "rows-cli2.json").read_text())["rows"][0]["seeds"] == 1


def test_benchmark_tests_best_cross_model_against_best_baseline(tmp_path, prepared):
    models = MODELS.replace('name = "bpr"\ntrain_on = "all"\nepochs = 2',
                            'name = "cmf"\nlabel = "cmf"\nepochs = 2')
    out = tmp_path / "report"
    r = invoke("benchmark", experiment(tmp_path, prepared, models), "--out", str(out),
               "--seeds", "0")
    assert r.exit_code == 0, r.output
    payload = json.loads((out / "results.json").read_text())
    (cross,) = payload["config"]["paired_cross_vs_baseline"]
    rows = {(x["model"], x["metric"], x["k"]): x["mean"] for x in payload["rows"]
            if x["group"] == "cold"}
    best_base = max(("pop", "itemknn(train_on=all)"), key=lambda m: rows[(m, "ndcg", 10)])
    assert (cross["best"], cross["other"], cross["metric"]) == ("cmf", best_base, "ndcg@10")
    assert cross["n"] > 0 and 0.0 <= cross["p_wilcoxon"] <= 1.0
    report = (out / "report.md").read_text()
    assert "best cross-domain model vs best baseline (ndcg@10, cold users)" in report


def test_train_and_evaluate_with_rating_metrics(tmp_path, prepared):
    from crossrec.data.dataset import MultiDomainDataset

    data = MultiDomainDataset.load(prepared)
    inter = data.interactions.copy()
    inter["rating"] = (1 + inter["item"] % 5).astype("float32")  # each item has its rating
    rated = tmp_path / "rated"
    data.with_interactions(inter).save(rated)
    cfg = experiment(tmp_path, rated, '[model]\nname = "cmf"\nobjective = "mse"\nepochs = 3\n')
    text = open(cfg).read().replace("ks = [5, 10]", 'metrics = ["mae", "rmse"]')
    open(cfg, "w").write(text.replace("[train]", '[train]\nearly_stopping = "rmse"'))
    r = invoke("train", cfg, "--out", str(tmp_path / "run"))
    assert r.exit_code == 0, r.output
    assert "ratings" in r.output and "rmse" in r.output
    r = invoke("evaluate", str(tmp_path / "run" / "bundle"))
    assert r.exit_code == 0, r.output
    assert "rmse" in r.output and "mae" in r.output


def test_benchmark_only_some_models(tmp_path, prepared):
    cfg = experiment(tmp_path, prepared, MODELS)
    js = tmp_path / "rows.json"
    r = invoke("benchmark", cfg, "--only", "pop,bpr", "--set", "model.epochs=1", "--seeds", "0",
               "--json", str(js), "--out", str(tmp_path / "rep"))
    assert r.exit_code == 0, r.output
    models = {row["model"] for row in json.loads(js.read_text())["rows"]}
    assert models == {"pop", "bpr(train_on=all,epochs=1)"}
    r = invoke("benchmark", cfg, "--only", "nosuch", "--out", str(tmp_path / "rep2"))
    assert r.exit_code == 2 and "--only nosuch" in r.output and "pop" in r.output


def test_evaluate_follows_the_next_item_protocol(tmp_path, prepared):
    cfg = experiment(tmp_path, prepared, '[model]\nname = "pop"\n')
    text = open(cfg).read().replace("[eval]", '[eval]\nprotocol = "next_item"\ncandidates = "all"')
    open(cfg, "w").write(text)
    out = tmp_path / "run"
    r = invoke("train", cfg, "--out", str(out))
    assert r.exit_code == 0, r.output
    trained = json.loads((out / "metrics.json").read_text())["test"]
    assert trained["protocol"] == "next-item/all"
    r = invoke("evaluate", str(out / "bundle"))
    assert r.exit_code == 0, r.output
    assert "next-item/all" in r.output


def test_model_chosen_by_label_name_or_index(tmp_path, prepared):
    from crossrec.cli import _model_index
    from crossrec.config import load_config

    cfg = load_config(experiment(tmp_path, prepared, MODELS))
    assert _model_index(cfg, "itemknn(train_on=all)") == 1
    assert _model_index(cfg, "bpr") == 2 and _model_index(cfg, "0") == 0
    out = tmp_path / "run"
    r = invoke("train", str(tmp_path / "exp.toml"), "--model", "itemknn(train_on=all)",
               "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "itemknn(train_on=all) on " in r.output  # the table title names the model
    r = invoke("train", str(tmp_path / "exp.toml"), "--model", "ease")
    assert r.exit_code == 2 and "no model table of cli has that name or label" in r.output
    assert "itemknn(train_on=all)" in r.output
    r = invoke("train", str(tmp_path / "exp.toml"), "--model", "7")
    assert r.exit_code == 2 and "3 model table(s)" in r.output


def test_help_renders_arguments_without_markup():
    from crossrec.data.sources import READERS

    r = invoke("prepare", "--help")
    assert r.exit_code == 0
    assert all(name in r.output for name in READERS)  # FORMAT's valid values
    assert "Output dataset directory" in r.output  # an argument's help
    for command in ("train", "benchmark", "serve", "recommend", "evaluate", "update"):
        r = invoke(command, "--help")
        assert r.exit_code == 0 and "``" not in r.output and "`" not in r.output, command
    r = invoke("serve", "--help")
    assert "--processes" in r.output and "--workers" not in r.output


def test_version():
    from crossrec import __version__

    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"crossrec {__version__}"


def test_unexpected_error_is_one_line_unless_debug(tmp_path, monkeypatch, capsys):
    import crossrec.cli as cli

    def boom(*args, **kwargs):
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli, "load_config", boom)
    with pytest.raises(SystemExit) as e:
        app(["train", str(tmp_path / "x.toml")], prog_name="crossrec")
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "RuntimeError: something broke" in err
    assert "run with --debug for the traceback" in err
    with pytest.raises(RuntimeError, match="something broke"):
        app(["--debug", "train", str(tmp_path / "x.toml")], prog_name="crossrec")
    assert app.pretty_exceptions_show_locals is False


def test_one_seeds_option(tmp_path, prepared):
    cfg = experiment(tmp_path, prepared, "[[models]]\nname = \"pop\"")
    r = invoke("train", cfg, "--seeds", "1", "--out", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a" / "bundle" / "config.json").read_text())["seed"] == 1
    r = invoke("train", cfg, "--seed", "1", "--out", str(tmp_path / "b"))  # the old spelling
    assert r.exit_code == 0, r.output
    r = invoke("train", cfg, "--seeds", "0,1", "--out", str(tmp_path / "c"))
    assert r.exit_code == 2 and "train fits one model with one seed" in r.output
    r = invoke("benchmark", cfg, "--seeds", "0,x", "--out", str(tmp_path / "d"))
    assert r.exit_code == 2 and "--seeds '0,x': expected comma-separated" in r.output
    r = invoke("benchmark", cfg, "--seeds", "2", "--out", str(tmp_path / "e"))
    assert r.exit_code == 0, r.output
    runs = [json.loads(p.read_text()) for p in (tmp_path / "e" / "runs").glob("*/run.json")]
    assert [r["seed"] for r in runs] == [2]
    assert "--seed " not in invoke("train", "--help").output  # the alias stays hidden


def test_data_errors_name_the_prepared_key(tmp_path, prepared):
    for data in ('format = "prepared"\npath = "x"', f'path = "{prepared.as_posix()}"'):
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f"""
[data]
{data}
[split]
kind = "cold_start_users"
target = "target"
[[models]]
name = "pop"
""")
        r = invoke("benchmark", str(cfg), "--out", str(tmp_path / "out"))
        assert r.exit_code == 2, r.output
        assert "to use a prepared dataset, set [data] prepared = DIR" in r.output, r.output


def test_split_target_only_optional_for_next_item(tmp_path, prepared):
    from crossrec.config import load_config
    from crossrec.errors import ConfigError

    base = {"data": {"prepared": "x"}, "split": {"kind": "predefined"},
            "models": [{"name": "pop"}]}
    cfg = load_config(base={**base, "eval": {"protocol": "next_item"}})
    assert cfg.split.target is None
    with pytest.raises(ConfigError, match="split.target: give the target domain"):
        load_config(base=base)
    with pytest.raises(ConfigError, match="split.target"):
        load_config(base={**base, "split": {"kind": "leave_one_out"},
                          "eval": {"protocol": "next_item"}})
