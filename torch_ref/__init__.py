"""The reference engine from ``torch.autograd`` / ``torch.func`` (float64 unless the network is float32)."""
from .derivatives import (
    forward,
    gradient,
    loss,
    per_sample_gradients,
    stage_forward,
    stage_gradient,
    stage_per_sample_gradients,
)
from .hessian import hessian, hessian_block, hvp, stage_hessian, stage_hessian_block, stage_hvp
from .model import to_numpy
from .train import train

__all__ = ["forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian", "train",
           # staged twins (set up once; the returned call computes on the device) and the fetch back to numpy
           "stage_forward", "stage_gradient", "stage_per_sample_gradients", "stage_hvp", "stage_hessian_block",
           "stage_hessian", "to_numpy"]
