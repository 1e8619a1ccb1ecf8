"""A sentence-transformers model loaded fully offline from a package folder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from crossrec.encoders.base import EncoderSpec


class SentenceTransformerEncoder:
    """Mean-pooled, L2-normalised sentence vectors from a packaged model (no hub access).

    Args:
        spec: the registered model.
        device: torch device.
        max_seq_length: tokens kept per text (item titles rarely need more than 64).
        backend: "torch" (fp32) or "torch-int8" (int8 dynamic quantisation of every
            ``nn.Linear``, per output channel; slower to agree than the onnx backends, see
            RESULTS.md).
    """

    def __init__(self, spec: EncoderSpec, *, device: str = "cpu", max_seq_length: int = 128,
                 backend: str = "torch") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub at run time
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        folder = spec.folder()
        spec.verify(folder)
        self.spec, self.backend = spec, backend
        self.model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        self.model.max_seq_length = max_seq_length
        if backend == "torch-int8":
            import torch
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            qconfig = {torch.nn.Linear: per_channel_dynamic_qconfig}
            with warnings.catch_warnings():  # torch.ao's deprecation notice, once per load
                warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
                self.model = quantize_dynamic(self.model, qconfig, dtype=torch.qint8)
        elif backend != "torch":
            raise ValueError(f"SentenceTransformerEncoder: backend {backend!r} is not a torch one")
        self.dim = spec.dim
        self.key = f"st:{spec.model}:mean:{max_seq_length}:{backend}"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """``float32 [n, dim]`` L2-normalised vectors."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [self.spec.prefix + t for t in texts] if self.spec.prefix else list(texts)
        v = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(v, dtype=np.float32)
