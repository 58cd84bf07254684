"""Central finite differences of the loss: an oracle independent of every derivative formula.

Deliberately ``O(|W|^2)``: two forward passes (each ``O(|W|)``) per parameter.
"""
import numpy as np

from .backprop import loss
from .data import check_data

DEFAULT_STEPS = {"float64": 1e-6, "float32": 3e-3}


def finite_difference_gradient(net, X, Y, eps=None):
    """``(E(theta + eps e_i) - E(theta - eps e_i)) / (2 eps)`` for every parameter ``i``, ``(P,)``.

    ``eps`` defaults to a step suited to the network's dtype (``DEFAULT_STEPS``).
    """
    X, Y = check_data(net, X, Y)
    if eps is None:
        eps = DEFAULT_STEPS[net.dtype.name]
    if not eps > 0:
        raise ValueError(f"eps must be a positive step, got {eps!r}")
    theta = net.to_vector()
    grad = np.empty(theta.shape, dtype=np.float64)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = eps
        grad[i] = (loss(net.from_vector(theta + step), X, Y) - loss(net.from_vector(theta - step), X, Y)) / (2 * eps)
    return grad
