"""Elementwise activations: each one is ``f``, ``f'`` and ``f''`` side by side.

Adding an activation means adding one ``Activation`` record here, its definition in ``xval/definitions.py``
and one line in each reference engine's ``activations.py``. Every formula is written to stay finite, without overflow warnings,
for large ``|x|`` (checked at ``|x| = 1000``).
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from xval.errors import unknown_name


@dataclass(frozen=True)
class Activation:
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


def _sigmoid(x):
    """sigma(x) = 1 / (1 + exp(-x)), via exp(-|x|) so that nothing overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_d1(x):
    """sigma' = sigma (1 - sigma), written as e / (1 + e)^2 with e = exp(-|x|) (sigma' is even).

    The product form loses relative accuracy for large x, where 1 - sigma rounds; this form keeps it.
    """
    e = np.exp(-np.abs(x))
    return e / ((1.0 + e) * (1.0 + e))


def _sigmoid_d2(x):
    """sigma'' = sigma (1 - sigma) (1 - 2 sigma)."""
    return _sigmoid_d1(x) * (1.0 - 2.0 * _sigmoid(x))


def _tanh_d1(x):
    """tanh' = 1 - tanh^2."""
    t = np.tanh(x)
    return 1.0 - t * t


def _tanh_d2(x):
    """tanh'' = -2 tanh (1 - tanh^2)."""
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


ACTIVATIONS = {
    a.name: a
    for a in [
        Activation("identity", lambda x: x, np.ones_like, np.zeros_like, "f(x) = x", sign_shift=0.0),
        Activation("sigmoid", _sigmoid, _sigmoid_d1, _sigmoid_d2, "f(x) = 1 / (1 + exp(-x))", max_slope=0.25, sign_shift=1.0),
        Activation("tanh", np.tanh, _tanh_d1, _tanh_d2, "f(x) = tanh(x)", max_slope=1.0, sign_shift=0.0),
        Activation(
            "relu",
            lambda x: np.where(x > 0, x, np.zeros_like(x)),
            lambda x: np.where(x > 0, np.ones_like(x), np.zeros_like(x)),  # f'(0) = 0, as torch and jax
            np.zeros_like,
            "f(x) = max(x, 0)",
            can_die=True,
        ),
        Activation(
            "softplus",
            lambda x: np.logaddexp(x, np.zeros_like(x)),  # log(1 + exp(x)) without overflow
            _sigmoid,
            _sigmoid_d1,
            "f(x) = log(1 + exp(x))",
        ),
    ]
}


def get_activation(name):
    """The registered ``Activation`` called ``name``; an error listing the valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise unknown_name("activation", name, ACTIVATIONS) from None
