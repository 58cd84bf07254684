"""The hand-written engine: numpy only, every derivative written out."""
from . import config
from .activations import ACTIVATIONS, Activation, get_activation
from .backprop import forward, gradient, loss, per_sample_gradients
from .errors import (
    ConfigError,
    EngineUnavailableError,
    MemoryGuardError,
    NonFiniteError,
    ShapeError,
    TargetError,
    UnknownNameError,
    XvalError,
)
from . import symmetry
from .collapse import NotLinearError, collapse_linear
from .diagnose import Diagnosis, diagnose
from .finite_difference import finite_difference_gradient
from .hessian import LayerIndexError, block_fits, hessian, hessian_block, hessian_fits
from .hvp import hvp
from .losses import LOSSES, Loss, get_loss
from .network import Network
from .train import train

__all__ = [
    "ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss", "Network",
    "forward", "loss", "gradient", "per_sample_gradients", "finite_difference_gradient",
    "XvalError", "ShapeError", "NonFiniteError", "UnknownNameError", "TargetError", "ConfigError",
    "EngineUnavailableError", "MemoryGuardError",
]
__all__ += ["hvp", "hessian_block", "hessian", "LayerIndexError", "block_fits", "hessian_fits"]
__all__ += ["train", "diagnose", "Diagnosis", "symmetry", "collapse_linear", "NotLinearError"]
