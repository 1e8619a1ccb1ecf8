"""crossrec.paths is the bottom floor: it imports nothing of crossrec, and the encoders locate
files through it, never through crossrec.config."""

import ast
from pathlib import Path

import crossrec.config as config
import crossrec.paths as paths

SRC = Path(paths.__file__).parent


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_paths_imports_nothing_of_crossrec() -> None:
    assert not {m for m in imported(SRC / "paths.py") if m.split(".")[0] == "crossrec"}


def test_encoders_do_not_import_the_config() -> None:
    files = sorted((SRC / "encoders").rglob("*.py"))
    assert files
    bad = [f.name for f in files if "crossrec.config" in imported(f)]
    assert not bad


def test_config_reexports_the_locations(monkeypatch, tmp_path) -> None:
    assert config.data_dir is paths.data_dir and config.cache_dir is paths.cache_dir
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))
    assert paths.cache_dir() == tmp_path
