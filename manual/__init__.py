"""The hand-written engine: every derivative written out, on any array-API library (numpy by default; ``XVAL_ARRAY``
selects cupy, torch or array-api-strict, see ``manual.arrays``).

Its math is organised by layer kind (``manual.layers``: each kind's forward pass, backprop, forward-mode product and
second-order terms) and every quantity is written once over a sequence of layers (``manual._sequence``). Plain MLPs
take hand-tuned dense paths for the seven first quantities of the contract (``_dense_first_order``, ``_dense_hvp``,
``_dense_hessian``), which the benchmarks time. Each quantity is a ``stage_<name>`` function (set up once; the returned
call computes in the selected library); the plain contract functions are made from them by ``xval.contract.complete``:
float64 numpy out, checked finite.

The network description, the errors, the input checks, the settings and the memory guard are the suite's shared
kernel, ``xval``; they are re-exported here so that ``manual.Network``, ``manual.ShapeError`` ... keep working.
"""

from xval import config, contract, memory
from xval.errors import (
    ArgumentError,
    ConfigError,
    EngineUnavailableError,
    LayerIndexError,
    MemoryGuardError,
    NonFiniteError,
    ShapeError,
    TargetError,
    UnknownNameError,
    XvalError,
)
from xval.network import Network

from . import _dense_first_order, _dense_hessian, _dense_hvp, _generic, arrays, symmetry
from ._collapse import NotLinearError, collapse_linear
from ._finite_difference import finite_difference_gradient
from .activations import ACTIVATIONS, Activation, get_activation
from .arrays import to_numpy
from .losses import LOSSES, Loss, get_loss


def _dispatch(name, dense):
    """``stage_<name>``: the dense path for a plain MLP, the layer sequence for every other network."""
    generic = getattr(_generic, f"stage_{name}")

    def stage(net, *arguments):
        if isinstance(net, Network) and net.is_mlp:
            return dense(net, *arguments)
        return generic(net, *arguments)

    stage.__name__ = stage.__qualname__ = f"stage_{name}"
    stage.__doc__ = f"``{name}`` staged: {contract.quantity(name).returns}, as an array of the selected library."
    stage.dense, stage.generic = dense, generic
    return stage


stage_forward = _dispatch("forward", _dense_first_order.stage_forward)
stage_loss = _dispatch("loss", _dense_first_order.stage_loss)
stage_gradient = _dispatch("gradient", _dense_first_order.stage_gradient)
stage_per_sample_gradients = _dispatch("per_sample_gradients", _dense_first_order.stage_per_sample_gradients)
stage_hvp = _dispatch("hvp", _dense_hvp.stage_hvp)
stage_hessian_block = _dispatch("hessian_block", _dense_hessian.stage_hessian_block)
stage_hessian = _dispatch("hessian", _dense_hessian.stage_hessian)
stage_ggn = _generic.stage_ggn
stage_ggnvp = _dispatch("ggnvp", _dense_hvp.stage_ggnvp)
stage_ggn_block = _generic.stage_ggn_block
stage_hessian_diagonal = _generic.stage_hessian_diagonal
stage_ggn_diagonal = _generic.stage_ggn_diagonal
stage_empirical_fisher = _generic.stage_empirical_fisher
stage_output_jacobian = _generic.stage_output_jacobian
stage_kfac_factors = _generic.stage_kfac_factors
stage_kfac_block = _generic.stage_kfac_block
stage_hessian_trace = _generic.stage_hessian_trace
top_eigenvalues = _generic.top_eigenvalues

PLAIN = contract.complete(globals(), to_numpy)
# top_eigenvalues holds a dense Hessian (or, beyond DENSE_EIGEN_PARAMETERS, a Lanczos basis of k + a few vectors).
top_eigenvalues.estimate = lambda net, n_samples, **args: (
    memory_estimate("hessian", net, n_samples) + 2 * net.n_params**2 * net.dtype.itemsize
)  # eigh's copies

# The analyses of the problem set use the contract functions above.
from ._diagnose import Diagnosis, diagnose  # noqa: E402
from ._training import train  # noqa: E402


def memory_estimate(quantity, net, n_samples, **args):
    """Bytes manual's call of ``quantity`` (a contract name) needs at its peak: result and working memory, by the
    model of the path that computes it (each staged function's ``estimate`` or ``method``)."""
    stage = globals().get(f"stage_{quantity}") or globals()[quantity]
    if not hasattr(stage, "dense") and hasattr(stage, "estimate"):
        return stage.estimate(net, n_samples, **args)
    dense = getattr(stage, "dense", None)
    if net.is_mlp and dense is not None:
        return dense.estimate(net, n_samples, **args)
    generic = getattr(stage, "generic", stage)
    return sum(_generic.estimate(quantity, generic.method, net, n_samples, **args))


__all__ = [
    # the network and its parts
    "Network",
    "ACTIVATIONS",
    "Activation",
    "get_activation",
    "LOSSES",
    "Loss",
    "get_loss",
    # the engine contract, its staged twins, and the way back to numpy
    *PLAIN,
    "top_eigenvalues",
    *(f"stage_{name}" for name in PLAIN),
    "to_numpy",
    "arrays",
    "memory_estimate",
    # oracles and the problem set
    "finite_difference_gradient",
    "train",
    "diagnose",
    "Diagnosis",
    "symmetry",
    "collapse_linear",
    # the kernel's settings and memory guard, re-exported
    "config",
    "memory",
    # errors
    "XvalError",
    "ArgumentError",
    "ShapeError",
    "NonFiniteError",
    "UnknownNameError",
    "TargetError",
    "ConfigError",
    "EngineUnavailableError",
    "MemoryGuardError",
    "LayerIndexError",
    "NotLinearError",
]
