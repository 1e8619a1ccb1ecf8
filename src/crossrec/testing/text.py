"""A tiny deterministic text encoder for tests: hashed bag of words, no model weights.

Texts that share words get similar vectors, which is all the synthetic two-domain data
(``make_two_domain``: titles carry their cluster's theme words) needs. ``hashing_encoder``
makes ``TextConfig(encoder="hashing")`` load it, so text models run in tests without loading a
language model::

    with hashing_encoder():
        model = TextZeroShot({"encoder": "hashing"}).fit(train, options)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from crossrec.encoders.base import TextEncoder

NAME = "hashing"

_WORD = re.compile(r"[a-z]+")
_STOP = frozenset({"the", "a", "an", "of", "and", "story", "book", "film"})


class HashingEncoder:
    """L2-normalised hashed counts of a text's lower-case words (digits and stop words dropped).

    Args:
        dim: vector size (number of hash buckets).
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.key = f"test:hashing-bow:{dim}"

    def _bucket(self, word: str) -> int:
        return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(),
                              "little") % self.dim

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """``float32 [n, dim]`` L2-normalised vectors (a text without words gives zeros)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if word not in _STOP:
                    out[r, self._bucket(word)] += 1.0
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norm, 1e-12)


def install_hashing_encoder(dim: int = 256) -> HashingEncoder:
    """From now on, ``crossrec.encoders.load_encoder("hashing")`` gives a HashingEncoder in
    this process (other names load their models).

    For worker processes a test cannot wrap in ``hashing_encoder``, e.g. Ray workers:
    ``runtime_env={"worker_process_setup_hook": "crossrec.testing.text.install_hashing_encoder"}``.
    """
    import crossrec.encoders as encoders

    original, encoder = encoders.load_encoder, HashingEncoder(dim)

    def load(name: str, **kwargs: object) -> TextEncoder:
        return encoder if name == NAME else original(name, **kwargs)

    encoders.load_encoder = load
    return encoder


@contextmanager
def hashing_encoder(dim: int = 256, *, cache_dir: str | Path | None = None
                    ) -> Iterator[HashingEncoder]:
    """Within the block, ``crossrec.encoders.load_encoder("hashing")`` gives a HashingEncoder.

    Other names still load their registered models. Restores the original loader on exit.

    Args:
        dim: vector size.
        cache_dir: if given, ``$CROSSREC_CACHE`` points there within the block (so the vector
            cache of a test run stays out of the user's cache).
    """
    import crossrec.encoders as encoders

    original, old_cache = encoders.load_encoder, os.environ.get("CROSSREC_CACHE")
    encoder = install_hashing_encoder(dim)
    if cache_dir is not None:
        os.environ["CROSSREC_CACHE"] = str(cache_dir)
    try:
        yield encoder
    finally:
        encoders.load_encoder = original
        if cache_dir is not None:
            if old_cache is None:
                os.environ.pop("CROSSREC_CACHE", None)
            else:
                os.environ["CROSSREC_CACHE"] = old_cache
