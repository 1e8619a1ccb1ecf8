"""Bad input, every way in: each case must end with exit code 2, one line on stderr that
names the problem, no traceback anywhere, and no file changed or created (no OUT left behind).

Cases: raw data through both prepare engines, experiment configs (TOML, unknown keys, model
tables, metrics, ks, device, --set paths) and command-line arguments.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.testing import make_two_domain

runner = CliRunner()

INTER = b"user_id,item_id,domain,rating,timestamp\na,m1,movies,5,1\nb,m1,movies,4,2\n" \
        b"a,b1,books,3,3\nb,b2,books,2,4\n"
ITEMS = b"item_id,domain,title\nm1,movies,The Movie\nb1,books,A Book\n"


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def check_refused(args: list[str], watched: list[Path], out: Path | None,
                  expect: str) -> str:
    """Run the CLI; assert the clean refusal and that nothing under ``watched`` changed."""
    before = [snapshot(w) for w in watched]
    r = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:"), lines[0]
    assert expect.lower() in lines[0].lower(), lines[0]
    assert [snapshot(w) for w in watched] == before
    if out is not None:
        assert not out.exists(), f"{out} left behind"
    return lines[0]


# --- prepare: raw data, both engines ------------------------------------------------------
# (files to write, extra arguments, text the message must contain); {d} is the case directory
DATA_CASES = {
    "not-utf8-interactions": ({"i.csv": INTER + b"c,m\xff1,movies,1,5\n"}, [],
                              "i.csv, line 6, column 4: not UTF-8"),
    "not-utf8-items": ({"i.csv": INTER, "items.csv": ITEMS + b"b2,bo\xe9ks,x\n"},
                       ["-o", "items={d}/items.csv"], "items.csv, line 4, column 6: not UTF-8"),
    "not-utf8-header": ({"i.csv": b"user_id,item\xff_id,domain\na,m1,movies\n"}, [],
                        "i.csv, line 1"),
    "extra-field": ({"i.csv": INTER + b"c,m1,movies,1,5,extra\n"}, [],
                    "i.csv, line 6: expected 5 fields"),
    "missing-field": ({"i.csv": INTER + b"c,m1\n"}, [], "i.csv, line 6: expected 5 fields"),
    "malformed-second-line": ({"i.csv": b"user_id,item_id,domain\na,m1,movies,x\n"
                                        b"b,m1,movies\n"}, [], "i.csv, line 2: expected 3"),
    "rating-text": ({"i.csv": INTER.replace(b",4,2", b",four,2")}, [],
                    "i.csv, line 3: rating 'four' is not a number"),
    "rating-inf": ({"i.csv": INTER.replace(b",4,2", b",inf,2")}, [],
                   "i.csv, line 3: rating 'inf' is not a finite number"),
    "rating-minus-infinity": ({"i.csv": INTER.replace(b",3,3", b",-Infinity,3")}, [],
                              "i.csv, line 4: rating '-Infinity' is not a finite number"),
    "timestamp-1e30": ({"i.csv": INTER.replace(b",4,2", b",4,1e30")}, [],
                       "i.csv, line 3: timestamp '1e30' is out of range"),
    "timestamp-inf": ({"i.csv": INTER.replace(b",4,2", b",4,inf")}, [],
                      "i.csv, line 3: timestamp 'inf' is out of range"),
    "timestamp-text": ({"i.csv": INTER.replace(b",4,2", b",4,yesterday")}, [],
                       "i.csv, line 3: timestamp 'yesterday' is neither a number nor"),
    "item-in-wrong-domain": ({"i.csv": INTER, "items.csv": ITEMS.replace(b"m1,movies",
                                                                          b"m1,books")},
                             ["-o", "items={d}/items.csv"],
                             "items.csv, line 2: item 'm1' is listed in domain 'books'"),
    "missing-column": ({"i.csv": b"user_id,item,domain\na,m1,movies\n"}, [],
                       "missing column 'item_id'"),
    "items-missing-column": ({"i.csv": INTER, "items.csv": b"id,domain\nm1,movies\n"},
                             ["-o", "items={d}/items.csv"], "missing column 'item_id'"),
    "empty-file": ({"i.csv": b""}, [], "i.csv: the file is empty"),
    "header-only": ({"i.csv": b"user_id,item_id,domain\n"}, [], "no data rows"),
    "bad-part": ({"i.csv": b"user_id,item_id,domain,part\na,m1,movies,tset\n"}, [],
                 "part 'tset' is not one of train, valid, test"),
    "k-core-empties-a-domain": ({"i.csv": INTER}, ["--k-core", "5"],
                                "has no interactions after 5-core filtering"),
    "missing-items-file": ({"i.csv": INTER}, ["-o", "items={d}/nope.csv"], "nope.csv"),
    "unknown-extension": ({"i.xyz": INTER}, [], "i.xyz"),
    "unknown-option": ({"i.csv": INTER}, ["-o", "colour=blue"], "colour"),
    "option-without-value": ({"i.csv": INTER}, ["-o", "items"], "key=value"),
}


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
@pytest.mark.parametrize("case", DATA_CASES)
def test_prepare_refuses_bad_data(tmp_path: Path, engine: str, case: str) -> None:
    files, extra, expect = DATA_CASES[case]
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    src = next(iter(files))
    out = tmp_path / "out"
    args = ["prepare", "tabular", str(tmp_path / src), str(out), "--engine", engine,
            *[a.replace("{d}", str(tmp_path)) for a in extra]]
    check_refused(args, [tmp_path], out, expect)


def test_both_engines_give_the_same_message(tmp_path: Path) -> None:
    """The DuckDB engine's messages are the memory engine's, word for word, on these cases."""
    for case in ("not-utf8-interactions", "not-utf8-items", "extra-field", "rating-inf",
                 "timestamp-1e30", "item-in-wrong-domain", "rating-text"):
        files, extra, _ = DATA_CASES[case]
        for name, content in files.items():
            (tmp_path / name).write_bytes(content)
        said = set()
        for engine in ("memory", "duckdb"):
            r = runner.invoke(app, ["prepare", "tabular", str(tmp_path / next(iter(files))),
                                    str(tmp_path / "out"), "--engine", engine,
                                    *[a.replace("{d}", str(tmp_path)) for a in extra]])
            said.add(r.stderr.strip())
        assert len(said) == 1, (case, said)


PREPARE_ARGS = {
    "unknown-engine": (["--engine", "spark"], "--engine 'spark'"),
    "duckdb-with-split": (["--engine", "duckdb", "-o", "split=s.csv"], "split"),
    "missing-relative-path": (None, "no-such-dir/i.csv: no such file or directory"),
}


@pytest.mark.parametrize("case", PREPARE_ARGS)
def test_prepare_refuses_bad_arguments(tmp_path: Path, case: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "i.csv").write_bytes(INTER)
    extra, expect = PREPARE_ARGS[case]
    src = "i.csv" if extra is not None else "no-such-dir/i.csv"
    line = check_refused(["prepare", "tabular", src, "out", *(extra or [])], [tmp_path],
                         tmp_path / "out", expect)
    if extra is None:  # the path typed, not joined under the data directory
        assert line.startswith("error: no-such-dir/i.csv")


def test_prepare_refuses_an_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "i.csv").write_bytes(INTER)
    check_refused(["prepare", "csvish", str(tmp_path / "i.csv"), str(tmp_path / "out")],
                  [tmp_path], tmp_path / "out", "unknown data format 'csvish'")


# --- configs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset, a good experiment on it, and a trained bundle (pop)."""
    root = tmp_path_factory.mktemp("world")
    make_two_domain(n_users=50, n_items=(25, 20), n_overlap=30, seed=2).save(root / "data")
    (root / "good.toml").write_text(GOOD.format(data=(root / "data").as_posix()))
    r = runner.invoke(app, ["train", str(root / "good.toml"), "--out", str(root / "run")])
    assert r.exit_code == 0, r.output
    return root


GOOD = """name = "adv"
[data]
prepared = "{data}"
[split]
kind = "cold_start_users"
source = ["source"]
target = "target"
ratio = 0.3
[train]
device = "cpu"
[eval]
ks = [5]
metrics = ["recall", "ndcg"]
[[models]]
name = "pop"
[[models]]
name = "itemknn"
[[models]]
name = "pop"
"""

# (edit of the good config: (old, new), extra arguments, text the message must contain)
CONFIG_CASES = {
    "toml-syntax": (("ratio = 0.3", "ratio = = 0.3"), [], "adv.toml"),
    "toml-unclosed-table": (("[eval]", "[eval"), [], "adv.toml"),
    "unknown-top-level-key": (('name = "adv"', 'name = "adv"\ncolour = "blue"'), [], "colour"),
    "unknown-train-key": (('device = "cpu"', 'device = "cpu"\nepochz = 3'), [], "epochz"),
    "device-cdua": (('device = "cpu"', 'device = "cdua"'), [], "cdua"),
    "metric-ndgc": (('["recall", "ndcg"]', '["recall", "ndgc"]'), [], "ndgc"),
    "ks-zero-negative": (("ks = [5]", "ks = [0, -1]"), [], "ks"),
    "ks-not-a-list": (("ks = [5]", 'ks = "five"'), [], "ks"),
    "split-ratio-text": (("ratio = 0.3", 'ratio = "a third"'), [], "ratio"),
    "set-unknown-model-label": (None, ["--set", "models.x.name=pop"], "models"),
    "set-model-index-out-of-range": (None, ["--set", "models.5.name=pop"], "models"),
    "set-unknown-key": (None, ["--set", "train.epochz=3"], "epochz"),
    "set-without-equals": (None, ["--set", "train.device"], "train.device"),
    "set-bad-device": (None, ["--set", "train.device=cdua"], "cdua"),
    "set-misspelt-model": (None, ["--set", "models.2.name=itemknnn"], "itemknnn"),
    "missing-prepared-data": (("prepared = ", 'prepared = "/no/such/data" #'), [], "/no/such"),
}
CONFIG_CASES["model-name-misspelt-third-table"] = (None, ["--misspell-third"], "itemknnn")
CONFIG_CASES["model-key-misspelt-third-table"] = (
    None, ["--third", 'name = "itemknn"\nneighbours = 5'], "neighbours")


def _config(world: Path, tmp_path: Path, edit, extra: list[str]) -> tuple[Path, list[str]]:  # noqa: ANN001
    text = (world / "good.toml").read_text()
    if "--misspell-third" in extra:
        head, _, _ = text.rpartition('name = "pop"')
        text = head + 'name = "itemknnn"\n'
        extra = []
    elif "--third" in extra:
        head, _, _ = text.rpartition('name = "pop"')
        text = head + extra[1] + "\n"
        extra = []
    elif edit is not None:
        old, new = edit
        assert old in text, old
        text = text.replace(old, new, 1)
    cfg = tmp_path / "adv.toml"
    cfg.write_text(text)
    return cfg, extra


BENCHMARK_CASES = ["model-name-misspelt-third-table", "model-key-misspelt-third-table",
                   "metric-ndgc", "toml-syntax"]


@pytest.mark.parametrize(("command", "case"), [("train", c) for c in CONFIG_CASES]
                         + [("benchmark", c) for c in BENCHMARK_CASES])
def test_bad_configs_are_refused_before_any_work(world: Path, tmp_path: Path, case: str,
                                                 command: str) -> None:
    edit, extra, expect = CONFIG_CASES[case]
    cfg, extra = _config(world, tmp_path, edit, extra)
    out = tmp_path / "out"
    args = [command, str(cfg), "--out", str(out), *extra]
    line = check_refused(args, [tmp_path, world], out, expect)
    if case.endswith("third-table"):
        assert "models" in line  # names the table


def test_missing_config_file(tmp_path: Path) -> None:
    check_refused(["train", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "out")],
                  [tmp_path], tmp_path / "out", "nope.toml")


def test_train_model_index_out_of_range(world: Path, tmp_path: Path) -> None:
    check_refused(["train", str(world / "good.toml"), "--model", "7", "--out",
                   str(tmp_path / "out")], [tmp_path, world], tmp_path / "out", "7")


# --- other commands -----------------------------------------------------------------------
CLI_CASES = {
    "recommend-k-zero": (["recommend", "{bundle}", "--user", "u0", "-k", "0"], "-k"),
    "recommend-k-negative": (["recommend", "{bundle}", "--user", "u0", "-k", "-5"], "-k"),
    "recommend-k-not-a-number": (["recommend", "{bundle}", "--user", "u0", "-k", "ten"], "-k"),
    "unknown-command": (["fly"], "fly"),
    "recommend-unknown-domain": (["recommend", "{bundle}", "--user", "u0", "--domain",
                                  "films"], "films"),
    "recommend-missing-bundle": (["recommend", "{tmp}/nope", "--user", "u0"], "nope"),
    "recommend-not-a-bundle": (["recommend", "{tmp}", "--user", "u0"], "bundle"),
    "evaluate-missing-bundle": (["evaluate", "{tmp}/nope"], "nope"),
    "stats-missing-directory": (["data", "stats", "{tmp}/nope"], "nope"),
    "stats-not-a-dataset": (["data", "stats", "{tmp}"], "meta.json"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_command_line_arguments(world: Path, tmp_path: Path, case: str) -> None:
    args, expect = CLI_CASES[case]
    (tmp_path / "notes.txt").write_text("not a bundle")
    args = [a.replace("{bundle}", str(world / "run" / "bundle")).replace("{tmp}", str(tmp_path))
            for a in args]
    check_refused(args, [tmp_path, world], None, expect)
