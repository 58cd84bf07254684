"""The engine registry: engine name -> module, and the package a missing engine needs."""
import importlib

from manual.errors import EngineUnavailableError, unknown_name

from manual import config

# name: (module, the package it needs, how to install it)
REGISTRY = {
    "manual": ("manual", "numpy", "pip install numpy"),
    "torch": ("torch_ref", "torch", "pip install torch  (or: pip install -e '.[torch]')"),
    "jax": ("jax_ref", "jax", "pip install jax  (or: pip install -e '.[jax]')"),
}

FUNCTIONS = ("forward", "loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian")


def load(name):
    """The engine module registered as ``name``.

    Raises ``UnknownNameError`` listing the valid names, or ``EngineUnavailableError`` saying what to
    install when the engine's package is missing.
    """
    if name not in REGISTRY:
        raise unknown_name("engine", name, REGISTRY)
    module, package, install = REGISTRY[name]
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise EngineUnavailableError(f"engine {name!r} needs the package {package!r}, which is not installed ({exc}); run: {install}") from None
    return importlib.import_module(module)


def selected(env=None):
    """The engine names chosen by ``XVAL_BACKEND``."""
    return config.backends(env)
