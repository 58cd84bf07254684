"""Activations and losses in jax, named as in ``xval.definitions``, with torch's kinks and options.

Kinks follow torch's backward formulas exactly, first and second derivatives: relu'(0) = 0 (``jax.nn.relu``),
leaky_relu'(0) = slope (``x > 0`` selects the linear branch; jax.nn.leaky_relu uses ``x >= 0``), and for the functions
that join ``x`` to a curved branch (elu, selu, softplus with a ``threshold``) torch's backward takes the curved
branch's slope at the joint but its double backward only strictly inside the branch (``x < 0``, ``beta x <
threshold``): elu'(0) = alpha and elu''(0) = 0. ``_joined`` builds those with ``jax.custom_jvp``, the derivatives'
values still jax's own (``jvp`` of the branch). The suite's plain softplus has no threshold.
"""

import jax
import jax.numpy as jnp

SELU_ALPHA = 1.6732632423543772848170429916717  # torch's constants
SELU_SCALE = 1.0507009873554804934193349852946


def _derivative(function):
    """The derivative of an elementwise ``function``, by ``jvp`` with a tangent of ones."""
    return lambda x: jax.jvp(function, (x,), (jnp.ones_like(x),))[1]


def _joined(x, branch, linear, inside):
    """``x`` where ``linear`` (a mask of ``x``), else ``branch(x)``, with torch's derivatives: the slope is 1 where
    ``linear``, else ``branch'``; the second derivative ``branch''`` where ``inside``, else 0 (at the joint too)."""
    slope_of_branch, curvature_of_branch = _derivative(branch), _derivative(_derivative(branch))

    @jax.custom_jvp
    def slope(x):
        return jnp.where(linear(x), 1.0, slope_of_branch(x))

    @slope.defjvp
    def slope_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return slope(x), jnp.where(inside(x), curvature_of_branch(x), 0.0) * t

    @jax.custom_jvp
    def f(x):
        return jnp.where(linear(x), x, branch(x))

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), slope(x) * t

    return f(x)


def _elu(x, alpha=1.0):
    return _joined(x, lambda u: alpha * jnp.expm1(u), lambda u: u > 0, lambda u: u < 0)


def _softplus(x, beta=1.0, threshold=None):
    if threshold is None:
        return jax.nn.softplus(beta * x) / beta
    return _joined(
        x, lambda u: jax.nn.softplus(beta * u) / beta, lambda u: beta * u > threshold, lambda u: beta * u < threshold
    )


# name -> f(x, **options), elementwise
ACTIVATIONS = {
    "identity": lambda x: x,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": _softplus,
    "leaky_relu": lambda x, slope=0.01: jnp.where(x > 0, x, slope * x),
    "elu": _elu,
    "selu": lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "logsigmoid": jax.nn.log_sigmoid,
}


def _bce(y_hat, y):
    """Binary cross-entropy of logits: softplus(f) - f y = max(f, 0) - f y + log(1 + exp(-|f|))."""
    return jax.nn.softplus(y_hat) - y_hat * y


# per-sample losses of (y_hat, y), both (N, K) (outputs flattened per sample) -> (N,)
LOSSES = {
    "mse": lambda y_hat, y: 0.5 * jnp.sum((y_hat - y) ** 2, axis=-1),
    "cross_entropy": lambda y_hat, y: -jnp.sum(y * jax.nn.log_softmax(y_hat, axis=-1), axis=-1),
    "squared_error": lambda y_hat, y: jnp.sum((y_hat - y) ** 2, axis=-1),
    "mean_squared_error": lambda y_hat, y: jnp.mean((y_hat - y) ** 2, axis=-1),
    "bce_with_logits": lambda y_hat, y: jnp.sum(_bce(y_hat, y), axis=-1),
    "mean_bce_with_logits": lambda y_hat, y: jnp.mean(_bce(y_hat, y), axis=-1),
    "nll": lambda y_hat, y: -jnp.sum(y * y_hat, axis=-1),
}
