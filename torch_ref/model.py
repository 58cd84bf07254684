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

from xval import config
from xval.checks import check_data, check_inputs, check_network
from xval.errors import ConfigError

from .activations import ACTIVATIONS, LOSSES


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
    """``E``, the batch mean of the per-sample losses."""
    return sample_losses(net, params, X, Y).mean()


def inputs(net, X):
    return tensor(check_inputs(net, X), net.dtype)


def data(net, X, Y):
    X, Y = check_data(net, X, Y)
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
