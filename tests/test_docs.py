"""The front door stays short and the docs cover every model and every CLI command.

(`mkdocs build --strict`, which checks links and docstring references, runs in `make test`.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))


def test_every_registered_model_is_documented() -> None:
    from crossrec.models import MODELS

    text = _docs_text()
    missing = [name for name in MODELS if f"`{name}`" not in text]
    assert not missing, f"models without a docs entry: {missing}"


def test_every_cli_command_is_documented() -> None:
    from crossrec.cli import app

    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    for group in app.registered_groups:
        commands += [f"{group.name} {c.name or c.callback.__name__}"
                     for c in group.typer_instance.registered_commands]
    text = _docs_text()
    missing = [c for c in commands if f"crossrec {c}" not in text]
    assert not missing, f"CLI commands the docs never show: {missing}"


@pytest.mark.parametrize(("path", "limit"), [("README.md", 150), ("benchmarks/RESULTS.md", 300)])
def test_front_pages_stay_short(path: str, limit: int) -> None:
    n = len((ROOT / path).read_text().splitlines())
    assert n <= limit, f"{path} has {n} lines (at most {limit})"


def test_no_issue_numbers_in_user_facing_pages() -> None:
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *DOCS.rglob("*.md")]
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in pages
            for m in re.finditer(r"\bissues? \d+", p.read_text(), flags=re.I)]
    assert not hits, hits


def test_readme_picture_and_links_exist() -> None:
    readme = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
