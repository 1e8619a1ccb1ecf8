"""Shared blocks: the causal SequenceEncoder never looks ahead and survives full padding."""

import torch

from crossrec.models.layers import MLP, SequenceEncoder


def _encoder() -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(16, 8, n_layers=2, n_heads=2, dropout=0.0).eval()


def test_causal_later_positions_do_not_change_earlier_outputs() -> None:
    enc = _encoder()
    x = torch.randn(2, 8, 16)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    base = enc(x, pad)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 3, 16)
    out = enc(changed, pad)
    torch.testing.assert_close(out[:, :5], base[:, :5])
    assert not torch.allclose(out[:, 5:], base[:, 5:])


def test_padding_rows_have_no_nan_and_are_zero() -> None:
    enc = _encoder().train()
    x = torch.randn(3, 8, 16, requires_grad=True)
    pad = torch.zeros(3, 8, dtype=torch.bool)
    pad[0, :5] = True  # left-padded
    pad[1] = True  # nothing at all
    out = enc(x, pad)
    assert torch.isfinite(out).all()
    assert (out[pad] == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)
    last = enc.last(x, pad)
    assert last.shape == (3, 16) and torch.isfinite(last).all()


def test_padding_content_is_ignored() -> None:
    enc = _encoder()
    x = torch.randn(1, 8, 16)
    pad = torch.zeros(1, 8, dtype=torch.bool)
    pad[0, :3] = True
    other = x.clone()
    other[0, :3] = torch.randn(3, 16) * 5
    torch.testing.assert_close(enc.last(x, pad), enc.last(other, pad))


def test_longer_input_keeps_the_most_recent_positions() -> None:
    enc = _encoder()
    x = torch.randn(1, 10, 16)
    pad = torch.zeros(1, 10, dtype=torch.bool)
    torch.testing.assert_close(enc(x, pad), enc(x[:, -8:], pad[:, -8:]))


def test_mlp_shapes() -> None:
    mlp = MLP([4, 8, 3], dropout=0.1)
    assert mlp(torch.randn(5, 4)).shape == (5, 3)
    assert len([m for m in mlp if isinstance(m, torch.nn.Linear)]) == 2


def test_inference_path_no_nan_with_padding() -> None:
    enc = _encoder()
    x = torch.randn(3, 8, 16)
    pad = torch.zeros(3, 8, dtype=torch.bool)
    pad[0, :5] = True
    pad[1] = True
    with torch.no_grad():  # the inference fast path of nn.TransformerEncoder
        out = enc(x, pad)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, enc(x, pad))
