"""Text encoders: pretrained language models shipped inside PyPI packages, and a vector cache.

``load_encoder("minilm")`` gives a :class:`TextEncoder`; ``encode_items(texts, encoder)`` turns
item texts into ``float32 [n, dim]`` vectors through an on-disk cache keyed by
(encoder key, text hash), so a second run encodes nothing.
"""

from crossrec.encoders.base import ENCODERS, EncoderSpec, TextEncoder, item_texts, load_encoder
from crossrec.encoders.cache import VectorCache, encode_items

__all__ = [
    "ENCODERS",
    "EncoderSpec",
    "TextEncoder",
    "VectorCache",
    "encode_items",
    "item_texts",
    "load_encoder",
]
