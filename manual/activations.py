"""Elementwise activations: each one is ``f``, ``f'`` and ``f''`` side by side.

Adding an activation means adding one ``Activation`` record here, its definition in ``xval/definitions.py``
and one line in each reference engine's ``activations.py``. Every formula is written to stay finite, without overflow
warnings, for large ``|x|`` (checked at ``|x| = 1000``).
"""

from dataclasses import dataclass
from typing import Callable, Optional

import functools

import numpy as np
from scipy.special import erfc, expit

from xval.definitions import SELU_ALPHA, SELU_SCALE
from xval.errors import unknown_name


@dataclass(frozen=True)
class Activation:
    """``f``, ``f'`` and ``f''`` of one activation; each takes an array and, optionally, the array-API namespace
    ``xp`` of its library (numpy by default). ``f_df(x, xp)`` gives ``(f(x), f'(x))`` from shared intermediate
    values, for the forward pass of the derivatives (one ``exp`` per layer instead of two)."""

    name: str
    f: Callable
    df: Callable
    d2f: Callable
    formula: str
    # Facts the analyses use: the largest slope max f' (for saturating activations: diagnose measures f' against it),
    # the shift c of a sign symmetry f(-a) = c - f(a) (symmetry flips units only when there is one), and whether a
    # unit can die (f' = 0 on a half-line: diagnose counts dead units).
    max_slope: Optional[float] = None
    sign_shift: Optional[float] = None
    can_die: bool = False
    f_df: Optional[Callable] = None
    # f'' from the values the forward pass already holds (x, f(x), f'(x)), where that is cheaper than from x alone;
    # ``flat``: f'' is 0 everywhere (a.e. for relu), so the curvature terms it multiplies vanish.
    d2f_from: Optional[Callable] = None
    flat: bool = False

    def value_and_slope(self, x, xp=np):
        """``(f(x), f'(x))``."""
        if self.f_df is not None:
            return self.f_df(x, xp)
        return self.f(x, xp), self.df(x, xp)

    def curvature(self, x, value, slope, xp=np):
        """``f''(x)`` given ``value = f(x)`` and ``slope = f'(x)``; ``None`` for an activation whose ``f''`` is 0."""
        if self.flat:
            return None
        if self.d2f_from is not None:
            return self.d2f_from(value, slope)
        return self.d2f(x, xp)


def _sigmoid_parts(x, xp):
    """``(ax, e, r)``: ``|x|``, ``e = exp(-|x|)`` and ``r = 1 / (1 + e)``; ``sigma(x) = r`` for ``x >= 0``, ``e r``
    below, and ``sigma'(x) = e r^2``."""
    ax = xp.abs(x)
    e = xp.exp(-ax)
    return ax, e, 1.0 / (1.0 + e)


def _sigmoid_from(x, ax, r, xp):
    """``sigma(x) = r exp(min(x, 0))``: ``exp(min(x, 0))`` is ``e`` below 0 (the same ``exp(-|x|)``, bit for bit)
    and 1 above, so this is ``where(x >= 0, r, e r)`` in cheaper operations."""
    return r * xp.exp(0.5 * (x - ax))


# scipy's ``expit`` is one ufunc call, but it computes entry by entry (about 5 ns an entry here) where numpy's exp is
# vectorized: from this many entries on, the array-API formulas' eight calls are faster (measured, sigma and sigma':
# 1,024 entries 9.1 against 13.7 us, 8,192 entries 49 against 99 us; 256 entries 5.2 against 4.1).
EXPIT_ENTRIES = 1024


def _by_expit(x, xp):
    """Whether sigma of ``x`` goes through scipy's ``expit``: on numpy floating arrays of fewer than ``EXPIT_ENTRIES``
    entries it is sigma in one pass (one ufunc call instead of eight), accurate to an ulp or two for every x and
    raising no floating-point events, and sigma' = sigma(x) sigma(-x) keeps full relative accuracy on both tails (no
    1 - sigma). Larger arrays, other libraries (and numpy object arrays, on which the tests run this code
    symbolically) take the array-API formulas, as accurate (``tests/test_activation_derivatives_sympy.py``)."""
    return xp is np and x.dtype.kind == "f" and x.size < EXPIT_ENTRIES


def _sigmoid(x, xp=np):
    """sigma(x) = 1 / (1 + exp(-x)), via exp(-|x|) so that nothing overflows."""
    if _by_expit(x, xp):
        return expit(x)
    ax, _, r = _sigmoid_parts(x, xp)
    return _sigmoid_from(x, ax, r, xp)


def _sigmoid_d1(x, xp=np):
    """sigma' = sigma (1 - sigma), written as e / (1 + e)^2 with e = exp(-|x|) (sigma' is even), or on numpy
    sigma(x) sigma(-x).

    The product form loses relative accuracy for large x, where 1 - sigma rounds; these forms keep it.
    """
    if _by_expit(x, xp):
        return expit(x) * expit(-x)
    _, e, r = _sigmoid_parts(x, xp)
    return (e * r) * r


def _sigmoid_f_df(x, xp=np):
    """``(sigma, sigma')`` from one ``exp(-|x|)`` (on numpy: ``expit(x)`` and ``expit(-x)``)."""
    if _by_expit(x, xp):
        s = expit(x)
        return s, s * expit(-x)
    ax, e, r = _sigmoid_parts(x, xp)
    return _sigmoid_from(x, ax, r, xp), (e * r) * r


def _sigmoid_d2(x, xp=np):
    """sigma'' = sigma (1 - sigma) (1 - 2 sigma)."""
    s, d1 = _sigmoid_f_df(x, xp)
    return d1 * (1.0 - 2.0 * s)


def _sigmoid_d2_from(s, d1):
    """sigma'' = sigma' (1 - 2 sigma), from sigma and sigma'."""
    return d1 * (1.0 - 2.0 * s)


def _tanh(x, xp=np):
    return xp.tanh(x)


def _tanh_d1(x, xp=np):
    """tanh' = 1 - tanh^2."""
    t = xp.tanh(x)
    return 1.0 - t * t


def _tanh_f_df(x, xp=np):
    t = xp.tanh(x)
    return t, 1.0 - t * t


def _tanh_d2(x, xp=np):
    """tanh'' = -2 tanh (1 - tanh^2)."""
    t = xp.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def _tanh_d2_from(t, d1):
    """tanh'' = -2 tanh tanh', from tanh and tanh'."""
    return -2.0 * t * d1


def _identity(x, xp=np):
    return x


def _ones(x, xp=np):
    if xp is np:  # the slope of every identity layer: np.ones_like costs 1 us, this 0.4
        ones = np.empty(x.shape, x.dtype)
        ones.fill(1)
        return ones
    return xp.ones_like(x)


def _zeros(x, xp=np):
    return xp.zeros_like(x)


def _relu(x, xp=np):
    return xp.where(x > 0, x, xp.zeros_like(x))


def _step(x, xp=np):
    """relu' with f'(0) = 0, as torch and jax."""
    return xp.where(x > 0, xp.ones_like(x), xp.zeros_like(x))


def _softplus(x, xp=np):
    """log(1 + exp(x)) without overflow."""
    return xp.logaddexp(x, xp.zeros_like(x))


def _where(condition, a, b, xp):
    return xp.where(condition, a, b)


def _positive(x, xp):
    return x > 0


def _leaky_relu(slope):
    """x for x > 0, slope x otherwise; f'(0) = slope, as torch's backward (``x > 0 ? 1 : slope``)."""

    def f(x, xp=np):
        return xp.where(x > 0, x, slope * x)

    def df(x, xp=np):
        return xp.where(x > 0, xp.ones_like(x), xp.full_like(x, slope))

    return f, df, _zeros


def _elu(alpha, scale=1.0):
    """scale (x for x > 0, alpha (exp(x) - 1) otherwise); at 0, f' takes the exp branch (alpha) and f'' the linear
    one (0), as torch's backward and double backward do."""

    def negative(x, xp):
        return xp.where(x > 0, 0.0 * x, x)  # min(x, 0), as the same type as x (no overflow in exp for large x)

    def f(x, xp=np):
        return scale * xp.where(x > 0, x, alpha * xp.expm1(negative(x, xp)))

    def df(x, xp=np):
        return scale * xp.where(x > 0, xp.ones_like(x), alpha * xp.exp(negative(x, xp)))

    def d2f(x, xp=np):
        return scale * xp.where(x < 0, alpha * xp.exp(negative(x, xp)), 0.0 * x)

    return f, df, d2f


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def _normal_cdf(x, xp):
    """Phi(x) = erfc(-x / sqrt 2) / 2 (numpy: scipy's erfc, accurate on both tails; elsewhere the array API's
    formula through tanh-free erf is not in the standard: 0.5 (1 + erf) via the library when it has one)."""
    if xp is np and x.dtype.kind == "O":  # objects (the symbolic tests): their own erfc
        return 0.5 * np.frompyfunc(lambda v: v.erfc(), 1, 1)(-x * _SQRT_HALF)
    if xp is np:
        return 0.5 * erfc(-x * _SQRT_HALF)
    erf = getattr(xp, "erf", None)
    if erf is None:
        import math

        return xp.asarray(np.vectorize(lambda v: 0.5 * math.erfc(-v * _SQRT_HALF))(np.asarray(x)), device=x.device)
    return 0.5 * (1.0 + erf(x * _SQRT_HALF))


def _gelu(x, xp=np):
    """x Phi(x)."""
    return x * _normal_cdf(x, xp)


def _gelu_d1(x, xp=np):
    """Phi(x) + x phi(x)."""
    return _normal_cdf(x, xp) + x * _INV_SQRT_2PI * xp.exp(-0.5 * x * x)


def _gelu_d2(x, xp=np):
    """phi(x) (2 - x^2)."""
    return _INV_SQRT_2PI * xp.exp(-0.5 * x * x) * (2.0 - x * x)


_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715


def _gelu_tanh_parts(x, xp):
    """``(u, u', u'')`` of ``u = sqrt(2/pi) (x + 0.044715 x^3)``."""
    u = _GELU_C * (x + _GELU_A * x * x * x)
    return u, _GELU_C * (1.0 + 3.0 * _GELU_A * x * x), _GELU_C * 6.0 * _GELU_A * x


def _gelu_tanh(x, xp=np):
    """x (1 + tanh u) / 2 = x sigma(2u): written with sigma, which keeps its digits where tanh u is near -1."""
    u, _, _ = _gelu_tanh_parts(x, xp)
    return x * _sigmoid(2.0 * u, xp)


def _gelu_tanh_d1(x, xp=np):
    """sigma(2u) + 2 x u' sigma'(2u)."""
    u, du, _ = _gelu_tanh_parts(x, xp)
    return _sigmoid(2.0 * u, xp) + 2.0 * x * du * _sigmoid_d1(2.0 * u, xp)


def _gelu_tanh_d2(x, xp=np):
    """sigma'(2u) (4 u' + 2 x u'' - 4 x u'^2 tanh u): sigma' = sigma (1 - sigma) and 1 - 2 sigma(2u) = -tanh u
    without cancellation on either tail."""
    u, du, d2u = _gelu_tanh_parts(x, xp)
    return _sigmoid_d1(2.0 * u, xp) * (4.0 * du + 2.0 * x * d2u - 4.0 * x * du * du * xp.tanh(u))


def _silu(x, xp=np):
    """x sigma(x)."""
    return x * _sigmoid(x, xp)


def _silu_d1(x, xp=np):
    """sigma(x) (1 + x sigma(-x))."""
    return _sigmoid(x, xp) * (1.0 + x * _sigmoid(-x, xp))


def _silu_d2(x, xp=np):
    """sigma(x) sigma(-x) (2 + x (1 - 2 sigma(x)))."""
    s = _sigmoid(x, xp)
    return _sigmoid_d1(x, xp) * (2.0 + x * (1.0 - 2.0 * s))


def _logsigmoid(x, xp=np):
    """-log(1 + exp(-x))."""
    return -xp.logaddexp(-x, xp.zeros_like(x))


def _logsigmoid_d1(x, xp=np):
    """sigma(-x)."""
    return _sigmoid(-x, xp)


def _logsigmoid_d2(x, xp=np):
    """-sigma(x) sigma(-x)."""
    return -_sigmoid_d1(x, xp)


def _softplus_with(beta, threshold):
    """torch's Softplus(beta, threshold): log(1 + exp(beta x)) / beta, and x where beta x > threshold (f' = 1 there,
    as torch's backward)."""

    def above(x):
        return (beta * x > threshold) if threshold is not None else None

    def f(x, xp=np):
        value = xp.logaddexp(beta * x, xp.zeros_like(x)) / beta
        return value if threshold is None else xp.where(above(x), x, value)

    def df(x, xp=np):
        value = _sigmoid(beta * x, xp)
        return value if threshold is None else xp.where(above(x), xp.ones_like(x), value)

    def d2f(x, xp=np):
        value = beta * _sigmoid_d1(beta * x, xp)
        return value if threshold is None else xp.where(above(x), xp.zeros_like(x), value)

    return f, df, d2f


ACTIVATIONS = {
    a.name: a
    for a in [
        Activation("identity", _identity, _ones, _zeros, "f(x) = x", sign_shift=0.0, flat=True),
        Activation(
            "sigmoid",
            _sigmoid,
            _sigmoid_d1,
            _sigmoid_d2,
            "f(x) = 1 / (1 + exp(-x))",
            max_slope=0.25,
            sign_shift=1.0,
            f_df=_sigmoid_f_df,
            d2f_from=_sigmoid_d2_from,
        ),
        Activation(
            "tanh",
            _tanh,
            _tanh_d1,
            _tanh_d2,
            "f(x) = tanh(x)",
            max_slope=1.0,
            sign_shift=0.0,
            f_df=_tanh_f_df,
            d2f_from=_tanh_d2_from,
        ),
        Activation("relu", _relu, _step, _zeros, "f(x) = max(x, 0)", can_die=True, flat=True),
        Activation("softplus", _softplus, _sigmoid, _sigmoid_d1, "f(x) = log(1 + exp(x))"),
        Activation("selu", *_elu(SELU_ALPHA, SELU_SCALE), "f(x) = scale (x for x > 0, alpha (exp(x) - 1) otherwise)"),
        Activation("gelu", _gelu, _gelu_d1, _gelu_d2, "f(x) = x Phi(x)"),
        Activation(
            "gelu_tanh",
            _gelu_tanh,
            _gelu_tanh_d1,
            _gelu_tanh_d2,
            "f(x) = x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2",
        ),
        Activation("silu", _silu, _silu_d1, _silu_d2, "f(x) = x sigma(x)"),
        Activation("logsigmoid", _logsigmoid, _logsigmoid_d1, _logsigmoid_d2, "f(x) = -log(1 + exp(-x))"),
    ]
}

# Activations with options: the record is built per option set (``get_activation(name, options)``); the table above
# holds each with torch's default options.
_WITH_OPTIONS = {
    "leaky_relu": lambda slope=0.01: Activation(
        "leaky_relu", *_leaky_relu(slope), "f(x) = x for x > 0, slope x", flat=True
    ),
    "elu": lambda alpha=1.0: Activation("elu", *_elu(alpha), "f(x) = x for x > 0, alpha (exp(x) - 1) otherwise"),
    "softplus": lambda beta=1.0, threshold=None: Activation(
        "softplus", *_softplus_with(beta, threshold), "f(x) = log(1 + exp(beta x)) / beta (x above the threshold)"
    ),
}


ACTIVATIONS["leaky_relu"] = _WITH_OPTIONS["leaky_relu"]()
ACTIVATIONS["elu"] = _WITH_OPTIONS["elu"]()


def get_activation(name, options=()):
    """The ``Activation`` called ``name`` with ``options`` (``((key, value), ...)``, as ``xval.layers.Activation``
    holds them); an error listing the valid names otherwise."""
    if options or (name in _WITH_OPTIONS and name not in ACTIVATIONS):
        return _bound(name, tuple(options))
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise unknown_name("activation", name, {**ACTIVATIONS, **_WITH_OPTIONS}) from None


@functools.lru_cache(maxsize=None)
def _bound(name, options):
    if name not in _WITH_OPTIONS:
        if name in ACTIVATIONS and not options:
            return ACTIVATIONS[name]
        raise unknown_name("activation", name, {**ACTIVATIONS, **_WITH_OPTIONS})
    return _WITH_OPTIONS[name](**dict(options))
