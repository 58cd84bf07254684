"""The suite's shared kernel: the network description, the errors, every input check, the ``XVAL_*`` settings, the
memory guard, the batch-order rule, the contract as data, the case table, tolerances and comparison reports, and
the engine registry. Engines (``manual``, ``torch_ref``, ``jax_ref``, and yours) import it; it imports no engine.
"""

from . import config, contract, memory
from .contract import QUANTITIES, Problem, Quantity
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
    UnsupportedNetworkError,
    XvalError,
)
from .network import Network

__all__ = [
    "Network",
    "Problem",
    "Quantity",
    "QUANTITIES",
    "config",
    "contract",
    "memory",
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
    "UnsupportedNetworkError",
]
