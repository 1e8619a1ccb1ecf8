"""Text encoders: pretrained language models shipped inside PyPI packages, and a vector cache.

``load_encoder("minilm")`` gives a :class:`TextEncoder`; ``encode_items(texts, encoder)`` turns
item texts into ``float32 [n, dim]`` vectors through an on-disk cache keyed by
(encoder key, text hash), so a second run encodes nothing.
"""

from crossrec.encoders.base import (
    BACKENDS,
    ENCODERS,
    EncoderSpec,
    TextEncoder,
    item_texts,
    load_encoder,
)
from crossrec.encoders.cache import EncodeStats, VectorCache, encode_items, encode_with_stats

__all__ = [
    "BACKENDS",
    "ENCODERS",
    "EncodeStats",
    "EncoderSpec",
    "TextEncoder",
    "VectorCache",
    "encode_items",
    "encode_with_stats",
    "item_texts",
    "load_encoder",
]
