"""The experiment-file reference, generated from the pydantic models (so it cannot drift).

``render_reference()`` is markdown: one table per section of an experiment file (``[data]``,
``[split]`` per kind, ``[train]``, ``[eval]``, ``[encoder]``) and one per registered model's
``[[models]]`` table, each with every field's name, type, default and description. The
description is the field's ``description``, else its entry under ``Attributes:`` in the
class docstring (Google style), else the class docstring names none.

The docs build renders it into the page that holds ``PLACEHOLDER`` (``docs/hooks.py``).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

PLACEHOLDER = "<!-- experiment-file-reference -->"
"""The line of a docs page that the generated reference replaces."""

COMMON = {
    "learning_rate": "Adam learning rate.",
    "epochs": "Most training epochs (early stopping on `train.early_stopping` may end sooner).",
    "batch_size": "Training examples per step.",
    "weight_decay": "L2 weight decay of the optimiser.",
    "patience": "Epochs without a better validation value before early stopping.",
    "train_on": "`\"target\"`: fit on the target domain only; `\"all\"`: on every domain.",
    "encoder": "Text encoder (default: the experiment's `[encoder]`).",
    "template": "Item text template (default: the experiment's `[encoder]`).",
}
"""Descriptions of the settings many models share, where a model's docstring has none."""


def _attributes(cls: type) -> dict[str, str]:
    """``{name: text}`` of the ``Attributes:`` sections of the docstrings of ``cls`` and its
    bases (the class's own entry wins)."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if "__doc__" in vars(base):
            out.update(_own_attributes(inspect.cleandoc(base.__doc__ or "")))
    return out


def _own_attributes(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    inside, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):  # the next section
            break
        m = re.match(r"^ {4}(\w+)(?: \(.*?\))?: ?(.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
    return out


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"typing\.|crossrec\.[\w.]+\.|pathlib\.", "", text)
    return text.replace("NoneType", "None").replace("|", "or")


def _default(info: Any) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:  # a factory that takes the validated data
            return "(computed)"
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(table)"
    return f"`{value!r}`" if not isinstance(value, str) else f'`"{value}"`'


def _cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


def table(cls: type[BaseModel], *, skip: tuple[str, ...] = ()) -> str:
    """A markdown table of the fields of ``cls``: key, type, default, description."""
    notes = _attributes(cls)
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        about = info.description or notes.get(name) or COMMON.get(name, "")
        lines.append(f"| `{name}` | {_cell(_type(info.annotation))} | {_cell(_default(info))} "
                     f"| {_cell(about)} |")
    return "\n".join(lines)


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def render_reference() -> str:
    """The whole reference as markdown (headings from level 2)."""
    from crossrec.config import DataConfig, EncoderConfig, EvalConfig, TrainConfig
    from crossrec.models import MODELS
    from crossrec.split_config import SPLITS

    parts = ["## `[data]`", "", _summary(DataConfig), "", table(DataConfig), ""]
    parts += ["## `[split]`", "",
              "One table per `kind`; a key of another kind is an error.", ""]
    for kind, cls in SPLITS.items():
        parts += [f"### `kind = \"{kind}\"`", "", _summary(cls), "", table(cls, skip=("kind",)),
                  ""]
    for title, cls in (("[train]", TrainConfig), ("[eval]", EvalConfig),
                       ("[encoder]", EncoderConfig)):
        parts += [f"## `{title}`", "", _summary(cls), "", table(cls), ""]
    parts += ["## `[[models]]` (or `[model]`)", "",
              "`name` picks the model; `label` (optional) names it in reports; every other key "
              "is a setting of that model, below. A key the model does not have is an error.",
              ""]
    for name in sorted(MODELS):
        cls = MODELS[name].Config
        parts += [f"### `name = \"{name}\"`", "", _summary(cls), "", table(cls), ""]
    return "\n".join(parts)
