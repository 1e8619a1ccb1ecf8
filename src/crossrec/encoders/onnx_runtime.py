"""ONNX Runtime inference of a packaged sentence-transformers model (fp32 or int8).

The model is exported from its local folder (no hub access) once, into the cache directory:
mean pooling and L2 normalisation are part of the graph; ONNX Runtime's transformer optimizer
fuses attention, GELU and LayerNorm; ``quantize=True`` adds int8 dynamic quantisation of the
weights (per output channel, activations quantised on the fly as uint8).

The weights' int8 type follows the CPU (``int8_weight_type``): signed int8 where the CPU has
int8 dot-product instructions (x86 VNNI, ARM64), which ONNX Runtime's u8·s8 kernels use
(2.4 × the fp32 PyTorch call on MiniLM there, vs 1.5 × with uint8 weights); uint8 elsewhere,
because u8·s8 on AVX2-only x86 can saturate its 16-bit intermediate sums (ONNX Runtime's
quantisation guide). The type is part of the exported folder's name and of the encoder key,
so vectors of the two never mix in the cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossrec.encoders.base import EncoderSpec
from crossrec.errors import ConfigError

EXPORT_VERSION = 1  # bump when the exported graph changes


def int8_weight_type(flags: set[str] | None = None, machine: str | None = None) -> str:
    """``"s8"`` (signed int8 weights) where the CPU has int8 dot products, else ``"u8"``.

    Args:
        flags: the CPU's feature flags (default: read from ``/proc/cpuinfo``; empty elsewhere).
        machine: ``platform.machine()`` (default: this machine's).
    """
    import platform

    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return "s8"
    if flags is None:
        flags = set()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    return "s8" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else "u8"


def _require_onnx() -> None:
    for module, package in (("onnxruntime", "onnxruntime"), ("onnx", "onnx")):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"the onnx encoder backends need the package {package!r}: "
                              f"pip install 'crossrec[onnx]'") from None


def _check_pooling(spec: EncoderSpec, folder: Path) -> None:
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
        raise ConfigError(f"encoder {spec.name!r}: the onnx backends support mean pooling only "
                          f"(see {pooling})")


def export(spec: EncoderSpec, folder: Path, out: Path, *, quantize: bool) -> None:
    """Write ``out/model.onnx``: token ids ``[B, L]`` -> L2-normalised mean-pooled ``[B, D]``.

    Args:
        spec: the registered model (its weights already checked).
        folder: the model folder.
        out: an empty directory.
        quantize: add int8 dynamic quantisation of the MatMul weights (``int8_weight_type``).
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    model.set_attn_implementation("eager")  # the optimizer fuses the eager attention pattern
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    names = list(tokenizer.model_input_names)

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kw = dict(zip(names, inputs, strict=True))
            h = self.model(**kw).last_hidden_state  # [B, L, D]
            w = kw["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, dim=-1)

    sample = tokenizer(["an example item title", "a"], padding=True, return_tensors="pt")
    raw = out / "raw.onnx"
    with torch.no_grad():
        torch.onnx.export(Pooled(), tuple(sample[n] for n in names), str(raw), dynamo=False,
                          input_names=names, output_names=["embedding"], opset_version=17,
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                        "embedding": {0: "batch"}})
    cfg = model.config
    fused = optimizer.optimize_model(str(raw), model_type="bert",
                                     num_heads=cfg.num_attention_heads,
                                     hidden_size=cfg.hidden_size)
    fused.save_model_to_file(str(out / "fused.onnx"))
    raw.unlink()
    if quantize:
        # per-channel weights: mean cosine 0.992 to fp32 on MiniLM, s8 or u8 (see RESULTS.md)
        weight = QuantType.QInt8 if int8_weight_type() == "s8" else QuantType.QUInt8
        quantize_dynamic(str(out / "fused.onnx"), str(out / "model.onnx"),
                         weight_type=weight, per_channel=True,
                         extra_options={"DefaultTensorType": 1})  # 1 = float32
        (out / "fused.onnx").unlink()
    else:
        (out / "fused.onnx").rename(out / "model.onnx")
    tokenizer.save_pretrained(str(out / "tokenizer"))
    (out / "inputs.json").write_text(json.dumps(names))


class OnnxEncoder:
    """A packaged sentence-transformers model run by ONNX Runtime on CPU.

    Args:
        spec: the registered model.
        max_seq_length: tokens kept per text.
        quantize: int8 dynamic quantisation (backend "onnx-int8"); else fp32 ("onnx").
        cache: where exported graphs live (default ``cache_dir() / "onnx"``).
        threads: ONNX Runtime intra-op threads (default: torch's thread count, so that
            both backends use the same cores).
    """

    def __init__(self, spec: EncoderSpec, *, max_seq_length: int = 128, quantize: bool = False,
                 cache: Path | None = None, threads: int | None = None) -> None:
        _require_onnx()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import onnxruntime as ort
        import torch
        from transformers import AutoTokenizer

        from crossrec.atomic import atomic_directory
        from crossrec.paths import cache_dir

        folder = spec.folder()
        spec.verify(folder)
        _check_pooling(spec, folder)
        self.spec, self.max_seq_length = spec, max_seq_length
        self.backend = "onnx-int8" if quantize else "onnx"
        variant = f"{self.backend}-{int8_weight_type()}" if quantize else self.backend
        weights = dict(spec.sha256).get("model.safetensors", "unchecked")[:12]
        root = cache or cache_dir() / "onnx"
        self.dir = root / f"{spec.model}-{weights}-{variant}-v{EXPORT_VERSION}"
        if not (self.dir / "model.onnx").is_file():
            with atomic_directory(self.dir) as tmp:
                export(spec, folder, tmp, quantize=quantize)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(self.dir / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.dir / "tokenizer"),
                                                       local_files_only=True)
        self.inputs = json.loads((self.dir / "inputs.json").read_text())
        self.dim = spec.dim
        self.key = f"st:{spec.model}:mean:{max_seq_length}:{variant}"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """``float32 [n, dim]`` L2-normalised vectors; texts are batched longest first (as
        sentence-transformers does) so that a batch holds texts of similar length."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            tok = self.tokenizer([self.spec.prefix + texts[i] for i in idx], padding=True,
                                 truncation=True, max_length=self.max_seq_length,
                                 return_tensors="np")
            feed = {n: tok[n].astype(np.int64) for n in self.inputs}
            out[idx] = self.session.run(None, feed)[0]
        return out
