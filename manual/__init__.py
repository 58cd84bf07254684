"""The hand-written engine: numpy only, every derivative written out."""
from . import config, symmetry
from .activations import ACTIVATIONS, Activation, get_activation
from .backprop import forward, gradient, loss, per_sample_gradients
from .collapse import NotLinearError, collapse_linear
from .diagnose import Diagnosis, diagnose
from .errors import (
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
from .finite_difference import finite_difference_gradient
from .hessian import block_fits, hessian, hessian_block, hessian_fits
from .hvp import hvp
from .losses import LOSSES, Loss, get_loss
from .network import Network
from .train import train

__all__ = [
    # the network and its parts
    "Network", "ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss",
    # the engine contract
    "forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian",
    # oracles, memory checks and the problem set
    "finite_difference_gradient", "block_fits", "hessian_fits", "train", "diagnose", "Diagnosis", "symmetry",
    "collapse_linear", "config",
    # errors
    "XvalError", "ArgumentError", "ShapeError", "NonFiniteError", "UnknownNameError", "TargetError", "ConfigError",
    "EngineUnavailableError", "MemoryGuardError", "LayerIndexError", "NotLinearError",
]
