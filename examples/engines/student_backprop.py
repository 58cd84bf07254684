"""A small engine of its own, as a student or an engine author would write it: numpy only, no import of the suite.

It implements ``forward``, ``loss``, ``gradient``, ``per_sample_gradients`` and ``hvp`` (Pearlmutter's R-operator)
for the suite's activations and losses, with its own derivative code, and leaves the Hessian blocks out: the check
reports those as "not implemented". Check it with::

    python -m xval check examples/engines/student_backprop.py
"""

import numpy as np


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# name: (f, f', f'')
ACTIVATIONS = {
    "identity": (lambda x: x, np.ones_like, np.zeros_like),
    "sigmoid": (
        _sigmoid,
        lambda x: _sigmoid(x) * _sigmoid(-x),
        lambda x: _sigmoid(x) * _sigmoid(-x) * (1 - 2 * _sigmoid(x)),
    ),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(x.dtype), np.zeros_like),
    "softplus": (lambda x: np.logaddexp(x, 0.0), _sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x)),
}


def _softmax(y_hat):
    e = np.exp(y_hat - y_hat.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _passes(net, X):
    """Pre-activations ``a`` and activations ``z`` of every layer."""
    a, z = [], [np.asarray(X, dtype=np.float64)]
    for W, b, name in zip(net.weights, net.biases, net.activations):
        a.append(z[-1] @ W.T + b)
        z.append(ACTIVATIONS[name][0](a[-1]))
    return a, z


def _loss_gradient(net, y_hat, Y):
    return y_hat - Y if net.loss == "mse" else _softmax(y_hat) - Y


def _deltas(net, a, z, Y):
    delta = [None] * len(a)
    delta[-1] = ACTIVATIONS[net.activations[-1]][1](a[-1]) * _loss_gradient(net, z[-1], Y)
    for l in range(len(a) - 2, -1, -1):
        delta[l] = ACTIVATIONS[net.activations[l]][1](a[l]) * (delta[l + 1] @ net.weights[l + 1])
    return delta


def forward(net, X):
    return _passes(net, X)[1][-1]


def loss(net, X, Y):
    y_hat = forward(net, X)
    if net.loss == "mse":
        return float(np.mean(0.5 * np.sum((y_hat - Y) ** 2, axis=1)))
    shifted = y_hat - y_hat.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(np.mean(-np.sum(Y * log_p, axis=1)))


def per_sample_gradients(net, X, Y):
    a, z = _passes(net, X)
    delta = _deltas(net, a, z, Y)
    parts = []
    for l in range(len(a)):
        parts += [np.einsum("ni,nj->nij", delta[l], z[l]).reshape(len(X), -1), delta[l]]
    return np.concatenate(parts, axis=1)


def gradient(net, X, Y):
    return per_sample_gradients(net, X, Y).mean(axis=0)


def hvp(net, X, Y, v):
    """``H v`` by the R-operator: R applied to the forward pass, then to backprop."""
    a, z = _passes(net, X)
    delta = _deltas(net, a, z, Y)
    V, vb, start = [], [], 0
    for W, b in zip(net.weights, net.biases):
        V.append(v[start : start + W.size].reshape(W.shape))
        vb.append(v[start + W.size : start + W.size + b.size])
        start += W.size + b.size
    f = [ACTIVATIONS[name] for name in net.activations]
    Ra, Rz = [], [np.zeros_like(z[0])]
    for l, W in enumerate(net.weights):
        Ra.append(z[l] @ V[l].T + Rz[l] @ W.T + vb[l])
        Rz.append(f[l][1](a[l]) * Ra[l])
    if net.loss == "mse":
        R_grad = Rz[-1]
    else:
        p = _softmax(z[-1])
        R_grad = p * Rz[-1] - p * np.sum(p * Rz[-1], axis=1, keepdims=True)
    last = len(a) - 1
    Rdelta = [None] * len(a)
    Rdelta[last] = f[last][2](a[last]) * Ra[last] * _loss_gradient(net, z[-1], Y) + f[last][1](a[last]) * R_grad
    for l in range(last - 1, -1, -1):
        W = net.weights[l + 1]
        Rdelta[l] = f[l][2](a[l]) * Ra[l] * (delta[l + 1] @ W) + f[l][1](a[l]) * (
            delta[l + 1] @ V[l + 1] + Rdelta[l + 1] @ W
        )
    n, parts = len(X), []
    for l in range(len(a)):
        parts += [((Rdelta[l].T @ z[l] + delta[l].T @ Rz[l]) / n).ravel(), Rdelta[l].mean(axis=0)]
    return np.concatenate(parts)
