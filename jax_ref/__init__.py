"""The reference engine from ``jax.grad`` / ``jax.vmap`` / ``jax.hessian``, jitted, float64 enabled.

Each quantity is a ``stage_<name>`` function (set up once; the returned call computes on the device); the plain
contract functions are made from them by ``xval.contract.complete``: numpy out, checked finite.
"""

from xval import contract

from ._curvature import (
    stage_empirical_fisher,
    stage_ggn,
    stage_ggn_block,
    stage_ggn_diagonal,
    stage_ggnvp,
    stage_kfac_block,
    stage_kfac_factors,
    stage_output_jacobian,
)
from ._diagonals import stage_hessian_diagonal, stage_hessian_trace
from ._eigenvalues import stage_top_eigenvalues
from ._first_order import stage_forward, stage_gradient, stage_loss, stage_per_sample_gradients
from ._model import memory_estimate, to_numpy
from ._second_order import stage_hessian, stage_hessian_block, stage_hvp
from ._training import train

PLAIN = contract.complete(globals(), to_numpy)

__all__ = ["train", "to_numpy", "memory_estimate", *PLAIN, *(f"stage_{name}" for name in PLAIN)]
