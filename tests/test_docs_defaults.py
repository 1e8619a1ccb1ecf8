"""Every default the README and the docs state, checked against the code that sets it: the
"Settings (defaults)" line of each model, the split kinds' keys, ``section.key = value`` stated
as a default, and the experiment-file reference (generated from the same classes)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _default(cls: Any, key: str) -> Any:
    info = cls.model_fields[key]
    return info.default_factory() if info.default_factory is not None else info.default


def _value(text: str) -> Any:
    """A stated value: TOML or JSON literal, ``None``, the first of ``"a"|"b"``."""
    text = text.strip().split("|")[0] if re.fullmatch(r'"[^"]*"(\|"[^"]*")+', text.strip()) \
        else text.strip()
    if text in ("None", "none"):
        return None
    for parse in (lambda t: tomllib.loads(f"v = {t}")["v"], json.loads):
        try:
            return parse(text)
        except (tomllib.TOMLDecodeError, ValueError):
            continue
    raise ValueError(f"cannot read the stated value {text!r}")


def _same(stated: Any, actual: Any) -> bool:
    if isinstance(actual, tuple):
        actual = list(actual)
    if isinstance(stated, dict) and isinstance(actual, dict):
        return all(_same(v, actual.get(k)) for k, v in stated.items())
    if isinstance(stated, list) and isinstance(actual, list):
        return len(stated) == len(actual) and all(map(_same, stated, actual))
    if isinstance(stated, int | float) and isinstance(actual, int | float) \
            and not isinstance(stated, bool):
        return math.isclose(stated, actual, rel_tol=1e-9)
    return stated == actual


def _pairs(settings: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of a settings string, split at top-level commas."""
    out, depth, part = [], 0, ""
    for ch in settings + ",":
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            if "=" in part:
                key, value = part.split("=", 1)
                out.append((key.strip(), value.strip()))
            part = ""
        else:
            part += ch
    return out


def _model_settings() -> list[tuple[str, str, str, str]]:
    """(page, model, key, stated value) of every "Settings (defaults)" line."""
    from crossrec.models import MODELS

    found = []
    for page in PAGES:
        model = None
        for line in page.read_text().splitlines():
            if m := re.match(r"^#+ `(\w+)`", line):
                model = m.group(1)
            if "Settings (defaults)" in line and model in MODELS:
                rest = re.sub(r"\([^()]*\)", "", line.split("Settings (defaults)", 1)[1])
                for group in re.findall(r"`([^`]*)`", rest):  # asides in parentheses dropped
                    found += [(page.name, model, k, v) for k, v in _pairs(group)]
    return found


def test_model_settings_lines_match_the_model_configs() -> None:
    from crossrec.models import MODELS

    stated = _model_settings()
    assert len(stated) > 50  # the lines are there and were read
    wrong = []
    for page, model, key, text in stated:
        cls = MODELS[model].Config
        if key not in cls.model_fields:
            wrong.append(f"{page}: {model}.{key} is not a setting")
        elif not _same(_value(text), _default(cls, key)):
            wrong.append(f"{page}: {model}.{key} = {text} stated, "
                         f"{_default(cls, key)!r} in the code")
    assert not wrong, wrong


def test_hybrid_negatives_as_the_code_says() -> None:
    from crossrec.models import MODELS

    stated = {(m, k): v for _, m, k, v in _model_settings()}
    assert _value(stated[("hybrid", "n_negatives")]) == _default(MODELS["hybrid"].Config,
                                                                 "n_negatives") == 256


def test_split_kind_defaults_match() -> None:
    from crossrec.split_config import SPLITS

    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", (ROOT / "docs" / "experiments.md").read_text(),
                      flags=re.M)
    checked = 0
    for kind, keys in rows:
        if kind not in SPLITS:
            continue
        for key, text in re.findall(r"`(\w+) = ([^`]+)`", keys):
            assert _same(_value(text), _default(SPLITS[kind], key)), (kind, key, text)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_section_defaults_stated_in_prose(page: Path) -> None:
    """A ``section.key = value`` in a sentence that calls it the default."""
    from crossrec.config import DataConfig, EncoderConfig, EvalConfig, TrainConfig

    tables = {"data": DataConfig, "eval": EvalConfig, "train": TrainConfig,
              "encoder": EncoderConfig}
    for sentence in re.split(r"(?<=[.:;])\s", page.read_text()):
        if "default" not in sentence:
            continue
        for section, key, text in re.findall(r"`(\w+)\.(\w+) = ([^`]+)`", sentence):
            if section in tables and key in tables[section].model_fields:
                assert _same(_value(text), _default(tables[section], key)), (
                    page.name, f"{section}.{key}", text)


def test_the_generated_reference_states_every_default() -> None:
    from crossrec.config import EvalConfig
    from crossrec.config_doc import render_reference
    from crossrec.models import MODELS

    text = render_reference()
    assert "| `n_negatives` | int | `0` |" in text  # [eval]
    for name, cls in MODELS.items():
        assert f'### `name = "{name}"`' in text
        for key in cls.Config.model_fields:
            assert f"| `{key}` |" in text, (name, key)
    assert len(EvalConfig.model_fields) == sum(
        f"| `{k}` |" in text for k in EvalConfig.model_fields)
