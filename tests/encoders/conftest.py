"""One MiniLM for every encoder test (loading it takes a few seconds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from crossrec.encoders import TextEncoder, load_encoder

TEXTS = [
    "red stapler for the office desk",
    "office stapler, red, heavy duty",
    "watercolor paint brush set",
    "acrylic paints for canvas",
    "",
    "red stapler for the office desk",  # a duplicate
]


class Counting:
    """Wraps an encoder and counts the texts it is asked to encode."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner, self.key, self.dim = inner, inner.key, inner.dim
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.encode(texts, batch_size=batch_size)


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    return load_encoder("minilm")


@pytest.fixture
def texts() -> list[str]:
    """A few item titles: two close, two of another kind, an empty one, a duplicate."""
    return list(TEXTS)


@pytest.fixture
def counting() -> type[Counting]:
    """The ``Counting`` wrapper class."""
    return Counting
