"""The network of an ``xval.Network`` as jax arrays, on the device chosen by ``XVAL_DEVICE``.

float64 is enabled before any array is created. The forward pass is ``net.layers`` in turn (``_layers``). Parameters
are a tuple with one flat array per contract layer (its tensors raveled in order, ``W_l`` row-major, then ``b_l``);
frozen tensors are constants; a tensor tied to several layers is one parameter. Functions are built per
architecture (``Architecture``) and cached, so that ``jax.jit`` compiles once per architecture, batch size and dtype.

Each contract function has a ``stage_<name>`` twin taking the same arguments: it checks them, places the
parameters and data on the device once and returns a zero-argument function that runs the jitted computation
there (waiting for it: jax dispatches asynchronously) and returns jax arrays; ``to_numpy`` brings them back. The
contract function is ``to_numpy(stage_<name>(...)())``; the benchmarks time the staged call alone, so
host-device copies are not timed.

Matmuls run at "highest" precision: jax's default on NVIDIA GPUs is TF32-like passes (10 mantissa bits), which would
miss the float32 tolerance of the comparisons (``tests/test_tf32.py``); on the CPU it changes nothing.
"""

import functools
from dataclasses import fields

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from xval import config  # noqa: E402
from xval.checks import AutodiffMemory, check_data, check_inputs, check_network, measured, pushes  # noqa: E402, F401
from xval.errors import ConfigError  # noqa: E402

from ._activations import LOSSES  # noqa: E402
from ._layers import FORWARD  # noqa: E402


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
    """One flat array ``theta_l`` per contract layer (its tensors raveled in order: ``W_l`` row-major, then ``b_l``)."""
    check_network(net)
    return tuple(
        array(np.concatenate([net.parameters[i].reshape(-1) for i in group]), net.dtype) for group in net.groups
    )


def _value_key(value):
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, value.tobytes())
    return value


class Architecture:
    """What the functions built for a network depend on: its layers (frozen constants by value), parameter shapes,
    per-sample shapes, loss, reduction and dtype. Equal architectures share their jitted functions."""

    def __init__(self, net):
        self.layers, self.groups, self.shapes = net.layers, net.groups, net.shapes
        self.parameter_shapes = tuple(p.shape for p in net.parameters)
        self.counts = tuple(net.layer_param_counts)
        self.loss, self.reduction, self.dtype = net.loss, net.reduction, net.dtype
        layers = tuple(
            (type(layer).__name__, tuple(_value_key(getattr(layer, f.name)) for f in fields(layer)))
            for layer in net.layers
        )
        self.key = (
            layers,
            self.groups,
            self.parameter_shapes,
            net.input_shape,
            net.loss,
            net.reduction,
            net.dtype.name,
        )

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Architecture) and self.key == other.key

    def sample_weight(self, n_samples):
        """``c`` in ``E = c sum_n loss_n``."""
        return 1.0 / n_samples if self.reduction == "mean" else 1.0


def architecture(net):
    """The ``Architecture`` of ``net``: the key the jitted functions are cached under."""
    return Architecture(net)


def split(arch, params):
    """The trainable tensors (one per ``net.parameters`` index, in their shapes) cut out of the per-layer flat
    ``params``; a tensor tied to several layers is one of them, taken from its own layer's ``theta``."""
    values = [None] * len(arch.parameter_shapes)
    for group, theta in zip(arch.groups, params):
        start = 0
        for index in group:
            shape = arch.parameter_shapes[index]
            size = int(np.prod(shape))
            values[index] = theta[start : start + size].reshape(shape)
            start += size
    return values


def apply_layers(arch, params, z, start=0, stop=None):
    """The layers ``start:stop`` applied to the batch ``z``; frozen tensors enter as constants."""
    values = split(arch, params)

    def value(field):
        if field is None:
            return None
        if isinstance(field, np.ndarray):
            return jnp.asarray(field, dtype=arch.dtype)
        return values[field]

    for position in range(len(arch.layers))[start:stop]:
        layer = arch.layers[position]
        z = FORWARD[layer.kind](layer, z, value, arch.shapes[position + 1])
    return z


def make_outputs(arch):
    """``outputs(params, X)``: ``y_hat`` ``(N, *output shape)``."""
    return lambda params, X: apply_layers(arch, params, X)


def flat_outputs(arch, params, X):
    """``y_hat`` with each sample flattened, ``(N, K)``."""
    return apply_layers(arch, params, X).reshape(X.shape[0], -1)


def losses_of_outputs(arch, F, Y):
    """``loss_n`` of flattened outputs ``F`` ``(N, K)`` and targets ``Y`` ``(N, *output shape)``, (N,)."""
    return LOSSES[arch.loss](F, Y.reshape(F.shape))


def make_objective(arch):
    """``E(params, X, Y) = c sum_n loss_n`` (``c = 1/N`` for the mean reduction, 1 for the sum)."""

    def objective(params, X, Y):
        return arch.sample_weight(X.shape[0]) * jnp.sum(losses_of_outputs(arch, flat_outputs(arch, params, X), Y))

    return objective


def groups(arch, theta):
    """The per-layer flat parameters of the whole flat vector ``theta`` ``(P,)``."""
    return tuple(jnp.split(theta, np.cumsum(arch.counts)[:-1]))


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
# up; the constant covers what a first call allocates whatever the size: 80-120 MiB measured. A staged function
# measured on its own states its factor beside its code (``measured``); the others take the default.
DEFAULT_PEAK_FACTOR = 4.0
FIRST_CALL_BYTES = 128 * 2**20
MEMORY = AutodiffMemory(__package__, "jax_ref", DEFAULT_PEAK_FACTOR, FIRST_CALL_BYTES)
peak_factor, in_flight, memory_estimate, guard = MEMORY.peak_factor, MEMORY.in_flight, MEMORY.estimate, MEMORY.guard


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


class Factors(tuple):
    """Results that stay apart when fetched (``kfac_factors``' ``(A_l, G_l)``), unlike per-layer pieces."""


def to_numpy(value):
    """A jax array (or tuple of per-layer arrays, concatenated on the last axis) as float64 numpy; ``Factors`` as a
    tuple of such arrays."""
    if isinstance(value, Factors):
        return tuple(to_numpy(part) for part in value)
    if isinstance(value, (list, tuple)):
        value = jnp.concatenate(value, axis=-1)
    return np.asarray(value, dtype=np.float64)
