"""What every text-based model shares: which encoder and template, and the item vectors.

With ``lora`` set (off by default), the encoder is first fine-tuned with a LoRA adapter on the
training interactions of one domain (``crossrec.encoders.lora``): the domain is ``lora.domain``
if set, else the ``target`` keyword of ``item_vectors`` (a model passes ``options.target``),
else the data's only domain. The adapter is saved under ``$CROSSREC_CACHE/lora`` and reused by a
refit on the same data; the tuned encoder has its own vector-cache key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, PrivateAttr

from crossrec.encoders.lora import LoraConfig
from crossrec.errors import ConfigError
from crossrec.models.base import ModelConfig

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.encoders.base import TextEncoder
    from crossrec.encoders.lora import LoraEncoder


class TextConfig(ModelConfig):
    """Fields of models that read item text through a pretrained encoder.

    Attributes:
        encoder: registered encoder name (``crossrec.encoders.ENCODERS``).
        template: item-text template (fields: text, domain, title, categories, brand, item_id).
        encoder_batch_size: texts per encoder call.
        backend: inference backend of the encoder (``crossrec.encoders.BACKENDS``: "torch",
            the fp32 reference; "onnx", "onnx-int8", "torch-int8" for large catalogues on CPU);
            part of the vector-cache key. LoRA tunes the "torch" model only.
        lora: fine-tune the encoder with a LoRA adapter on one domain's training interactions
            before encoding (``crossrec.encoders.lora.LoraConfig``); None (default) = the
            pretrained encoder as it is.
    """

    encoder: str = "minilm"
    template: str = "{text}"
    encoder_batch_size: int = Field(64, ge=1)
    backend: str = "torch"
    lora: LoraConfig | None = None
    _tuned: LoraEncoder | None = PrivateAttr(None)

    def load_encoder(self) -> TextEncoder:
        """The encoder (loaded offline from its package); with ``lora``, the tuned encoder of
        the last ``item_vectors`` / ``tuned_encoder`` call, so queries and profiles share the
        items' weights.

        Raises:
            ConfigError: ``lora`` is set and no tuned encoder was made yet (call
                ``tuned_encoder(train, target=...)`` first, e.g. after a bundle reload); an
                unknown backend.
        """
        self._check_backend()
        if self.lora is not None:
            if self._tuned is None:
                raise ConfigError("this text model tunes its encoder with LoRA on the training "
                                  "data: call TextConfig.tuned_encoder(train, target=...) (or "
                                  "item_vectors) before encoding queries")
            return self._tuned
        from crossrec.encoders import load_encoder

        return load_encoder(self.encoder, backend=self.backend)

    def _check_backend(self) -> None:
        """LoRA tunes the PyTorch model; an unknown backend is ``load_encoder``'s error."""
        if self.lora is not None and self.backend != "torch":
            raise ConfigError(f"lora tunes the 'torch' encoder; backend {self.backend!r} "
                              "cannot be combined with lora")

    def lora_domain(self, train: MultiDomainDataset, target: str | None = None) -> str:
        """The domain LoRA tunes on: ``lora.domain``, else ``target``, else the only domain.

        Raises:
            ConfigError: none of them decides (data with several domains and no target).
        """
        if self.lora is not None and self.lora.domain is not None:
            return self.lora.domain
        if target is not None:
            return target
        if len(train.domains) == 1:
            return train.domains[0]
        raise ConfigError(f"lora: which domain's interactions tune the encoder? The data has "
                          f"{', '.join(train.domains)}: set lora.domain, or pass "
                          f"item_vectors(train, target=...)")

    def tuned_encoder(self, train: MultiDomainDataset, *, target: str | None = None
                      ) -> LoraEncoder:
        """The LoRA-tuned encoder for ``train`` (trained on first use, or loaded from the
        adapter store when one with the same key exists); remembered for ``load_encoder``.

        Raises:
            ConfigError: ``lora`` is None, or the domain is not decided (``lora_domain``).
        """
        if self.lora is None:
            raise ConfigError("tuned_encoder needs the lora setting")
        self._check_backend()
        from crossrec.encoders.lora import lora_encoder

        domain = self.lora_domain(train, target)
        tuned = self._tuned
        if (tuned is None or tuned.data is not train or tuned.domain != domain
                or tuned.config != self.lora):
            tuned = lora_encoder(train, domain, self.lora, encoder=self.encoder,
                                 template=self.template)
            self._tuned = tuned
        return tuned

    def item_vectors(self, train: MultiDomainDataset, *, progress: bool = True,
                     target: str | None = None) -> np.ndarray:
        """``float32 [n_items, dim]`` L2-normalised text vectors of every item, via the cache.

        Args:
            train: the training data.
            progress: show progress (encoding; LoRA steps).
            target: the target domain, the default domain of LoRA tuning (``lora_domain``);
                ignored without ``lora``.
        """
        from crossrec.encoders import encode_items, item_texts

        if self.lora is None:
            encoder = self.load_encoder()
        else:
            encoder = self.tuned_encoder(train, target=target)
            encoder.progress = progress
        return encode_items(item_texts(train, self.template), encoder,
                            batch_size=self.encoder_batch_size, progress=progress)


class QueryEncoder:
    """Free-text queries → vectors with a model's encoder, loaded on first use (``score_text``).

    With ``lora``, the encoder is the one ``item_vectors`` tuned; a model restored from a bundle
    (no ``item_vectors`` call) calls ``bind(train, target)`` in ``restore`` so the first query
    loads the saved adapter of that data.
    """

    def __init__(self, config: TextConfig) -> None:
        self.config = config
        self._encoder: TextEncoder | None = None
        self._data: tuple[MultiDomainDataset, str | None] | None = None

    def bind(self, train: MultiDomainDataset, target: str | None = None) -> None:
        """The training data (and target domain) whose tuned encoder queries use (``lora``)."""
        self._data, self._encoder = (train, target), None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``float32 [B, dim]`` L2-normalised vectors of ``texts``."""
        if self._encoder is None:
            c = self.config
            if c.lora is not None and c._tuned is None and self._data is not None:
                c.tuned_encoder(self._data[0], target=self._data[1])
            self._encoder = c.load_encoder()
        return self._encoder.encode(list(texts), batch_size=self.config.encoder_batch_size)
