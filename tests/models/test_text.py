"""TextConfig: the encoder backend reaches the loader, bad combinations fail clearly."""

import pytest

import crossrec.encoders as encoders
from crossrec.encoders.lora import LoraConfig
from crossrec.errors import ConfigError
from crossrec.models.text import TextConfig


def test_backend_is_passed_to_the_encoder_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []

    def load(name: str, **kwargs: object) -> str:
        calls.append((name, kwargs))
        return "encoder"

    monkeypatch.setattr(encoders, "load_encoder", load)
    assert TextConfig(backend="onnx-int8").load_encoder() == "encoder"
    assert TextConfig().load_encoder() == "encoder"
    assert calls == [("minilm", {"backend": "onnx-int8"}), ("minilm", {"backend": "torch"})]


def test_unknown_backend_and_lora_with_onnx_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown encoder backend 'fp8'"):
        TextConfig(backend="fp8").load_encoder()
    with pytest.raises(ConfigError, match="cannot be combined with lora"):
        TextConfig(backend="onnx", lora=LoraConfig()).load_encoder()
