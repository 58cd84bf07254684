"""The network of an ``xval.Network`` as torch tensors, on the device chosen by ``XVAL_DEVICE``.

The forward pass is ``net.layers`` in turn, each by torch's own function (``_layers``). Parameters are one flat tensor
per contract layer (its tensors raveled in order, ``W_l`` row-major, then ``b_l``), so that derivatives can be taken
with respect to a single layer; frozen tensors are constants; a tensor tied to several layers is one parameter.

Each contract function has a ``stage_<name>`` twin taking the same arguments: it checks them, places the
parameters and data on the device once and returns a zero-argument function that computes the quantity there
(waiting for the device) and returns torch tensors; ``to_numpy`` brings them back. The contract function is
``to_numpy(stage_<name>(...)())``; the benchmarks time the staged call alone, so host-device copies are not timed.

float32 runs compute at full float32 precision on GPUs too: TF32 matmuls (10 mantissa bits) would miss the float32
tolerance of the comparisons (``tests/test_tf32.py``), so importing this module switches them off.
"""

import contextlib
import warnings

import numpy as np
import torch

from xval import config
from xval.checks import AutodiffMemory, check_data, check_inputs, check_network, measured, pushes  # noqa: F401
from xval.errors import ConfigError

from ._activations import LOSSES
from ._layers import FORWARD


# Full float32 matmuls and convolutions on GPUs (no TF32), whatever the environment asked for.
torch.set_float32_matmul_precision("highest")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def device():
    """The torch device for ``XVAL_DEVICE``: ``auto`` is the GPU when torch sees one."""
    choice = config.device()
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("XVAL_DEVICE=cuda but torch sees no GPU; use XVAL_DEVICE=cpu or XVAL_DEVICE=auto")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


# A Network's arrays are read-only; the tensors that share their memory are never written in place.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)


def tensor(array, dtype):
    """A numpy array as a torch tensor of the network's dtype on the chosen device (sharing memory when it can)."""
    return torch.as_tensor(np.ascontiguousarray(array), dtype=getattr(torch, dtype.name), device=device())


def parameters(net):
    """One flat tensor ``theta_l`` per contract layer: its tensors raveled in order (``W_l`` row-major, ``b_l``)."""
    check_network(net)
    return [tensor(np.concatenate([net.parameters[i].reshape(-1) for i in group]), net.dtype) for group in net.groups]


def split(net, params):
    """The trainable tensors (one per ``net.parameters`` index, in their shapes) cut out of the per-layer flat
    ``params``; a tensor tied to several layers is one of them, taken from its own layer's ``theta``."""
    values = [None] * len(net.parameters)
    for group, theta in zip(net.groups, params):
        start = 0
        for index in group:
            shape = net.parameters[index].shape
            size = int(np.prod(shape))
            values[index] = theta[start : start + size].reshape(shape)
            start += size
    return values


def layer_values(net, params):
    """``tensor(field)`` for the layers: a parameter by index, a frozen constant as a tensor, ``None`` as is."""
    values = split(net, params)

    def value(field):
        if field is None:
            return None
        if isinstance(field, np.ndarray):
            return tensor(field, net.dtype)
        return values[field]

    return value


def apply_layers(net, params, z, start=0, stop=None):
    """``net.layers[start:stop]`` applied to the batch ``z``."""
    value = layer_values(net, params)
    for layer in net.layers[start:stop]:
        z = FORWARD[layer.kind](layer, z, value)
    return z


def outputs(net, params, X):
    """``y_hat`` ``(N, *output shape)`` for a batch ``X`` ``(N, *input shape)`` from per-layer flat parameters."""
    return apply_layers(net, params, X)


def flat_outputs(net, params, X):
    """``y_hat`` with each sample flattened, ``(N, K)``."""
    return outputs(net, params, X).reshape(X.shape[0], -1)


def losses_of_outputs(net, F, Y):
    """``loss_n`` of flattened outputs ``F`` ``(N, K)`` and targets ``Y`` ``(N, *output shape)``, (N,)."""
    return LOSSES[net.loss](F, Y.reshape(F.shape))


def sample_losses(net, params, X, Y):
    """``loss_n`` for every sample, (N,)."""
    return losses_of_outputs(net, flat_outputs(net, params, X), Y)


def objective(net, params, X, Y):
    """``E = c sum_n loss_n`` (``c = 1/N`` for the mean reduction, 1 for the sum)."""
    return sample_losses(net, params, X, Y).sum() * net.sample_weight(X.shape[0])


def groups(net, theta):
    """The per-layer flat parameters of the whole flat vector ``theta`` ``(P,)``."""
    return list(torch.split(theta, net.layer_param_counts))


# The memory guard's model of this engine (``xval.memory.peak_parts``): working memory over (tangents x tape + result),
# measured by scripts/measure_peaks.py on a 2-core CPU, first call of each shape, rounded up; the constant covers what
# a first call allocates whatever the size (autodiff bookkeeping): 80-120 MiB measured. A staged function measured
# on its own states its factor beside its code (``measured``); the others take the default.
DEFAULT_PEAK_FACTOR = 4.0
FIRST_CALL_BYTES = 128 * 2**20
MEMORY = AutodiffMemory(__package__, "torch_ref", DEFAULT_PEAK_FACTOR, FIRST_CALL_BYTES)
peak_factor, in_flight, memory_estimate, guard = MEMORY.peak_factor, MEMORY.in_flight, MEMORY.estimate, MEMORY.guard


def inputs(net, X, quantity):
    """``X`` checked, after the memory guard of ``quantity``, as a tensor on the device."""
    X = check_inputs(net, X)
    guard(net, quantity, X.shape[0])
    return tensor(X, net.dtype)


def data(net, X, Y, quantity, **args):
    """``(X, Y)`` checked, after the memory guard of ``quantity`` (``args``: its layer indices), as tensors."""
    X, Y = check_data(net, X, Y)
    guard(net, quantity, X.shape[0], **args)
    return tensor(X, net.dtype), tensor(Y, net.dtype)


def synchronized(compute):
    """``compute`` followed by a wait for the device's queued work: CUDA runs asynchronously, so a timer around
    the returned function measures the work itself (on the CPU it is ``compute`` unchanged)."""
    if device().type != "cuda":
        return compute

    def run():
        value = compute()
        torch.cuda.synchronize()
        return value

    return run


@contextlib.contextmanager
def forward_mode():
    """torch's forward-mode AD scripts its decompositions with the deprecated ``torch.jit.script``; that
    warning is torch's own business, not the caller's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        yield


def in_forward_mode(compute):
    """``synchronized(compute)`` run inside ``forward_mode``."""

    def wrapped():
        with forward_mode():
            return compute()

    return synchronized(wrapped)


class Factors(tuple):
    """Results that stay apart when fetched (``kfac_factors``' ``(A_l, G_l)``), unlike per-layer pieces."""


def to_numpy(value):
    """A tensor (or list of per-layer tensors, concatenated on the last axis) as a float64 numpy array; ``Factors``
    as a tuple of such arrays."""
    if isinstance(value, Factors):
        return tuple(to_numpy(part) for part in value)
    if isinstance(value, (list, tuple)):
        value = torch.cat([v.reshape(v.shape[0], -1) if v.dim() > 1 else v for v in value], dim=-1)
    return value.detach().to("cpu", torch.float64).numpy()
