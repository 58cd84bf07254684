"""The hand-written engine: every derivative written out, on any array-API library (numpy by default; ``XVAL_ARRAY``
selects cupy, torch or array-api-strict, see ``manual.arrays``). The contract functions return float64 numpy; their
``stage_<name>`` twins return a zero-argument function whose result stays an array of the selected library.

The network description, the errors, the input checks, the settings and the memory guard are the suite's shared
kernel, ``xval``; they are re-exported here so that ``manual.Network``, ``manual.ShapeError`` ... keep working.
"""
from xval import config, memory
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

from . import arrays, symmetry
from .activations import ACTIVATIONS, Activation, get_activation
from .arrays import to_numpy
from .backprop import (
    forward,
    gradient,
    loss,
    per_sample_gradients,
    stage_forward,
    stage_gradient,
    stage_per_sample_gradients,
)
from .collapse import NotLinearError, collapse_linear
from .diagnose import Diagnosis, diagnose
from .finite_difference import finite_difference_gradient
from .hessian import hessian, hessian_block, stage_hessian, stage_hessian_block
from .hvp import hvp, stage_hvp
from .losses import LOSSES, Loss, get_loss
from .train import train

__all__ = [
    # the network and its parts
    "Network", "ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss",
    # the engine contract
    "forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian",
    # staged calls (results stay arrays of the selected library) and the way back to numpy
    "stage_forward", "stage_gradient", "stage_per_sample_gradients", "stage_hvp", "stage_hessian_block",
    "stage_hessian", "to_numpy", "arrays",
    # oracles and the problem set
    "finite_difference_gradient", "train", "diagnose", "Diagnosis", "symmetry", "collapse_linear",
    # the kernel's settings and memory guard, re-exported
    "config", "memory",
    # errors
    "XvalError", "ArgumentError", "ShapeError", "NonFiniteError", "UnknownNameError", "TargetError", "ConfigError",
    "EngineUnavailableError", "MemoryGuardError", "LayerIndexError", "NotLinearError",
]


def memory_estimate(quantity, net, n_samples, **args):
    """Bytes manual's call of ``quantity`` (a contract name) needs at its peak: result and working memory."""
    from xval import contract
    from xval import memory as _memory

    from . import hessian as _hessian

    if quantity == "hessian":
        return sum(_hessian.hessian_bytes(net, n_samples, arrays.library().name))
    if quantity == "hessian_block":
        return sum(_hessian.block_bytes(net, args["l"], args["m"], n_samples))
    factor = 1.2 if quantity == "per_sample_gradients" else 4.0
    return sum(_memory.peak_parts(contract.quantity(quantity), net, n_samples, args, factor, 2**19))
