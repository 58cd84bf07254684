"""A minimal engine: forward, loss and gradient in numpy. Check it with python -m xval check examples/minimal_engine.py
(every other function of the contract, from per_sample_gradients on, is reported as not implemented)."""

import numpy as np

# f and f' per activation name (net.activations holds one name per layer; the last is the output's).
ACTIVATIONS = {
    "identity": (lambda a: a, np.ones_like),
    "sigmoid": (lambda a: 0.5 + 0.5 * np.tanh(a / 2), lambda a: 0.25 * (1 - np.tanh(a / 2) ** 2)),
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    "relu": (lambda a: np.maximum(a, 0), lambda a: (a > 0).astype(a.dtype)),
    "softplus": (lambda a: np.logaddexp(a, 0), lambda a: 0.5 + 0.5 * np.tanh(a / 2)),
}


def _passes(net, X):
    """Pre-activations ``a_l = z_l W_l^T + b_l`` ``(N, n_{l+1})`` and activations ``z_{l+1} = f_l(a_l)``, z_0 = X."""
    z = [np.asarray(X, dtype=net.dtype)]  # compute in the network's dtype: float64, or float32 when asked
    a = []
    for W, b, name in zip(net.weights, net.biases, net.activations):  # W_l (n_{l+1}, n_l), b_l (n_{l+1},)
        a.append(z[-1] @ W.T + b)
        z.append(ACTIVATIONS[name][0](a[-1]))
    return a, z


def forward(net, X):
    """``(N, n_L)`` outputs, with ``n_L = net.sizes[-1]``."""
    return _passes(net, X)[1][-1].astype(np.float64)


def loss(net, X, Y):
    """The batch mean ``E = (1/N) sum_n loss_n``: ``0.5 ||y_hat - y||^2`` for "mse", softmax cross-entropy else."""
    y_hat = _passes(net, X)[1][-1]
    if net.loss == "mse":
        return float(np.mean(0.5 * np.sum((y_hat - Y) ** 2, axis=1)))
    log_p = y_hat - np.logaddexp.reduce(y_hat, axis=1, keepdims=True)
    return float(np.mean(-np.sum(Y * log_p, axis=1)))


def gradient(net, X, Y):
    """``dE/dtheta``, ``(P,)``, ``P = net.n_params``, in the contract's order: per layer ``W_l`` row-major, ``b_l``."""
    a, z = _passes(net, X)
    y_hat = z[-1]
    p = np.exp(y_hat - np.logaddexp.reduce(y_hat, axis=1, keepdims=True))  # softmax, for cross_entropy
    dloss = (y_hat - Y) if net.loss == "mse" else (p - Y)  # d loss_n / d y_hat_n, (N, n_L)
    delta = ACTIVATIONS[net.activations[-1]][1](a[-1]) * dloss / len(X)  # dE/da_L
    theta = np.empty(net.n_params, dtype=net.dtype)
    end = net.n_params
    for layer in reversed(range(len(net.weights))):  # backprop: last layer first, so fill theta from the end
        n_in, n_out = net.sizes[layer], net.sizes[layer + 1]
        theta[end - n_out : end] = delta.sum(axis=0)  # dE/db_l
        theta[end - n_out - n_out * n_in : end - n_out] = (delta.T @ z[layer]).reshape(-1)  # dE/dW_l, row-major
        end -= n_out * n_in + n_out
        if layer:
            delta = ACTIVATIONS[net.activations[layer - 1]][1](a[layer - 1]) * (delta @ net.weights[layer])
    return theta.astype(np.float64)
