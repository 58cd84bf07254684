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

from xval import config, contract, memory  # noqa: E402
from xval.checks import check_data, check_inputs, check_memory, check_network  # noqa: E402
from xval.contract import QUANTITIES  # noqa: E402
from xval.errors import ConfigError  # noqa: E402

from ._activations import ACTIVATIONS, LOSSES  # noqa: E402


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
    return tuple(w.shape for w in net.weights), tuple(net.activations), net.loss, net.reduction


def make_outputs(arch):
    shapes, activations = arch[0], arch[1]

    def outputs(params, X):
        z = X
        for theta, shape, name in zip(params, shapes, activations):
            size = shape[0] * shape[1]
            z = ACTIVATIONS[name](z @ theta[:size].reshape(shape).T + theta[size:])
        return z

    return outputs


def make_objective(arch):
    """``E(params, X, Y) = c sum_n loss_n`` (``c = 1/N`` for the mean reduction, 1 for the sum)."""
    outputs = make_outputs(arch)
    loss_fn, reduction = LOSSES[arch[2]], arch[3]

    def objective(params, X, Y):
        total = jnp.sum(loss_fn(outputs(params, X), Y))
        return total / X.shape[0] if reduction == "mean" else total

    return objective


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


# The memory guard's model of this engine (``xval.memory.peak_parts``): working memory over (tangents x tape + result),
# measured by scripts/measure_peaks.py on a 2-core CPU, first call of each shape (XLA's compile included), rounded
# up; the constant covers what a first call allocates whatever the size: 80-120 MiB measured.
PEAK_FACTORS = {"hessian_block": 2.3, "hessian": 3.8, "per_sample_gradients": 1.2}
DEFAULT_PEAK_FACTOR = 4.0
FIRST_CALL_BYTES = 128 * 2**20


def memory_estimate(quantity, net, n_samples, **args):
    """Bytes this engine's call of ``quantity`` (a contract name) needs at its peak: result and working memory."""
    return sum(memory.peak_parts(QUANTITIES.get(quantity) or contract.quantity(quantity), net, n_samples, args,
                                 PEAK_FACTORS.get(quantity, DEFAULT_PEAK_FACTOR), FIRST_CALL_BYTES))


def guard(net, quantity, n_samples, **args):
    """The memory guard of this engine's call of ``quantity`` (a contract name), before any work."""
    check_memory(net, contract.quantity(quantity), n_samples, args, PEAK_FACTORS.get(quantity, DEFAULT_PEAK_FACTOR),
                 FIRST_CALL_BYTES, engine="jax_ref")


def inputs(net, X, quantity):
    """``X`` checked, after the memory guard of ``quantity``, as a jax array on the device."""
    X = check_inputs(net, X)
    guard(net, quantity, X.shape[0])
    return array(X, net.dtype)


def data(net, X, Y, quantity, **args):
    """``(X, Y)`` checked, after the memory guard of ``quantity`` (``args``: its layer indices), as jax arrays."""
    X, Y = check_data(net, X, Y)
    guard(net, quantity, X.shape[0], **args)
    return array(X, net.dtype), array(Y, net.dtype)


def to_numpy(value):
    """A jax array (or tuple of per-layer arrays, concatenated on the last axis) as float64 numpy."""
    if isinstance(value, (list, tuple)):
        value = jnp.concatenate(value, axis=-1)
    return np.asarray(value, dtype=np.float64)
