"""Each finding of docs/findings.md, pinned: the upstream (torch / jax) behaviour it describes, the truth from an
independent closed form in mpmath, and the arbiter's agreement with that truth. When torch or jax change, the
test of that finding fails: update docs/findings.md (and the test) then."""

import mpmath
import numpy as np
import pytest

from xval import Network
from xval.errors import XvalError

arbiter = pytest.importorskip("xval.arbiter")
torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
jax.config.update("jax_enable_x64", True)

CHANGED = "upstream behaviour changed: update docs/findings.md and this test"


def _mp(x):
    return mpmath.mpf(float(x))


def torch_derivatives(function, x):
    """``(f'(x), f''(x))`` by torch.autograd (double backward), float64."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(function(t), t, create_graph=True)
    (second,) = torch.autograd.grad(first, t)
    return first.item(), second.item()


def jax_derivatives(function, x):
    return float(jax.grad(function)(x)), float(jax.grad(jax.grad(function))(x))


def test_saturated_softmax_curvature_is_zero_in_torch_and_jax():
    """Finding 1: d2/da_k^2 of cross-entropy is p_k (1 - p_k); with 1 - p_k = 6e-39 both return 0."""
    a, y = np.array([0.0, 88.0, -200.0]), np.array([0.2, 0.5, 0.3])
    torch_h = torch.func.hessian(lambda t: -(torch.tensor(y) * torch.log_softmax(t, 0)).sum())(torch.tensor(a)).numpy()
    jax_h = np.asarray(jax.hessian(lambda t: -(y * jax.nn.log_softmax(t)).sum())(a))
    with mpmath.workdps(60):
        e = [mpmath.exp(_mp(v)) for v in a]
        p = [v / sum(e) for v in e]
        truth = float(p[1] * (p[0] + p[2]))  # p_1 (1 - p_1) without the cancellation
    assert 6.0e-39 < truth < 6.1e-39
    assert torch_h[1, 1] == 0.0 and jax_h[1, 1] == 0.0, CHANGED
    assert torch_h[0, 0] == pytest.approx(truth, rel=1e-14)  # the small probability's own entry survives
    net = Network.from_arrays([np.zeros((3, 1))], [a], ["identity"], "cross_entropy")
    assert arbiter.hessian(net, np.zeros((1, 1)), y[None])[4, 4] == pytest.approx(truth, rel=1e-15)


def test_softplus_hessian_is_nan_in_torch_below_minus_745():
    """Finding 2: torch's double backward of logaddexp(x, 0) is NaN once exp(x) underflows; jax and the truth: 0."""
    softplus = lambda t: torch.logaddexp(t, torch.zeros_like(t))  # noqa: E731  (torch_ref's softplus)
    assert np.isnan(torch.func.hessian(softplus)(torch.tensor(-800.0, dtype=torch.float64)).item()), CHANGED
    assert np.isnan(torch_derivatives(softplus, -746.0)[1]), CHANGED
    assert torch_derivatives(softplus, -700.0)[1] == pytest.approx(float(mpmath.exp(-700)), rel=1e-13)
    assert jax_derivatives(jax.nn.softplus, -800.0)[1] == 0.0
    assert torch.func.hessian(torch.nn.functional.softplus)(torch.tensor(-800.0, dtype=torch.float64)).item() == 0.0
    with mpmath.workdps(40):
        assert float(mpmath.exp(-800) / (1 + mpmath.exp(-800)) ** 2) == 0.0  # below float64's smallest number
    net = Network.from_arrays(
        [np.array([[1.0]]), np.array([[1.0]])], [np.array([-800.0]), np.array([0.0])], ["softplus", "identity"], "mse"
    )
    X, Y = np.array([[0.5]]), np.array([[1.0]])
    torch_ref = pytest.importorskip("torch_ref")
    with pytest.raises(XvalError, match="hessian"):  # its NaN, caught by the suite's check of non-finite results
        torch_ref.hessian(net, X, Y)
    assert np.isfinite(arbiter.hessian(net, X, Y)).all()


def test_softplus_curvature_is_zero_in_jax_and_torch_softplus_above_37():
    """Finding 3: softplus''(x) = e^x / (1 + e^x)^2 is 5.55e-17 at x = 37.43 (4.2e-18 at 40); jax.nn.softplus and
    torch.nn.functional.softplus give 0, torch.logaddexp (what the torch reference uses) the right value."""
    for x, expected in ((37.42994775023705, 5.551115123125775e-17), (40.0, 4.248354255291589e-18)):
        with mpmath.workdps(40):
            truth = float(mpmath.exp(x) / (1 + mpmath.exp(x)) ** 2)
        assert truth == expected
        assert jax_derivatives(jax.nn.softplus, x)[1] == 0.0, CHANGED
        assert torch_derivatives(torch.nn.functional.softplus, x)[1] == 0.0, CHANGED
        assert torch_derivatives(lambda t: torch.logaddexp(t, torch.zeros_like(t)), x)[1] == pytest.approx(
            truth, rel=1e-15
        )
    # in a network: residual r = 1e16 makes softplus'' * r visible next to softplus'^2 = 1
    b, r = 37.42994775023705, 1e16
    net = Network.from_arrays([np.array([[1.0]])], [np.array([b])], ["softplus"], "mse")
    X, Y = np.array([[0.0]]), np.array([[-r]])
    with mpmath.workdps(60):
        e, y_hat = mpmath.exp(_mp(b)), mpmath.log1p(mpmath.exp(_mp(b)))
        truth = float((e / (1 + e)) ** 2 + e / (1 + e) ** 2 * (y_hat + _mp(r)))  # f'^2 + f'' (y_hat - y)
    assert arbiter.hessian(net, X, Y)[1, 1] == pytest.approx(truth, rel=2e-16)
    jax_ref = pytest.importorskip("jax_ref")
    assert jax_ref.hessian(net, X, Y)[1, 1] == 1.0, CHANGED


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_saturated_sigmoid_and_tanh_slopes_lose_digits(name):
    """Finding 4: sigmoid'(x) as s (1 - s) and tanh'(x) as 1 - t^2: at x = 20 torch and jax give sigmoid' with a
    relative error of 3.6e-8 and tanh' = 0 (truth 1.7e-17); from x = 37 both are 0."""
    torch_f, jax_f = {"sigmoid": (torch.sigmoid, jax.nn.sigmoid), "tanh": (torch.tanh, jnp.tanh)}[name]
    for x in (20.0, 37.0):
        with mpmath.workdps(40):
            X = _mp(x)
            truth = float(mpmath.exp(-X) / (1 + mpmath.exp(-X)) ** 2 if name == "sigmoid" else 1 / mpmath.cosh(X) ** 2)
        got = [torch_derivatives(torch_f, x)[0], jax_derivatives(jax_f, x)[0]]
        if name == "sigmoid" and x == 20.0:
            assert all(3e-8 < abs(g - truth) / truth < 4e-8 for g in got), (got, truth, CHANGED)
        else:
            assert got == [0.0, 0.0], (got, truth, CHANGED)
        net = Network.from_arrays([np.array([[1.0]])], [np.array([x])], [name], "mse")
        slope = arbiter.gradient(net, np.array([[0.0]]), np.array([[0.0]]))[1]  # (f(x) - 0) f'(x)
        with mpmath.workdps(40):
            value = 1 / (1 + mpmath.exp(-X)) if name == "sigmoid" else mpmath.tanh(X)
        assert slope == pytest.approx(float(value) * truth, rel=1e-15)
