"""The reference engine from ``jax.grad`` / ``jax.vmap`` / ``jax.hessian``, jitted, float64 enabled."""
from .derivatives import forward, gradient, loss, per_sample_gradients
from .train import train
from .hessian import hessian, hessian_block, hvp

__all__ = ["forward", "loss", "gradient", "per_sample_gradients"]
__all__ += ["hvp", "hessian_block", "hessian"]
__all__ += ["train"]
