"""The network of an ``xval.Network`` as jax arrays, on the device chosen by ``XVAL_DEVICE``.

float64 is enabled before any array is created. Parameters are a tuple with one flat array per layer
(``W_l`` row-major, then ``b_l``). Functions are built per architecture and cached, so that ``jax.jit``
compiles once per architecture, batch size and dtype.

Each contract function has a ``stage_<name>`` twin taking the same arguments: it checks them, places the
parameters and data on the device once and returns a zero-argument function that runs the jitted computation
there (waiting for it: jax dispatches asynchronously) and returns jax arrays; ``to_numpy`` brings them back. The
contract function is ``to_numpy(stage_<name>(...)())``; the benchmarks time the staged call alone, so
host-device copies are not timed.

Matmuls run at "highest" precision: jax's default on NVIDIA GPUs is TF32-like passes (10 mantissa bits), which would
miss the float32 tolerance of the comparisons (``tests/test_tf32.py``); on the CPU it changes nothing.
"""
import functools

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from xval import config  # noqa: E402
from xval.checks import check_data, check_inputs, check_network  # noqa: E402
from xval.errors import ConfigError  # noqa: E402

from .activations import ACTIVATIONS, LOSSES  # noqa: E402


def device():
    """The jax device for ``XVAL_DEVICE``: ``auto`` is jax's default device (the GPU when it sees one)."""
    choice = config.device()
    if choice == "cpu":
        return jax.devices("cpu")[0]
    if choice == "cuda":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError:
            raise ConfigError("XVAL_DEVICE=cuda but jax sees no GPU; use XVAL_DEVICE=cpu or XVAL_DEVICE=auto") from None
    return jax.devices()[0]


def array(value, dtype):
    return jax.device_put(jnp.asarray(np.asarray(value, dtype=dtype)), device())


def parameters(net):
    """One flat array ``theta_l`` per layer, in the contract's order."""
    check_network(net)
    return tuple(array(np.concatenate([w.reshape(-1), b]), net.dtype) for w, b in zip(net.weights, net.biases))


def architecture(net):
    """A hashable key for the functions built for ``net``: shapes, activations and loss."""
    return tuple(w.shape for w in net.weights), tuple(net.activations), net.loss


def make_outputs(arch):
    shapes, activations, _ = arch

    def outputs(params, X):
        z = X
        for theta, shape, name in zip(params, shapes, activations):
            size = shape[0] * shape[1]
            z = ACTIVATIONS[name](z @ theta[:size].reshape(shape).T + theta[size:])
        return z

    return outputs


def make_objective(arch):
    """``E(params, X, Y)``, the batch mean of the per-sample losses."""
    outputs = make_outputs(arch)
    loss_fn = LOSSES[arch[2]]
    return lambda params, X, Y: jnp.mean(loss_fn(outputs(params, X), Y))


@functools.lru_cache(maxsize=256)
def jitted(arch, builder):
    """``jax.jit(builder(arch))``, built once per architecture and builder."""
    return jax.jit(builder(arch))


def staged(builder, net, *args):
    """A zero-argument function running ``jitted(architecture(net), builder)(*args)`` and waiting for its result.

    Its attribute ``compiled_bytes()`` gives the device memory XLA plans for one call: temporaries plus the output
    (``memory_analysis`` of the compiled executable; it compiles again, so call it outside any timing).
    """
    function = jitted(architecture(net), builder)

    def compute():
        return jax.block_until_ready(function(*args))

    def compiled_bytes():
        analysis = function.lower(*args).compile().memory_analysis()
        return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)

    compute.compiled_bytes = compiled_bytes
    return compute


def inputs(net, X):
    return array(check_inputs(net, X), net.dtype)


def data(net, X, Y):
    X, Y = check_data(net, X, Y)
    return array(X, net.dtype), array(Y, net.dtype)


def to_numpy(value):
    """A jax array (or tuple of per-layer arrays, concatenated on the last axis) as float64 numpy."""
    if isinstance(value, (list, tuple)):
        value = jnp.concatenate(value, axis=-1)
    return np.asarray(value, dtype=np.float64)
