"""What every text-based model shares: which encoder and template, and the item vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from crossrec.models.base import ModelConfig

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.encoders.base import TextEncoder


class TextConfig(ModelConfig):
    """Fields of models that read item text through a pretrained encoder.

    Attributes:
        encoder: registered encoder name (``crossrec.encoders.ENCODERS``).
        template: item-text template (fields: text, domain, title, categories, brand, item_id).
        encoder_batch_size: texts per encoder call.
    """

    encoder: str = "minilm"
    template: str = "{text}"
    encoder_batch_size: int = Field(64, ge=1)

    def load_encoder(self) -> TextEncoder:
        """The encoder (loaded offline from its package)."""
        from crossrec.encoders import load_encoder

        return load_encoder(self.encoder)

    def item_vectors(self, train: MultiDomainDataset, *, progress: bool = True) -> np.ndarray:
        """``float32 [n_items, dim]`` L2-normalised text vectors of every item, via the cache."""
        from crossrec.encoders import encode_items, item_texts

        return encode_items(item_texts(train, self.template), self.load_encoder(),
                            batch_size=self.encoder_batch_size, progress=progress)


class QueryEncoder:
    """Free-text queries → vectors with a model's encoder, loaded on first use (``score_text``)."""

    def __init__(self, config: TextConfig) -> None:
        self.config = config
        self._encoder: TextEncoder | None = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``float32 [B, dim]`` L2-normalised vectors of ``texts``."""
        if self._encoder is None:
            self._encoder = self.config.load_encoder()
        return self._encoder.encode(list(texts), batch_size=self.config.encoder_batch_size)
