"""The reference engine from ``torch.autograd`` / ``torch.func`` (float64 unless the network is float32)."""
from .derivatives import forward, gradient, loss, per_sample_gradients
from .hessian import hessian, hessian_block, hvp
from .train import train

__all__ = ["forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian", "train"]
