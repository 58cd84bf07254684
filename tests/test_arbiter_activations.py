"""The arbiter's activations (``xval.arbiter.formulas``): every activation with its options correctly rounded
against sympy's exact derivatives on a tiny network, bit for bit, on both sides of each kink; and at a kink, values
computed, derivatives refused with ``KinkError`` naming the unit, except where the function is smooth enough (elu
with alpha = 1 is C1: its gradient is a value there, its Hessian is not)."""

import mpmath
import numpy as np
import pytest
import sympy

from xval import Network, definitions
from xval.errors import XvalError
from xval.layers import Activation, Dense, Pool

arbiter = pytest.importorskip("xval.arbiter")

SELU_ALPHA, SELU_SCALE = (
    sympy.Rational("1.6732632423543772848170429916717"),
    sympy.Rational("1.0507009873554804934193349852946"),
)


def _exact(value):
    return sympy.Rational(float(value))  # a float64 option or input, exactly


def sympy_activation(name, options):
    """``f(x)``, the definition of ``xval.definitions.ACTIVATIONS[name]`` written in sympy (options exact)."""
    o = {key: _exact(value) for key, value in options}
    x = sympy.Symbol("x")
    erf_gelu = x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2
    tanh_gelu = x * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x + sympy.Rational("0.044715") * x**3))) / 2
    beta = o.get("beta", 1)
    softplus = sympy.log(1 + sympy.exp(beta * x)) / beta
    if "threshold" in o:
        softplus = sympy.Piecewise((x, beta * x > o["threshold"]), (softplus, True))
    formulas = {
        "leaky_relu": sympy.Piecewise((x, x > 0), (o.get("slope", sympy.Rational(1, 100)) * x, True)),
        "elu": sympy.Piecewise((x, x > 0), (o.get("alpha", 1) * (sympy.exp(x) - 1), True)),
        "selu": SELU_SCALE * sympy.Piecewise((x, x > 0), (SELU_ALPHA * (sympy.exp(x) - 1), True)),
        "gelu": erf_gelu,
        "gelu_tanh": tanh_gelu,
        "silu": x / (1 + sympy.exp(-x)),
        "logsigmoid": -sympy.log(1 + sympy.exp(-x)),
        "softplus": softplus,
    }
    return sympy.Lambda(x, formulas[name])


def tiny(name, options=(), weights=((1.5,), (-0.7,)), biases=(0.3, 0.2)):
    """Dense(1 -> 2), the activation, Dense(2 -> 1), mse: P = 7."""
    layers = [Dense(0, 1), Activation(name, tuple(options)), Dense(2, 3)]
    parameters = [np.array(weights), np.array(biases), np.array([[0.9, -1.3]]), np.array([0.1])]
    return Network.from_layers(layers, parameters, (1,), "mse")


def exact_derivatives(net, X, Y, f):
    """``(E, gradient, Hessian)`` of ``tiny``'s objective from sympy, each entry an mpmath number of 60 digits."""
    symbols = sympy.symbols("t0:7")
    W, b, V, c = (
        sympy.Matrix(2, 1, symbols[0:2]),
        sympy.Matrix(symbols[2:4]),
        sympy.Matrix(1, 2, symbols[4:6]),
        symbols[6],
    )
    total = 0
    for x, y in zip(X, Y):
        hidden = (W * sympy.Matrix([[_exact(x[0])]]) + b).applyfunc(f)
        total += ((V * hidden)[0] + c - _exact(y[0])) ** 2 / 2
    E = total / len(X)
    point = dict(zip(symbols, [_exact(t) for t in net.to_vector()]))

    def evaluate(expression):
        with mpmath.workdps(60):
            return mpmath.mpf(str(sympy.N(expression.xreplace(point), 60)))

    gradient = [sympy.diff(E, s) for s in symbols]
    hessian = [[evaluate(sympy.diff(g, s)) for s in symbols] for g in gradient]
    return evaluate(E), [evaluate(g) for g in gradient], hessian


def assert_correctly_rounded(actual, exact, what):
    actual = np.asarray(actual, dtype=np.float64)
    exact = np.vectorize(float, otypes=[np.float64])(np.asarray(exact, dtype=object))
    off = actual != exact
    assert not off.any(), (
        f"{what}: {int(off.sum())} entries not the nearest float64, first at "
        f"{tuple(np.argwhere(off)[0])}: {actual[off][0]!r} != {exact[off][0]!r}"
    )


CASES = [
    ("leaky_relu", (("slope", 0.2),)),
    ("elu", ()),
    ("elu", (("alpha", 0.5),)),
    ("selu", ()),
    ("gelu", ()),
    ("gelu_tanh", ()),
    ("silu", ()),
    ("logsigmoid", ()),
    ("softplus", (("beta", 2.0),)),
    ("softplus", (("beta", 2.0), ("threshold", 1.0))),
]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}{dict(o) or ''}" for n, o in CASES])
def test_correctly_rounded_against_sympy(name, options):
    """Samples put the pre-activations on both sides of 0 (1.5 and -0.36, -1.35 and 0.97), and softplus's
    threshold branch (beta x = 3 > 1) beside its log branch."""
    net = tiny(name, options)
    X, Y = np.array([[0.8], [-1.1]]), np.array([[0.25], [-0.5]])
    E, gradient, hessian = exact_derivatives(net, X, Y, sympy_activation(name, options))
    assert_correctly_rounded(arbiter.loss(net, X, Y), E, "loss")
    assert_correctly_rounded(arbiter.gradient(net, X, Y), gradient, "gradient")
    assert_correctly_rounded(arbiter.hessian(net, X, Y), hessian, "hessian")
    # the definitions' own float64 values agree (to their rounding) with the arbiter's forward
    hidden = definitions.activation(name).value(X @ net.parameters[0].T + net.parameters[1], **dict(options))
    np.testing.assert_allclose(arbiter.forward(net, X), hidden @ net.parameters[2].T + net.parameters[3], rtol=1e-14)


# (name, options, input at the kink, smoothness there: 0 no derivative, 1 no second derivative)
KINKS = [
    ("relu", (), 0.0, 0),
    ("leaky_relu", (("slope", 0.2),), 0.0, 0),
    ("elu", (("alpha", 0.5),), 0.0, 0),
    ("elu", (), 0.0, 1),
    ("selu", (), 0.0, 0),
    ("softplus", (("beta", 2.0), ("threshold", 1.0)), 0.5, 0),
]


@pytest.mark.parametrize("name, options, kink, smoothness", KINKS, ids=[f"{n}{dict(o) or ''}" for n, o, _, _ in KINKS])
def test_at_the_kink_values_are_computed_and_missing_derivatives_refused(name, options, kink, smoothness):
    net = tiny(name, options, weights=((1.0,), (1.0,)), biases=(kink, 0.25))  # unit 0 exactly at the kink
    X, Y = np.array([[0.0]]), np.array([[0.5]])
    value = definitions.activation(name).value(np.array([kink, 0.25]), **dict(options))
    assert arbiter.forward(net, X)[0, 0] == pytest.approx(0.9 * value[0] - 1.3 * value[1] + 0.1, rel=1e-15)
    assert arbiter.loss(net, X, Y) > 0
    pattern = rf"{name}.* at layer 1, sample 0, unit 0: its input is exactly"
    if smoothness == 0:
        with pytest.raises(arbiter.KinkError, match=pattern) as info:
            arbiter.gradient(net, X, Y)
        assert isinstance(info.value, XvalError) and "no derivative" in str(info.value) or name == "softplus"
        return
    gradient = arbiter.gradient(net, X, Y)  # elu with alpha = 1: C1, so the gradient is a value
    residual = arbiter.forward(net, X)[0, 0] - 0.5
    assert gradient[2] == pytest.approx(residual * 0.9 * 1.0, rel=1e-15)  # d/db_0: elu'(0) = 1 from either side
    with pytest.raises(arbiter.KinkError, match=pattern + r" 0, where elu has no second derivative"):
        arbiter.hessian(net, X, Y)


def test_max_pooling_ties_are_refused_where_they_depend_on_the_parameters():
    """Dense(1 -> 4) on (1, 1) samples, relu, MaxPool1d(2): a tie of two parameter-dependent units has no
    derivative; a tie of two relu zeros (constants) is harmless."""
    layers = [Dense(0, 1), Activation("relu"), Pool("max", 1, (2,), (2,), (0,))]
    bias = np.array([0.5, 0.5, -0.5, -0.5])
    net = Network.from_layers(layers, [np.array([[1.0], [1.0], [-1.0], [-1.0]]), bias], (1, 1), "mse")
    X, Y = np.array([[[2.0]]]), np.zeros((1, 1, 2))  # pre-activations 2.5, 2.5, -2.5, -2.5
    assert arbiter.forward(net, X).tolist() == [[[2.5, 0.0]]]
    with pytest.raises(
        arbiter.KinkError,
        match=r"MaxPool1d.* at layer 2, sample 0, unit \(0, 0\): 2 entries of its "
        r"window tie for the maximum",
    ):
        arbiter.gradient(net, X, Y)
    with pytest.raises(arbiter.KinkError, match=r"unit \(0, 1\)"):  # -1.5, -1.5 (zeros: fine), 1.5, 1.5 (a tie)
        arbiter.gradient(net, -X, Y)
    net = Network.from_layers(layers, [np.array([[1.0], [1.0], [-1.0], [-2.0]]), bias], (1, 1), "mse")
    gradient = arbiter.gradient(net, -X, Y)  # -1.5, -1.5 (zeros), 1.5, 3.5: the output is 3.5 = -2 x + b_3
    assert gradient.tolist() == [0.0, 0.0, 0.0, -7.0, 0.0, 0.0, 0.0, 3.5]
