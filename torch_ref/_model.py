"""The network of an ``xval.Network`` as torch tensors, on the device chosen by ``XVAL_DEVICE``.

Parameters are one flat tensor per layer (``W_l`` row-major, then ``b_l``), so that derivatives can be
taken with respect to a single layer.

Each contract function has a ``stage_<name>`` twin taking the same arguments: it checks them, places the
parameters and data on the device once and returns a zero-argument function that computes the quantity there
(waiting for the device) and returns torch tensors; ``to_numpy`` brings them back. The contract function is
``to_numpy(stage_<name>(...)())``; the benchmarks time the staged call alone, so host-device copies are not timed.

float32 runs compute at full float32 precision on GPUs too: TF32 matmuls (10 mantissa bits) would miss the float32
tolerance of the comparisons (``tests/test_tf32.py``), so importing this module switches them off.
"""
import warnings

import numpy as np
import torch

from xval import config, contract, memory
from xval.checks import check_data, check_inputs, check_memory, check_network
from xval.contract import QUANTITIES
from xval.errors import ConfigError

from ._activations import ACTIVATIONS, LOSSES


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
    """One flat tensor ``theta_l`` per layer, in the contract's order."""
    check_network(net)
    return [tensor(np.concatenate([w.reshape(-1), b]), net.dtype) for w, b in zip(net.weights, net.biases)]


def outputs(net, params, X):
    """``y_hat`` for a batch ``X`` (N, n_0) from per-layer flat parameters."""
    z = X
    for theta, w, name in zip(params, net.weights, net.activations):
        W = theta[: w.size].reshape(w.shape)
        b = theta[w.size:]
        z = ACTIVATIONS[name](z @ W.T + b)
    return z


def sample_losses(net, params, X, Y):
    """``loss_n`` for every sample, (N,)."""
    return LOSSES[net.loss](outputs(net, params, X), Y)


def objective(net, params, X, Y):
    """``E = c sum_n loss_n`` (``c = 1/N`` for the mean reduction, 1 for the sum)."""
    return sample_losses(net, params, X, Y).sum() * net.sample_weight(X.shape[0])


# The memory guard's model of this engine (``xval.memory.peak_parts``): working memory over (tangents x tape + result),
# measured by scripts/measure_peaks.py on a 2-core CPU, first call of each shape, rounded up; the constant covers what
# a first call allocates whatever the size (autodiff bookkeeping): 80-120 MiB measured.
PEAK_FACTORS = {"hessian_block": 5.5, "hessian": 3.3, "per_sample_gradients": 1.7}
DEFAULT_PEAK_FACTOR = 4.0
FIRST_CALL_BYTES = 128 * 2**20


def memory_estimate(quantity, net, n_samples, **args):
    """Bytes this engine's call of ``quantity`` (a contract name) needs at its peak: result and working memory."""
    return sum(memory.peak_parts(QUANTITIES.get(quantity) or contract.quantity(quantity), net, n_samples, args,
                                 PEAK_FACTORS.get(quantity, DEFAULT_PEAK_FACTOR), FIRST_CALL_BYTES))


def guard(net, quantity, n_samples, **args):
    """The memory guard of this engine's call of ``quantity`` (a contract name), before any work."""
    check_memory(net, contract.quantity(quantity), n_samples, args, PEAK_FACTORS.get(quantity, DEFAULT_PEAK_FACTOR),
                 FIRST_CALL_BYTES, engine="torch_ref")


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


def to_numpy(value):
    """A tensor (or list of tensors, concatenated) as a float64 numpy array."""
    if isinstance(value, (list, tuple)):
        value = torch.cat([v.reshape(v.shape[0], -1) if v.dim() > 1 else v for v in value], dim=-1)
    return value.detach().to("cpu", torch.float64).numpy()
