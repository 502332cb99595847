"""StableMax cross-entropy: its values, its gradient, and predictions identical to softmax's; label smoothing."""

import math

import torch

from grokkit.models import IGNORE
from grokkit.train.losses import stablemax_log_probs, token_losses


def test_values_follow_the_definition():
    logits = torch.tensor([[[-1.0, 0.0, 2.0]]])  # s = 1/2, 1, 3; sum 9/2
    expected = torch.tensor([1 / 9, 2 / 9, 6 / 9]).log()
    assert torch.allclose(stablemax_log_probs(logits)[0, 0], expected)
    losses = token_losses(logits, torch.tensor([[2]]), IGNORE, "stablemax")
    assert math.isclose(losses.item(), -math.log(6 / 9), rel_tol=1e-6)


def test_ignored_tokens_cost_nothing_and_match_cross_entropy_masking():
    logits = torch.randn(4, 5, 11)
    targets = torch.randint(0, 11, (4, 5))
    targets[:, :2] = IGNORE
    for kind in ("stablemax", "cross_entropy"):
        losses = token_losses(logits, targets, IGNORE, kind)
        assert losses.shape == (4, 5) and (losses[:, :2] == 0).all() and (losses[:, 2:] > 0).all()


def test_gradient_is_correct_and_finite_at_extreme_logits():
    logits = (torch.randn(3, 2, 7, dtype=torch.float64) * 4).requires_grad_()
    targets = torch.randint(0, 7, (3, 2))
    assert torch.autograd.gradcheck(lambda x: token_losses(x, targets, IGNORE, "stablemax").sum(), (logits,))
    huge = torch.tensor([[[1e30, -1e30, 0.0, 1.0]]], requires_grad=True)
    token_losses(huge, torch.tensor([[1]]), IGNORE, "stablemax").sum().backward()
    assert torch.isfinite(huge.grad).all()


def test_prediction_is_the_softmax_argmax():
    logits = torch.randn(64, 5, 50) * 10
    assert torch.equal(stablemax_log_probs(logits).argmax(-1), logits.softmax(-1).argmax(-1))


def test_label_smoothing_mixes_in_the_uniform_target_for_both_losses():
    logits = torch.randn(2, 3, 7, dtype=torch.float64)
    targets = torch.randint(0, 7, (2, 3))
    targets[0, 0] = IGNORE
    log_probs = {"cross_entropy": logits.log_softmax(-1), "stablemax": stablemax_log_probs(logits)}
    for kind, lp in log_probs.items():
        nll = -lp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        expected = (0.9 * nll - 0.1 * lp.mean(-1)) * (targets != IGNORE)
        for flat in (False, True):  # the (B, V, T) layout of the documented runs and the vectorized one
            smoothed = token_losses(logits, targets, IGNORE, kind, smoothing=0.1, flat=flat)
            assert torch.allclose(smoothed, expected)
            assert torch.allclose(
                token_losses(logits, targets, IGNORE, kind, flat=flat), nll * (targets != IGNORE)
            )
