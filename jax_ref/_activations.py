"""Activations and losses in jax: one line each, named as in ``xval.definitions``."""
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "identity": lambda x: x,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
}

# per-sample losses of (y_hat, y), both (N, K) -> (N,)
LOSSES = {
    "mse": lambda y_hat, y: 0.5 * jnp.sum((y_hat - y) ** 2, axis=-1),
    "cross_entropy": lambda y_hat, y: -jnp.sum(y * jax.nn.log_softmax(y_hat, axis=-1), axis=-1),
}
