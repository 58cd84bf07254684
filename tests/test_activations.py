"""Activations and losses: stable for large |x|, and derivatives that match finite differences.

(Symbolic checks against sympy: ``test_activation_derivatives_sympy.py``.)
"""

import warnings

import numpy as np
import pytest

import manual
from tests.helpers import central_difference

LARGE = np.array([-1000.0, -40.0, -1.0, 0.5, 40.0, 1000.0])


@pytest.mark.parametrize("name", sorted(manual.ACTIVATIONS))
def test_no_overflow_and_finite_for_large_inputs(name):
    act = manual.get_activation(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [act.f(LARGE), act.df(LARGE), act.d2f(LARGE)]
    for v in values:
        assert v.shape == LARGE.shape and np.all(np.isfinite(v))


@pytest.mark.parametrize("name", sorted(manual.ACTIVATIONS))
def test_derivatives_match_central_differences(name):
    act = manual.get_activation(name)
    x = np.linspace(-4.0, 4.0, 41) + 0.013  # off the relu kink at 0
    h = 1e-5
    np.testing.assert_allclose(act.df(x), central_difference(act.f, x, 1.0, h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(act.d2f(x), central_difference(act.df, x, 1.0, h), rtol=1e-7, atol=1e-9)


def test_sigmoid_limits_exact():
    s = manual.get_activation("sigmoid").f(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])
    softplus = manual.get_activation("softplus").f(np.array([-1000.0, 1000.0]))
    np.testing.assert_array_equal(softplus, [0.0, 1000.0])


@pytest.mark.parametrize("name", sorted(manual.LOSSES))
def test_loss_gradient_and_hessian_match_central_differences(name):
    rng = np.random.default_rng(3)
    loss = manual.get_loss(name)
    y_hat = rng.standard_normal((4, 3))
    y = np.eye(3)[[0, 2, 1, 1]]
    h = 1e-6
    eye = np.eye(3)
    value, grad = (lambda y_hat: loss.value(y_hat, y)), (lambda y_hat: loss.grad(y_hat, y))
    fd_grad = np.stack([central_difference(value, y_hat, e, h) for e in eye], axis=1)
    np.testing.assert_allclose(loss.grad(y_hat, y), fd_grad, rtol=1e-7, atol=1e-9)
    fd_hess = np.stack([central_difference(grad, y_hat, e, h) for e in eye], axis=2)
    np.testing.assert_allclose(loss.hessian(y_hat, y), fd_hess, rtol=1e-7, atol=1e-9)


def test_cross_entropy_is_stable_for_huge_logits():
    loss = manual.get_loss("cross_entropy")
    y_hat = np.array([[1000.0, -1000.0, 0.0]])
    y = np.array([[0.0, 1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss.value(y_hat, y)[0] == pytest.approx(2000.0)
        np.testing.assert_allclose(loss.grad(y_hat, y), [[1.0, -1.0, 0.0]], atol=1e-300)
