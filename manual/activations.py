"""Elementwise activations: each one is ``f``, ``f'`` and ``f''`` side by side.

Adding an activation means adding one ``Activation`` record here, its definition in ``xval/definitions.py``
and one line in each reference engine's ``activations.py``. Every formula is written to stay finite, without overflow warnings,
for large ``|x|`` (checked at ``|x| = 1000``).
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from scipy.special import expit

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


ACTIVATIONS = {
    a.name: a
    for a in [
        Activation("identity", _identity, _ones, _zeros, "f(x) = x", sign_shift=0.0, flat=True),
        Activation("sigmoid", _sigmoid, _sigmoid_d1, _sigmoid_d2, "f(x) = 1 / (1 + exp(-x))", max_slope=0.25,
                   sign_shift=1.0, f_df=_sigmoid_f_df, d2f_from=_sigmoid_d2_from),
        Activation("tanh", _tanh, _tanh_d1, _tanh_d2, "f(x) = tanh(x)", max_slope=1.0, sign_shift=0.0, f_df=_tanh_f_df,
                   d2f_from=_tanh_d2_from),
        Activation("relu", _relu, _step, _zeros, "f(x) = max(x, 0)", can_die=True, flat=True),
        Activation("softplus", _softplus, _sigmoid, _sigmoid_d1, "f(x) = log(1 + exp(x))"),
    ]
}


def get_activation(name):
    """The registered ``Activation`` called ``name``; an error listing the valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise unknown_name("activation", name, ACTIVATIONS) from None
