"""Forward pass, loss, backprop gradient and per-sample gradients, written out.

Notation (DESIGN.md): ``a_l = W_l z_l + b_l``, ``z_{l+1} = f_l(a_l)``, ``z_0 = x``,
``delta_l = d loss_n / d a_l`` per sample. The objective is ``E = (1/N) sum_n loss_n``.
"""
import numpy as np

from .activations import get_activation
from xval.checks import check_data, check_inputs, check_memory, numpy_finite_result

from .losses import get_loss


def forward_pass(net, X):
    """Pre-activations ``a`` (``a[l]`` is ``(N, n_{l+1})``) and activations ``z`` (``z[0] = X``, ``z[l+1] = f_l(a[l])``).

    ``X`` must already be validated (``check_inputs``).
    """
    a, z = [], [X]
    for w, b, name in zip(net.weights, net.biases, net.activations):
        a.append(z[-1] @ w.T + b)
        z.append(get_activation(name).f(a[-1]))
    return a, z


def backward_pass(net, a, z, Y):
    """``delta[l] = d loss_n / d a_l``, ``(N, n_{l+1})`` per layer, for every sample ``n`` (not divided by N).

    ``delta_L = f_L'(a_L) * dloss/dy_hat``;  ``delta_l = f_l'(a_l) * (delta_{l+1} W_{l+1})``.
    """
    delta = [None] * net.n_layers
    last = net.n_layers - 1
    delta[last] = get_activation(net.activations[last]).df(a[last]) * get_loss(net.loss).grad(z[-1], Y)
    for l in range(last - 1, -1, -1):
        delta[l] = get_activation(net.activations[l]).df(a[l]) * (delta[l + 1] @ net.weights[l + 1])
    return delta


@numpy_finite_result
def forward(net, X):
    """Network outputs ``y_hat = z_L``, ``(N, n_L)``."""
    return forward_pass(net, check_inputs(net, X))[1][-1].astype(np.float64, copy=False)


@numpy_finite_result
def loss(net, X, Y):
    """``E = (1/N) sum_n loss(y_hat_n, y_n)``, a float."""
    X, Y = check_data(net, X, Y)
    y_hat = forward_pass(net, X)[1][-1]
    return float(np.mean(get_loss(net.loss).value(y_hat, Y)))


@numpy_finite_result
def gradient(net, X, Y):
    """``dE/dtheta``, ``(P,)``: per layer ``(1/N) sum_n delta_l z_l^T`` (row-major), then ``(1/N) sum_n delta_l``."""
    X, Y = check_data(net, X, Y)
    a, z = forward_pass(net, X)
    delta = backward_pass(net, a, z, Y)
    n = X.shape[0]
    parts = []
    for l in range(net.n_layers):
        scaled = delta[l] / n  # (N, n_{l+1}): scaling it, not the (n_{l+1}, n_l) product, saves a pass over the weights
        parts.append((scaled.T @ z[l]).reshape(-1))
        parts.append(np.sum(scaled, axis=0))
    return np.concatenate(parts).astype(np.float64, copy=False)


@numpy_finite_result
def per_sample_gradients(net, X, Y):
    """``d loss_n / dtheta`` for every sample, ``(N, P)``: the outer products ``delta_l z_l^T`` kept per sample.

    One broadcast product per layer over the whole batch; no loop over samples.
    """
    X, Y = check_data(net, X, Y)
    check_memory(net, "manual", "per_sample_gradients", X.shape[0])
    a, z = forward_pass(net, X)
    delta = backward_pass(net, a, z, Y)
    n = X.shape[0]
    parts = []
    for l in range(net.n_layers):
        parts.append((delta[l][:, :, None] * z[l][:, None, :]).reshape(n, -1))
        parts.append(delta[l])
    return np.concatenate(parts, axis=1).astype(np.float64, copy=False)
