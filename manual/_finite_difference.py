"""Central finite differences of the loss: an oracle independent of every derivative formula.

Deliberately ``O(|W|^2)``: two forward passes (each ``O(|W|)``) per parameter.
"""

from types import SimpleNamespace

import numpy as np

from xval.checks import check_data, overflow_error
from xval.errors import ArgumentError, check_positive

from ._dense_first_order import forward_pass
from .losses import get_loss

DEFAULT_STEPS = {"float64": 1e-6, "float32": 3e-3}
# Steps below 16 machine epsilons of the dtype change a parameter of size 1 by a few units in the last place, so
# the difference quotient is rounding; steps above 1 measure a secant, not a derivative.
SMALLEST_STEP_EPSILONS, LARGEST_STEP = 16, 1.0


def check_step(eps, dtype):
    """``eps`` as a float after checking that it lies in ``[16 eps_dtype, 1]``, the steps that can estimate a
    derivative in ``dtype``."""
    default = DEFAULT_STEPS[dtype.name]
    check_positive("eps", eps, f"pass a small step such as {default:g}, or eps=None for the default of {dtype.name}")
    lowest = SMALLEST_STEP_EPSILONS * float(np.finfo(dtype).eps)
    if not lowest <= eps <= LARGEST_STEP:
        raise ArgumentError(
            f"eps is {eps!r}, outside the steps that estimate a derivative in {dtype.name}: "
            f"[{lowest:.3g}, {LARGEST_STEP:g}] "
            f"(smaller steps are lost to rounding, larger ones measure a secant); pass eps=None for {default:g}"
        )
    return float(eps)


def finite_difference_gradient(net, X, Y, eps=None):
    """``(E(theta + eps e_i) - E(theta - eps e_i)) / (2 eps)`` for every parameter ``i``, ``(P,)``.

    ``eps`` defaults to a step suited to the network's dtype (``DEFAULT_STEPS``). Each parameter is
    perturbed in place in a private copy of the weights, so that a step costs two forward passes and
    nothing else.
    """
    X, Y = check_data(net, X, Y)
    if eps is None:
        eps = DEFAULT_STEPS[net.dtype.name]
    eps = check_step(eps, net.dtype)
    params = SimpleNamespace(
        weights=[w.copy() for w in net.weights], biases=[b.copy() for b in net.biases], activations=net.activations
    )
    loss_value = get_loss(net.loss).value

    def objective():
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported once, after the loop
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
    if not np.all(np.isfinite(grad)):
        raise overflow_error(net, X, "finite_difference_gradient", grad)
    return grad
