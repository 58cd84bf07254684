"""The reference engine from ``jax.grad`` / ``jax.vmap`` / ``jax.hessian``, jitted, float64 enabled."""
from .derivatives import forward, gradient, loss, per_sample_gradients
from .hessian import hessian, hessian_block, hvp
from .train import train

__all__ = ["forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian", "train"]
