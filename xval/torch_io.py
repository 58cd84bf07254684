"""A ``Network`` to and from a torch ``nn.Sequential`` (``Network.from_torch``, ``net.to_torch()``).

Accepted modules, in order: ``nn.Linear`` layers, each followed by at most one activation module (``Sigmoid``,
``Tanh``, ``ReLU``, ``Softplus`` with ``beta=1`` and the default ``threshold=20``, ``Identity``). A Linear not followed
by an activation gets ``identity``, so consecutive Linear layers are two layers with no non-linearity between them.

Losses: torch has no module equal to the suite's losses, so ``from_torch`` takes the suite's loss name. The
correspondence, for outputs ``y_hat`` ``(N, n_L)``:

- ``nn.MSELoss()`` (mean over all ``N * n_L`` entries) ``= (2 / n_L) *`` the suite's ``mse`` objective
  ``E = (1/N) sum_n 0.5 ||y_hat_n - y_n||^2``; gradients and Hessians scale by the same ``2 / n_L``;
- ``nn.CrossEntropyLoss()`` with class indices ``c`` ``=`` the suite's ``cross_entropy`` with one-hot rows
  ``Y = eye(n_L)[c]``.

torch is imported only when one of these functions runs: ``xval`` imports without it.
"""
import numpy as np

from .errors import ArgumentError, EngineUnavailableError

INSTALL = "pip install torch  (or: pip install -e '.[torch]')"
# Softplus above torch's threshold is the identity; the suite's softplus is log(1 + exp(x)) everywhere, which
# differs from x by under exp(-20) ~ 2e-9 there, the same as torch's own default makes.
SOFTPLUS_THRESHOLD = 20.0
SUPPORTED = "nn.Linear, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.Softplus(beta=1, threshold=20), nn.Identity"


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailableError(f"converting to or from torch needs torch, which is not importable ({exc}); "
                                     f"install it with: {INSTALL}") from None
    return torch


def _activation_name(module, position, nn):
    """The suite's name of an activation module, or ``None`` when ``module`` is not one."""
    names = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Identity: "identity"}
    if type(module) in names:
        return names[type(module)]
    if type(module) is nn.Softplus:
        if module.beta != 1 or module.threshold != SOFTPLUS_THRESHOLD:
            raise ArgumentError(
                f"module {position} is Softplus(beta={module.beta}, threshold={module.threshold}); only beta=1 with the "
                f"default threshold={SOFTPLUS_THRESHOLD:g} matches the suite's softplus log(1 + exp(x)); use nn.Softplus()")
        return "softplus"
    return None


def _refuse(module, position, why):
    return ArgumentError(f"module {position} ({type(module).__name__}) {why}; from_torch takes an nn.Sequential of "
                         f"{SUPPORTED}, each activation right after a Linear")


def layers_of(module):
    """``[(Linear, activation name)]`` of an ``nn.Sequential``; ``ArgumentError`` naming the first module that does
    not fit, and its position."""
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Sequential):
        raise ArgumentError(f"from_torch takes an nn.Sequential, got {type(module).__name__}; wrap your layers in "
                            f"nn.Sequential({SUPPORTED.split(', ')[0]}, ...)")
    layers = []
    for position, child in enumerate(module):
        if isinstance(child, nn.Linear):
            layers.append([child, None])
            continue
        name = _activation_name(child, position, nn)
        if name is None:
            raise _refuse(child, position, "is not supported")
        if not layers:
            raise _refuse(child, position, "comes before any Linear")
        if layers[-1][1] is not None:
            raise _refuse(child, position, f"follows another activation ({layers[-1][1]})")
        layers[-1][1] = name
    if not layers:
        raise ArgumentError("the nn.Sequential holds no nn.Linear; a network needs at least one layer")
    return [(linear, name or "identity") for linear, name in layers]


def from_torch(cls, module, loss, dtype=None):
    """A ``cls`` (``Network``) with the weights of ``module``; ``dtype`` defaults to the module's (float64/float32)."""
    torch = _torch()
    if not isinstance(loss, str):
        raise ArgumentError(
            f"loss is {type(loss).__name__}, but from_torch takes the suite's loss name, 'mse' or 'cross_entropy'; "
            "nn.MSELoss() is 2 / n_L times 'mse', nn.CrossEntropyLoss() with class indices is 'cross_entropy' on "
            "one-hot rows")
    layers = layers_of(module)
    weights, biases = [], []
    for linear, _ in layers:
        with torch.no_grad():
            weights.append(linear.weight.detach().cpu().numpy().copy())
            bias = linear.bias
            biases.append(np.zeros(linear.out_features, dtype=weights[-1].dtype) if bias is None
                          else bias.detach().cpu().numpy().copy())
    if dtype is None:
        dtype = str(layers[0][0].weight.dtype).replace("torch.", "")
    return cls.from_arrays(weights, biases, [name for _, name in layers], loss, dtype=dtype)


def to_torch(net):
    """The ``nn.Sequential`` computing ``net``'s outputs: Linear per layer, then its activation (none for identity),
    in the network's dtype, on the CPU."""
    torch = _torch()
    nn = torch.nn
    modules = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}
    dtype = getattr(torch, net.dtype.name)
    children = []
    for w, b, name in zip(net.weights, net.biases, net.activations):
        linear = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(np.array(w)))
            linear.bias.copy_(torch.as_tensor(np.array(b)))
        children.append(linear)
        if name != "identity":
            children.append(modules[name]())
    return nn.Sequential(*children)
