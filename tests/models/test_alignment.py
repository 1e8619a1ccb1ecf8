"""Alignment losses: MMD, CORAL, gradient reversal and the Aligner wrapper."""

import pytest
import torch

from crossrec.models.alignment import (
    Aligner,
    GradientReversal,
    coral,
    grad_reverse,
    mmd,
    ramp,
)


def _sample(n: int = 200, d: int = 8, shift: float = 0.0, scale: float = 1.0,
            seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * scale + shift


def test_mmd_zero_for_same_sample_and_grows_with_shift() -> None:
    x = _sample()
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    same_law = float(mmd(x, _sample(seed=1)))
    small, large = float(mmd(x, _sample(shift=0.5, seed=1))), float(mmd(x, _sample(shift=2.0,
                                                                                   seed=1)))
    assert same_law < small < large
    assert same_law < 0.05 and large > 10 * same_law


def test_mmd_default_bandwidth_is_scale_invariant_fixed_is_not() -> None:
    x, y = _sample(), _sample(shift=1.0, seed=1)
    torch.testing.assert_close(mmd(10 * x, 10 * y), mmd(x, y), rtol=1e-4, atol=1e-6)
    assert float(mmd(10 * x, 10 * y, [1.0])) != pytest.approx(float(mmd(x, y, [1.0])), rel=0.1)


def test_mmd_sees_a_change_of_spread_with_equal_means() -> None:
    x = _sample()
    assert float(mmd(x, _sample(scale=3.0, seed=1))) > 5 * float(mmd(x, _sample(seed=1)))


def test_coral_matches_hand_computed_value_and_ignores_means() -> None:
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])  # cov = diag(4/3, 4/3)
    y = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cov = diag(1/3, 1/3)
    expected = 2 * (4 / 3 - 1 / 3) ** 2 / (4 * 2 * 2)
    torch.testing.assert_close(coral(x, y), torch.tensor(expected))
    torch.testing.assert_close(coral(x, x + 5.0), torch.tensor(0.0))
    assert float(coral(_sample(), _sample(scale=2.0, seed=1))) > 10 * float(
        coral(_sample(), _sample(seed=1)))


def test_losses_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="\\[n, d\\]"):
        mmd(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        coral(torch.zeros(1, 3), torch.zeros(4, 3))


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(3)
    (x @ w).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    out = grad_reverse(x, 0.5)
    torch.testing.assert_close(out, x)  # identity forward
    (out @ w).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * plain)
    x.grad = None
    (GradientReversal(2.0)(x) @ w).sum().backward()
    torch.testing.assert_close(x.grad, -2.0 * plain)


def test_adversarial_aligner_trains_classifier_and_reverses_encoder_gradient() -> None:
    torch.manual_seed(0)
    aligner = Aligner("adversarial", dim=4, weight=1.0, hidden=8)
    x = torch.randn(16, 4, requires_grad=True)
    y = torch.randn(16, 4) + 1.0
    loss = aligner(x, y)
    loss.backward()
    # the gradient that reaches x is minus the classifier loss's own gradient w.r.t. x
    x2 = x.detach().clone().requires_grad_(True)
    head = aligner.classifier  # the reversal is applied before it
    logits = head(torch.cat([x2, y])).squeeze(-1)
    labels = torch.cat([torch.ones(16), torch.zeros(16)])
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    torch.testing.assert_close(x.grad, -x2.grad)
    # the classifier itself descends its loss: a few steps make it separate shifted samples
    opt = torch.optim.Adam(aligner.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        aligner(x.detach(), y).backward()
        opt.step()
    assert aligner.domain_accuracy(x.detach(), y) > 0.8


def test_aligner_kinds() -> None:
    x, y = _sample(50, 4), _sample(50, 4, shift=1.0, seed=1)
    torch.testing.assert_close(Aligner("mmd", 4, weight=2.0)(x, y), 2.0 * mmd(x, y))
    torch.testing.assert_close(Aligner("mmd", 4, bandwidths=[1.0])(x, y), mmd(x, y, [1.0]))
    torch.testing.assert_close(Aligner("coral", 4, weight=3.0)(x, y), 3.0 * coral(x, y))
    assert float(Aligner("none", 4)(x, y)) == 0.0
    assert list(Aligner("none", 4).parameters()) == []
    with pytest.raises(ValueError, match="unknown alignment"):
        Aligner("wasserstein", 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no domain classifier"):
        Aligner("mmd", 4).domain_accuracy(x, y)


def test_ramp_schedule_and_scaled_weight() -> None:
    assert ramp(0.0) == 0.0 and ramp(-1.0) == 0.0
    assert 0.0 < ramp(0.1) < ramp(0.3) < ramp(1.0) <= 1.0
    assert ramp(1.0) == pytest.approx(1.0, abs=1e-4) and ramp(5.0) == ramp(1.0)
    x, y = _sample(50, 4), _sample(50, 4, shift=1.0, seed=1)
    aligner = Aligner("coral", 4, weight=2.0)
    torch.testing.assert_close(aligner(x, y, 0.25), 0.5 * coral(x, y))
    assert float(aligner(x, y, 0.0)) == 0.0
