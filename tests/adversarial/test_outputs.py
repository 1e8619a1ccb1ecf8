"""Outputs never destroy anything: `prepare` and `train` refuse an OUT that holds something
else (a file, a foreign non-empty directory, an earlier run) unless --overwrite, with one line
on stderr, exit code 2, no traceback, and nothing outside OUT changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrec.atomic import atomic_directory, atomic_file, check_output_dir
from crossrec.cli import app
from crossrec.testing import make_two_domain

runner = CliRunner()


def invoke(*args: str):  # noqa: ANN201
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for a directory)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def refused(r, path: Path) -> str:  # noqa: ANN001
    """Assert a clean refusal naming ``path``: exit 2, one stderr line, no traceback."""
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:") and str(path) in lines[0] and "--overwrite" in lines[0]
    return lines[0]


@pytest.fixture()
def good_csv(tmp_path: Path) -> Path:
    csv = tmp_path / "good.csv"
    csv.write_text("user_id,item_id,domain\na,x,books\na,y,books\nb,x,books\nb,z,music\n"
                   "c,y,music\n")
    return csv


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_prepare_refuses_a_foreign_directory(tmp_path: Path, good_csv: Path, engine: str) -> None:
    out = tmp_path / "outs" / "precious"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    before = snapshot(tmp_path)
    r = invoke("prepare", "tabular", str(good_csv), str(out), "--engine", engine)
    assert "not a crossrec dataset" in refused(r, out)
    assert snapshot(tmp_path) == before  # notes.txt, and no leftovers beside OUT


def test_prepare_refuses_a_file_then_overwrite_replaces_it(tmp_path: Path,
                                                           good_csv: Path) -> None:
    victim = tmp_path / "outs" / "victim.csv"
    victim.parent.mkdir()
    victim.write_text("keep me")
    before = snapshot(tmp_path)
    refused(invoke("prepare", "tabular", str(good_csv), str(victim)), victim)
    assert snapshot(tmp_path) == before
    r = invoke("prepare", "tabular", str(good_csv), str(victim), "--overwrite")
    assert r.exit_code == 0, r.output
    assert (victim / "meta.json").is_file()
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.csv"]  # no .old left


def test_prepare_twice_replaces_its_own_dataset(tmp_path: Path, good_csv: Path) -> None:
    out = tmp_path / "ds"
    assert invoke("prepare", "tabular", str(good_csv), str(out)).exit_code == 0
    good_csv.write_text("user_id,item_id,domain\na,x,books\nb,z,music\n")
    r = invoke("prepare", "tabular", str(good_csv), str(out))  # its own kind: swapped
    assert r.exit_code == 0, r.output
    assert '"interactions": 2' in (out / "meta.json").read_text()
    (out / "notes.txt").write_text("x")  # still a dataset, with a foreign file inside
    assert invoke("prepare", "tabular", str(good_csv), str(out), "--overwrite").exit_code == 0
    assert not (out / "notes.txt").exists()


def test_prepare_into_an_empty_directory(tmp_path: Path, good_csv: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert invoke("prepare", "tabular", str(good_csv), str(out)).exit_code == 0
    assert (out / "meta.json").is_file()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared dataset and an experiment training ``pop`` on it."""
    root = tmp_path_factory.mktemp("train")
    make_two_domain(n_users=60, n_items=(30, 25), n_overlap=40, seed=1).save(root / "data")
    cfg = root / "exp.toml"
    cfg.write_text(f"""
name = "outs"
[data]
prepared = "{(root / 'data').as_posix()}"
[split]
kind = "cold_start_users"
source = ["source"]
target = "target"
ratio = 0.3
[eval]
ks = [5]
[[models]]
name = "pop"
""")
    return cfg


def test_train_without_out_never_reuses_a_directory(tmp_path: Path, config: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        r = invoke("train", str(config))
        assert r.exit_code == 0, r.output
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(p.name.startswith("train-outs-") for p in runs)
    assert all((p / "bundle" / "meta.json").is_file() for p in runs)
    assert f"run directory: runs/{runs[1].name}" in r.output
    r = invoke("train", str(config), "--resume")  # continues the newest run
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_train_refuses_an_existing_out(tmp_path: Path, config: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    before = snapshot(tmp_path)
    refused(invoke("train", str(config), "--out", str(foreign)), foreign)
    refused(invoke("train", str(config), "--out", str(foreign), "--resume"), foreign)
    assert snapshot(tmp_path) == before

    run = tmp_path / "run"
    assert invoke("train", str(config), "--out", str(run)).exit_code == 0
    before = snapshot(tmp_path)
    assert "--resume" in refused(invoke("train", str(config), "--out", str(run)), run)
    assert snapshot(tmp_path) == before
    assert invoke("train", str(config), "--out", str(run), "--resume").exit_code == 0
    r = invoke("train", str(config), "--out", str(foreign), "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (foreign / "notes.txt").exists() and (foreign / "metrics.json").is_file()


def test_files_and_directories_are_group_readable(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_file(tmp_path / "a.txt", lambda p: p.write_text("x"))
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "f").write_text("y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


def test_check_output_dir_rules(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new")  # nothing there
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    check_output_dir(tmp_path / "full", is_own=lambda p: (p / "x").is_file())
    check_output_dir(tmp_path / "full", overwrite=True)
    with pytest.raises(Exception, match="not empty"):
        check_output_dir(tmp_path / "full")
    with pytest.raises(Exception, match="not a directory"):
        check_output_dir(tmp_path / "full" / "x")


def test_failed_train_leaves_no_empty_run_directory(tmp_path: Path, config: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace('prepared = "', 'prepared = "/no/such'))
    r = invoke("train", str(bad))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert not list(tmp_path.glob("runs/train-*"))
