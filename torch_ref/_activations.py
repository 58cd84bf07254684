"""Activations and losses in torch, named as in ``xval.definitions``: torch's own functions with torch's options.

Kinks are torch's, because these are torch's functions: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha
(its backward takes the exp branch for x <= 0), and torch's Softplus is x where beta x > threshold. The suite's
plain softplus has no threshold (``threshold=None``): log(1 + exp(beta x)) / beta everywhere, by ``logaddexp``.
"""

import torch
import torch.nn.functional as F


def _softplus(x, beta=1.0, threshold=None):
    if threshold is None:
        return torch.logaddexp(beta * x, torch.zeros_like(x)) / beta  # F.softplus would switch to x above 20
    return F.softplus(x, beta, threshold)


# name -> f(x, **options), elementwise
ACTIVATIONS = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": _softplus,
    "leaky_relu": lambda x, slope=0.01: F.leaky_relu(x, slope),
    "elu": lambda x, alpha=1.0: F.elu(x, alpha),
    "selu": F.selu,
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "logsigmoid": F.logsigmoid,
}

# per-sample losses of (y_hat, y), both (N, K) (outputs flattened per sample) -> (N,)
LOSSES = {
    "mse": lambda y_hat, y: 0.5 * ((y_hat - y) ** 2).sum(-1),
    "cross_entropy": lambda y_hat, y: -(y * torch.log_softmax(y_hat, -1)).sum(-1),
    "squared_error": lambda y_hat, y: F.mse_loss(y_hat, y, reduction="none").sum(-1),
    "mean_squared_error": lambda y_hat, y: F.mse_loss(y_hat, y, reduction="none").mean(-1),
    "bce_with_logits": lambda y_hat, y: F.binary_cross_entropy_with_logits(y_hat, y, reduction="none").sum(-1),
    "mean_bce_with_logits": lambda y_hat, y: F.binary_cross_entropy_with_logits(y_hat, y, reduction="none").mean(-1),
    "nll": lambda y_hat, y: -(y * y_hat).sum(-1),
}
