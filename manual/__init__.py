"""The hand-written engine: every derivative written out, on numpy arrays.

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

from . import symmetry
from .activations import ACTIVATIONS, Activation, get_activation
from .backprop import forward, gradient, loss, per_sample_gradients
from .collapse import NotLinearError, collapse_linear
from .diagnose import Diagnosis, diagnose
from .finite_difference import finite_difference_gradient
from .hessian import hessian, hessian_block
from .hvp import hvp
from .losses import LOSSES, Loss, get_loss
from .train import train

__all__ = [
    # the network and its parts
    "Network", "ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss",
    # the engine contract
    "forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian",
    # oracles and the problem set
    "finite_difference_gradient", "train", "diagnose", "Diagnosis", "symmetry", "collapse_linear",
    # the kernel's settings and memory guard, re-exported
    "config", "memory",
    # errors
    "XvalError", "ArgumentError", "ShapeError", "NonFiniteError", "UnknownNameError", "TargetError", "ConfigError",
    "EngineUnavailableError", "MemoryGuardError", "LayerIndexError", "NotLinearError",
]
