"""The arbiter (``xval.arbiter``): correctly rounded against sympy's exact derivatives on tiny networks for every
smooth activation and both losses, right on the saturated softmax where float64 engines lose digits, a clear error
at a relu kink and beyond its size limits, its precision setting, and selectable like any engine."""

import os
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import sympy

from xval import Network, cases, config, engines
from xval.errors import ConfigError, XvalError

arbiter = pytest.importorskip("xval.arbiter")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOOTH = ["identity", "sigmoid", "tanh", "softplus"]
SYMPY_ACTIVATIONS = {
    "identity": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + sympy.exp(-x)),
    "tanh": sympy.tanh,
    "softplus": lambda x: sympy.log(1 + sympy.exp(x)),
}


def _exact(value):
    return sympy.Rational(float(value))  # the float64 value, exactly


def sympy_objective(net, X, Y):
    """``(E, symbols)``: the batch-mean loss as an exact sympy expression of the parameter symbols (contract order)."""
    symbols = sympy.symbols(f"t0:{net.n_params}")
    values = iter(symbols)
    layers = []
    for w, b in zip(net.weights, net.biases):
        W = sympy.Matrix(w.shape[0], w.shape[1], lambda i, j: next(values))
        layers.append((W, sympy.Matrix([next(values) for _ in range(b.size)])))
    total = 0
    for x, y in zip(X, Y):
        z = sympy.Matrix([_exact(v) for v in x])
        for (W, B), name in zip(layers, net.activations):
            z = (W * z + B).applyfunc(SYMPY_ACTIVATIONS[name])
        target = [_exact(v) for v in y]
        if net.loss == "mse":
            total += sum((p - t) ** 2 for p, t in zip(z, target)) / 2
        else:
            log_normaliser = sympy.log(sum(sympy.exp(p) for p in z))
            total -= sum(t * (p - log_normaliser) for p, t in zip(z, target))
    return total / len(X), symbols


def _evaluate(expression, point):
    """``expression`` at ``point`` to 60 digits, as an mpmath number of that precision."""
    with mpmath.workdps(60):
        return mpmath.mpf(str(expression.evalf(60, subs=point)))


def exact_derivatives(net, X, Y):
    """``(E, gradient, Hessian)`` of the batch-mean loss from sympy's exact differentiation, to 60 digits (mpmath)."""
    E, symbols = sympy_objective(net, X, Y)
    point = dict(zip(symbols, [_exact(t) for t in net.to_vector()]))
    gradient = [sympy.diff(E, s) for s in symbols]
    p = len(symbols)
    hessian = [[None] * p for _ in range(p)]
    for i in range(p):
        for j in range(i, p):  # symmetric: half the differentiations
            hessian[i][j] = hessian[j][i] = _evaluate(sympy.diff(gradient[i], symbols[j]), point)
    return _evaluate(E, point), [_evaluate(g, point) for g in gradient], hessian


def assert_correctly_rounded(actual, exact, what):
    """Every entry is the float64 nearest to the exact value (``exact``: mpmath numbers of 60 digits, rounded to
    nearest here), bit for bit."""
    actual = np.asarray(actual)
    exact = np.vectorize(float, otypes=[np.float64])(np.asarray(exact, dtype=object))
    off = actual != exact
    if off.any():
        first = tuple(np.argwhere(off)[0])
        ulps = abs(actual[first] - exact[first]) / np.spacing(abs(exact[first]))
        raise AssertionError(
            f"{what}: {int(off.sum())} entries not correctly rounded, first at {first}: "
            f"{actual[first]!r} != {exact[first]!r} ({ulps:.1f} ulp)"
        )


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("activation", SMOOTH)
def test_correctly_rounded_against_sympy(activation, loss):
    net = Network.random([2, 1, 2], activation, loss, seed=3)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2, 2))
    Y = cases.make_targets("soft" if loss == "cross_entropy" else "regression", rng, net, X, "float64")
    v = cases.unit_direction(net, seed=5)
    E, gradient, hessian = exact_derivatives(net, X, Y)
    with mpmath.workdps(60):
        exact_hvp = [sum(h * mpmath.mpf(float(vj)) for h, vj in zip(row, v)) for row in hessian]
    assert_correctly_rounded(arbiter.loss(net, X, Y), E, "loss")
    assert_correctly_rounded(arbiter.gradient(net, X, Y), gradient, "gradient")
    assert_correctly_rounded(arbiter.hessian(net, X, Y), hessian, "hessian")
    assert_correctly_rounded(arbiter.hvp(net, X, Y, v), exact_hvp, "hvp")
    rows, cols = net.param_slices[1], net.param_slices[0]
    block = [row[cols] for row in hessian[rows]]
    assert_correctly_rounded(arbiter.hessian_block(net, X, Y, 1, 0), block, "hessian_block(1, 0)")


def test_per_sample_gradients_and_forward_against_sympy():
    net = Network.random([2, 2, 2], "tanh", "mse", seed=6)
    X, Y = np.random.default_rng(7).standard_normal((2, 2)), np.random.default_rng(8).standard_normal((2, 2))
    rows = []
    for n in range(2):
        E, symbols = sympy_objective(net, X[n : n + 1], Y[n : n + 1])
        point = dict(zip(symbols, [_exact(t) for t in net.to_vector()]))
        rows.append([_evaluate(sympy.diff(E, s), point) for s in symbols])
    rows = np.array(rows, dtype=object)
    assert_correctly_rounded(arbiter.per_sample_gradients(net, X, Y), rows, "per_sample_gradients")
    hidden = np.tanh(X @ net.weights[0].T + net.biases[0])  # float64 only as a loose check of the layout
    np.testing.assert_allclose(arbiter.forward(net, X), hidden @ net.weights[1].T + net.biases[1], rtol=1e-14)


def test_saturated_softmax_against_the_closed_form():
    """Identity 4->3, cross-entropy, weights of scale 1000: the Hessian is
    mean_n (sum_k y_nk) (diag p - p p^T) (x) [x;1][x;1]^T (the float64 target rows sum to 1 only to rounding).
    Written with 1 - p_k as the sum of the other probabilities it has no cancellation; 300 digits spare the rest."""
    problem = cases.problem(
        dict(sizes=[4, 3], activations=["identity"], loss="cross_entropy", targets="soft", n=5, weight_scale=1000.0)
    )
    net, X = problem.net, problem.X
    with mpmath.workdps(300):
        W, b = mpmath.matrix(net.weights[0].tolist()), mpmath.matrix(net.biases[0].tolist())
        H = mpmath.zeros(15, 15)
        for x, y in zip(X, problem.Y):
            e = [mpmath.exp(a) for a in W * mpmath.matrix(x.tolist()) + b]
            p = [value / sum(e) for value in e]
            z = list(x) + [1]
            index = lambda k, i: k * 4 + i if i < 4 else 12 + k  # noqa: E731  (W_0 row-major, then b_0)
            for k in range(3):
                for l in range(3):
                    c = p[k] * sum(p[j] for j in range(3) if j != k) if k == l else -p[k] * p[l]
                    c *= sum(mpmath.mpf(float(t)) for t in y)
                    for i in range(5):
                        for j in range(5):
                            H[index(k, i), index(l, j)] += c * z[i] * z[j] / 5
        exact = np.array(H.tolist(), dtype=float)
        exact_hvp = np.array((H * mpmath.matrix(problem.v.tolist())).tolist(), dtype=float).ravel()
    assert np.abs(exact).max() < 1e-38  # the regime of the finding: every entry about 1e-39 or far smaller
    assert_correctly_rounded(arbiter.hessian(net, X, problem.Y), exact, "saturated hessian")
    assert_correctly_rounded(arbiter.hvp(net, X, problem.Y, problem.v), exact_hvp, "saturated hvp")


def test_relu_at_the_kink_is_an_error_naming_the_unit_and_its_value_is_defined():
    net = Network.from_arrays(
        [np.array([[1.0, -1.0]]), np.array([[2.0]])], [np.array([0.0]), np.array([0.0])], ["relu", "identity"], "mse"
    )
    X, Y = np.array([[1.0, 2.0], [3.0, 3.0]]), np.full((2, 1), 0.5)  # sample 1: 3 - 3 = 0 exactly
    with pytest.raises(arbiter.KinkError, match=r"relu at layer 1, sample 1, unit 0: its input is exactly 0") as info:
        arbiter.gradient(net, X, Y)
    assert isinstance(info.value, XvalError)
    assert arbiter.gradient(net, X[:1], Y[:1]).shape == (5,)  # away from the kink: a value
    # values are defined at the kink: relu(0) = 0, so both outputs are 0 and the loss is 0.5 * 0.5^2
    assert arbiter.forward(net, X).tolist() == [[0.0], [0.0]] and arbiter.loss(net, X, Y) == 0.125


@pytest.mark.parametrize("quantity, sizes, n", [("gradient", [40, 60, 40, 10], 400), ("hessian", [10, 20, 10], 16)])
def test_beyond_the_limits_is_an_error_naming_the_limit(quantity, sizes, n):
    net = Network.random(sizes, "tanh", "mse")
    X, Y = np.zeros((n, sizes[0])), np.zeros((n, sizes[-1]))
    with pytest.raises(
        arbiter.ArbiterLimitError, match=rf"(about|at least) \S+ high-precision operations \(N = {n} samples .* at most"
    ) as info:
        getattr(arbiter, quantity)(net, X, Y)
    assert isinstance(info.value, XvalError) and f"P = {net.n_params}" in str(info.value)


def test_digits_setting(monkeypatch):
    assert config.arbiter_digits({}) == 40 and config.arbiter_digits({"XVAL_ARBITER_DIGITS": "60"}) == 60
    for bad in ("abc", "10", "5000", "40.5"):
        with pytest.raises(ConfigError, match=r"XVAL_ARBITER_DIGITS.*20 to 1000"):
            config.arbiter_digits({"XVAL_ARBITER_DIGITS": bad})
    seen = []
    original = mpmath.workdps
    monkeypatch.setattr(arbiter.mpmath, "workdps", lambda digits: seen.append(digits) or original(digits))
    monkeypatch.setenv("XVAL_ARBITER_DIGITS", "25")
    net = Network.random([2, 2], "identity", "mse")
    arbiter.gradient(net, np.ones((1, 2)), np.ones((1, 2)))
    assert seen[:2] == [25, 50]  # computed at the setting, checked at twice it


def test_selectable_like_any_engine(tmp_path):
    assert engines.load("arbiter") is arbiter and "arbiter" in engines.available_names()
    env = dict(os.environ, XVAL_BACKEND="manual,arbiter", PYTHONPATH=ROOT)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "-k",
            "mlp-4x8x3-tanh-mse-N5",
            os.path.join(ROOT, "tests", "test_comparisons.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "hessian_block                      arbiter" in result.stdout  # compared with manual: a row of the table
