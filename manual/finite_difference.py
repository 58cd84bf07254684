"""Central finite differences of the loss: an oracle independent of every derivative formula.

Deliberately ``O(|W|^2)``: two forward passes (each ``O(|W|)``) per parameter.
"""
from types import SimpleNamespace

import numpy as np

from xval.checks import check_data
from xval.errors import check_positive

from .backprop import forward_pass
from .losses import get_loss

DEFAULT_STEPS = {"float64": 1e-6, "float32": 3e-3}


def finite_difference_gradient(net, X, Y, eps=None):
    """``(E(theta + eps e_i) - E(theta - eps e_i)) / (2 eps)`` for every parameter ``i``, ``(P,)``.

    ``eps`` defaults to a step suited to the network's dtype (``DEFAULT_STEPS``). Each parameter is
    perturbed in place in a private copy of the weights, so that a step costs two forward passes and
    nothing else.
    """
    X, Y = check_data(net, X, Y)
    if eps is None:
        eps = DEFAULT_STEPS[net.dtype.name]
    check_positive(
        "eps", eps, f"pass a small step such as {DEFAULT_STEPS[net.dtype.name]:g}, or eps=None for the default of {net.dtype.name}"
    )
    params = SimpleNamespace(
        weights=[w.copy() for w in net.weights], biases=[b.copy() for b in net.biases], activations=net.activations
    )
    loss_value = get_loss(net.loss).value

    def objective():
        return float(np.mean(loss_value(forward_pass(params, X)[1][-1], Y)))

    grad = np.empty(net.n_params, dtype=np.float64)
    i = 0
    for w, b in zip(params.weights, params.biases):
        for array in (w.reshape(-1), b):  # a view: writing it perturbs the layer
            for k in range(array.size):
                original = array[k]
                array[k] = original + eps
                upper = objective()
                array[k] = original - eps
                lower = objective()
                array[k] = original
                grad[i] = (upper - lower) / (2 * eps)
                i += 1
    return grad
