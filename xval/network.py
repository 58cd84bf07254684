"""The one network description that every engine reads: a sequence of layers (``xval.layers``), its trainable
tensors as plain numpy arrays (validated, copied, read-only), the input shape of one sample, and the loss.

A plain MLP (``from_arrays``, ``random``) is Dense and activation layers in turn; its ``weights``, ``biases``,
``activations`` and ``sizes`` are the simple view that hand-written engines read. Every network has ``layers``,
``parameters`` and the layer-by-layer parameter layout of the contract: "layer l" is the l-th layer that owns
trainable tensors, and its parameters are those tensors in order (``W_l`` row-major, then ``b_l``).
"""

import numpy as np

from . import definitions
from .errors import ArgumentError, ShapeError, UnsupportedNetworkError, check_seed, describe, is_real_number
from .layers import Activation, Dense, parameter_indices, tensors
from .layers import describe as describe_layer
from .values import cast_finite, check_dtype, real_array

REDUCTIONS = ("mean", "sum")


def _frozen_copy(array, dtype):
    """A private copy of ``array`` in ``dtype`` that nobody can write: its memory is an immutable ``bytes`` object,
    so even ``flags.writeable = True`` is refused (numpy only re-flags arrays whose memory owner allows writes)."""
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return np.frombuffer(data, dtype=dtype).reshape(np.shape(array))


def _shape(value):
    """The shape of an array-like, or ``None`` when it has none (its own check reports that later)."""
    try:
        return np.shape(value)
    except (ValueError, TypeError):
        return None


def _sequence(name, value, expected):
    """``value`` as a list, or an error when it is not a sequence of per-layer entries."""
    if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ArgumentError(f"{name} is {describe(value)}, but it must be {expected}")
    return list(value)


def _is_index(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Network:
    """A feed-forward network: ``layers`` applied in order to samples of ``input_shape``, then ``loss``.

    The objective is ``E = (1/N) sum_n loss_n`` (``reduction="mean"``) or ``sum_n loss_n`` (``"sum"``). Instances are
    immutable: the arrays are private copies whose memory cannot be written (not even after ``flags.writeable =
    True``), attributes cannot be set, and methods that change parameters return a new ``Network``.
    """

    __slots__ = (
        "_layers",
        "_parameters",
        "_groups",
        "_input_shape",
        "_output_shape",
        "_loss",
        "_reduction",
        "_dtype",
        "_counts",
        "_mlp",
        "_shapes",
        "__weakref__",
    )

    def __init__(self, layers, parameters, input_shape, loss, reduction, dtype):
        # Use from_layers, from_arrays or random: they validate; this constructor trusts its arguments.
        groups, seen = [], set()
        for layer in layers:
            new = [index for index in parameter_indices(layer) if index not in seen]
            seen.update(new)
            if new:
                groups.append(tuple(new))
        shape = tuple(input_shape)
        values = {
            "_layers": tuple(layers),
            "_parameters": tuple(parameters),
            "_groups": tuple(groups),
            "_input_shape": shape,
            "_loss": loss,
            "_reduction": reduction,
            "_dtype": dtype,
            "_counts": tuple(sum(parameters[i].size for i in group) for group in groups),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        shapes = [shape]
        for layer in layers:
            shapes.append(tuple(layer.output_shape(shapes[-1], self)))
        object.__setattr__(self, "_shapes", tuple(shapes))
        object.__setattr__(self, "_output_shape", shapes[-1])
        object.__setattr__(self, "_mlp", self._plain_mlp())

    def __setattr__(self, name, value):
        raise AttributeError(
            f"a Network cannot be changed after construction (tried to set {name!r}); build a new one "
            "with from_arrays, from_layers, from_vector or astype"
        )

    def __delattr__(self, name):
        raise AttributeError(f"a Network cannot be changed after construction (tried to delete {name!r})")

    def __reduce__(self):
        # Pickling (multiprocessing, joblib) rebuilds through from_layers, which validates and freezes again.
        return _rebuild, (
            list(self._layers),
            list(self._parameters),
            self._input_shape,
            self._loss,
            self._reduction,
            self._dtype.name,
        )

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, weights, biases, activations, loss, dtype="float64"):
        """A plain MLP from ``W_l`` ``(n_{l+1}, n_l)`` and ``b_l`` ``(n_{l+1},)``, checked layer by layer;
        ``activations`` is one name per layer, or a single name for the hidden layers (the output gets identity)."""
        dtype = check_dtype(dtype)
        weights = _sequence("weights", weights, "a list of (n_out, n_in) weight matrices, one per layer")
        biases = _sequence("biases", biases, "a list of (n_out,) bias vectors, one per layer")
        if not weights:
            raise ShapeError(
                "a network needs at least one layer, but weights is empty; pass one (n_out, n_in) matrix per layer"
            )
        if len(biases) != len(weights):
            raise ShapeError(
                f"got {len(weights)} weight matrices but {len(biases)} bias vectors; pass one of each per layer "
                "(b_l of shape (n_out,) for each W_l of shape (n_out, n_in))"
            )
        activations = cls._expand_activations(activations, len(weights))
        definitions.loss(loss)
        parameters, layers = [], []
        for layer, (w, b) in enumerate(zip(weights, biases)):
            w = real_array(f"W_{layer}", w, f"a real (n_out, n_in) matrix for layer {layer}")
            b = real_array(f"b_{layer}", b, f"a real (n_out,) vector for layer {layer}")
            following = _shape(weights[layer + 1]) if layer + 1 < len(weights) else None
            cls._check_layer_shapes(layer, w, b, parameters[-2] if parameters else None, following)
            parameters += [
                _frozen_copy(cast_finite(f"W_{layer}", w, dtype), dtype),
                _frozen_copy(cast_finite(f"b_{layer}", b, dtype), dtype),
            ]
            layers += [Dense(2 * layer, 2 * layer + 1), Activation(activations[layer])]
        return cls(layers, parameters, (parameters[0].shape[1],), loss, "mean", dtype)

    @classmethod
    def from_layers(cls, layers, parameters, input_shape, loss=None, reduction="mean", dtype="float64"):
        """A network of any supported layers (``xval.layers``): ``parameters`` are the trainable tensors, which the
        layers name by index (a tensor used by several layers is one parameter, its derivatives summed over its
        uses); ``input_shape`` is one sample's shape; ``loss`` a name of ``xval.definitions.LOSSES`` or ``None``."""
        dtype = check_dtype(dtype)
        layers = _sequence("layers", layers, "a list of xval.layers records")
        parameters = _sequence("parameters", parameters, "a list of arrays, the trainable tensors")
        if not layers:
            raise ShapeError("a network needs at least one layer")
        check_loss(loss, reduction)
        frozen = [
            _frozen_copy(cast_finite(f"parameter {i}", real_array(f"parameter {i}", p, "a real array"), dtype), dtype)
            for i, p in enumerate(parameters)
        ]
        order = []
        for position, layer in enumerate(layers):
            if not isinstance(layer, tuple(_kinds())):
                raise ArgumentError(f"layer {position} is {describe(layer)}, not a layer record of xval.layers")
            for name, value in tensors(layer):
                if _is_index(value):
                    if not 0 <= value < len(frozen):
                        raise ArgumentError(
                            f"layer {position} names parameter {value} as its {name}, but there are "
                            f"{len(frozen)} parameters"
                        )
                    if value not in order:
                        order.append(value)
        if order != list(range(len(frozen))):
            raise ArgumentError(
                f"the parameters must be listed in the order the layers first use them (each used at "
                f"least once); the layers use them in the order {order}"
            )
        layers = [_frozen_constants(layer, dtype) for layer in layers]
        shape = tuple(int(s) for s in input_shape)
        try:
            return cls(layers, frozen, shape, loss, reduction, dtype)
        except ShapeError as exc:
            raise ShapeError(f"the layers do not chain: {exc}") from None

    @staticmethod
    def _check_layer_shapes(layer, w, b, previous, following):
        """Shape errors of layer ``layer``, each blaming the array that is wrong: a transposed ``W_l`` (its bias and
        the neighbouring layers fit ``W_l.T``) is blamed on ``W_l``, not on the bias. ``following`` is the shape of
        ``W_{l+1}`` (``None`` for the last layer or when it has none)."""
        if w.ndim != 2:
            hint = f"; for a single output unit use W_{layer}.reshape(1, {w.shape[0]})" if w.ndim == 1 else ""
            raise ShapeError(f"layer {layer}: W_{layer} must be 2-D (n_out, n_in), got shape {w.shape}{hint}")
        if min(w.shape) == 0:
            raise ShapeError(
                f"layer {layer}: W_{layer} has an empty dimension, shape {w.shape}; every layer needs at "
                "least one input and one output unit"
            )
        fits_transposed = b.shape == (w.shape[1],) and w.shape[0] != w.shape[1]
        neighbours_agree = (previous is not None and previous.shape[0] == w.shape[0]) or (
            following is not None and len(following) == 2 and following[1] == w.shape[1]
        )
        if fits_transposed and neighbours_agree:
            raise ShapeError(
                f"layer {layer}: W_{layer} has shape {w.shape}, which looks transposed: b_{layer} has shape {b.shape} "
                f"and W_{layer} must be (n_out, n_in) = ({w.shape[1]}, {w.shape[0]}); pass W_{layer}.T"
            )
        if b.shape != (w.shape[0],):
            hint = f" (or, if b_{layer} is right, W_{layer} is transposed: pass W_{layer}.T)" if fits_transposed else ""
            raise ShapeError(
                f"layer {layer}: b_{layer} has shape {b.shape} but W_{layer} has shape {w.shape}; "
                f"b_{layer} must have shape ({w.shape[0]},){hint}"
            )
        if previous is not None and w.shape[1] != previous.shape[0]:
            raise ShapeError(
                f"layer {layer}: W_{layer} has shape {w.shape} but W_{layer - 1} has shape {previous.shape}; "
                f"W_{layer} needs {previous.shape[0]} columns (the output width of layer {layer - 1})"
            )

    @classmethod
    def random(cls, sizes, activations="tanh", loss="mse", seed=0, weight_scale=1.0, dtype="float64"):
        """Weights ``weight_scale * N(0, 1/n_in)``, biases ``weight_scale * N(0, 0.1^2)``, from ``seed``.

        ``sizes`` are the widths ``[n_0, n_1, ..., n_L]``. A single activation name means that activation on
        hidden layers and ``identity`` on the output.
        """
        sizes = list(sizes) if isinstance(sizes, (list, tuple, np.ndarray, range)) else [sizes]
        if len(sizes) < 2 or not all(is_real_number(s) and float(s).is_integer() and s >= 1 for s in sizes):
            raise ShapeError(
                f"sizes is {sizes!r}, but it must list at least an input and an output width, all whole numbers >= 1; "
                "e.g. sizes=[4, 16, 3] for 4 inputs, 16 hidden units and 3 outputs"
            )
        if not (is_real_number(weight_scale) and np.isfinite(weight_scale)):
            raise ArgumentError(
                f"weight_scale is {weight_scale!r}, but it must be a finite number; "
                "1.0 gives the N(0, 1/n_in) initialisation"
            )
        seed = check_seed("seed", seed)
        sizes = [int(s) for s in sizes]
        rng = np.random.default_rng(seed)
        weights = [
            weight_scale * rng.standard_normal((n_out, n_in)) / np.sqrt(n_in) for n_in, n_out in zip(sizes, sizes[1:])
        ]
        biases = [weight_scale * 0.1 * rng.standard_normal(n_out) for n_out in sizes[1:]]
        return cls.from_arrays(weights, biases, activations, loss, dtype=dtype)

    @classmethod
    def from_torch(cls, module, loss, dtype=None, input_shape=None):
        """The network computing exactly a torch module and its loss (a torch loss module, a loss name, or ``None``);
        ``input_shape``: one sample's shape, when the model's first layer does not tell it (``xval.torch_io``).
        torch is imported here, not before."""
        from . import torch_io

        return torch_io.from_torch(cls, module, loss, dtype, input_shape)

    def to_torch(self):
        """The equivalent torch module, in this dtype (``xval.torch_io``)."""
        from . import torch_io

        return torch_io.to_torch(self)

    @staticmethod
    def _expand_activations(activations, n_layers):
        if isinstance(activations, str):
            activations = [activations] * (n_layers - 1) + ["identity"]
        activations = _sequence(
            "activations", activations, "an activation name per layer, or one name for the hidden layers"
        )
        if len(activations) != n_layers:
            raise ShapeError(
                f"got {len(activations)} activation names for {n_layers} layers; pass one per layer "
                "(the last is the output activation), or a single name for all hidden layers"
            )
        for name in activations:
            definitions.activation(name)
        return activations

    # ---- description --------------------------------------------------------------------------
    layers = property(lambda self: self._layers, doc="The layer records (``xval.layers``), in order.")
    parameters = property(
        lambda self: self._parameters, doc="The trainable tensors, read-only, in the contract's order."
    )
    input_shape = property(lambda self: self._input_shape, doc="The shape of one input sample.")
    output_shape = property(lambda self: self._output_shape, doc="The shape of one output sample.")
    loss = property(lambda self: self._loss, doc="The loss name (``xval.definitions.LOSSES``), or ``None``.")
    reduction = property(lambda self: self._reduction, doc="``mean`` (E = (1/N) sum_n loss_n) or ``sum``.")
    dtype = property(lambda self: self._dtype, doc="numpy dtype of every array.")
    groups = property(lambda self: self._groups, doc="Per contract layer, the indices of its parameters.")

    @property
    def shapes(self):
        """One sample's shape before the first layer and after each layer."""
        return self._shapes

    @property
    def activation_entries(self):
        """Entries of one sample's input and of every layer's output: what a reverse pass keeps per sample."""
        return int(sum(np.prod(shape) for shape in self._shapes))

    @property
    def output_size(self):
        """Entries of one output sample (``n_L`` for an MLP)."""
        return int(np.prod(self._output_shape))

    def tensor(self, value):
        """The array a layer's field names: a parameter (by index) or a constant (itself); ``None`` stays ``None``."""
        return self._parameters[value] if _is_index(value) else value

    def sample_weight(self, n_samples):
        """The factor ``c`` in ``E = c sum_n loss_n``: ``1 / N`` for the mean, 1 for the sum."""
        return 1.0 / n_samples if self._reduction == "mean" else 1.0

    @property
    def is_mlp(self):
        """Whether this is a plain MLP: Dense (own weight and bias) and an activation without options in turn, on
        ``(n_0,)`` samples, with a loss of the suite's (``mse``, ``cross_entropy``) averaged over the samples."""
        return self._mlp

    def _plain_mlp(self):
        layers = self._layers
        if (
            len(self._input_shape) != 1
            or len(layers) % 2
            or self._loss not in ("mse", "cross_entropy")
            or self._reduction != "mean"
        ):
            return False
        for l, (dense, act) in enumerate(zip(layers[::2], layers[1::2])):
            if not (
                type(dense) is Dense
                and type(act) is Activation
                and _is_index(dense.weight)
                and dense.weight == 2 * l
                and _is_index(dense.bias)
                and dense.bias == 2 * l + 1
                and not act.options
            ):
                return False
        return True

    def _mlp_view(self, what):
        if not self._mlp:
            raise UnsupportedNetworkError(
                f"net.{what} describes plain MLPs only, and this network is not one "
                f"({self.describe()}); read net.layers and net.parameters instead"
            )

    @property
    def weights(self):
        """``W_l`` per layer (plain MLPs), read-only arrays."""
        self._mlp_view("weights")
        return self._parameters[0::2]

    @property
    def biases(self):
        """``b_l`` per layer (plain MLPs), read-only arrays."""
        self._mlp_view("biases")
        return self._parameters[1::2]

    @property
    def activations(self):
        """Activation name per layer (plain MLPs)."""
        self._mlp_view("activations")
        return tuple(layer.name for layer in self._layers[1::2])

    @property
    def sizes(self):
        """Widths ``[n_0, ..., n_L]`` (plain MLPs)."""
        self._mlp_view("sizes")
        return [self._input_shape[0]] + [w.shape[0] for w in self._parameters[0::2]]

    @property
    def n_layers(self):
        """``L``: the layers that own trainable parameters."""
        return len(self._groups)

    @property
    def layer_param_counts(self):
        """``P_l`` per layer (``n_{l+1} n_l + n_{l+1}`` for an MLP)."""
        return list(self._counts)

    @property
    def n_params(self):
        """``P``, the total parameter count."""
        return sum(self._counts)

    @property
    def param_slices(self):
        """``slice`` of each layer's parameters in the flat vector."""
        ends = np.cumsum([0] + list(self._counts))
        return [slice(int(start), int(end)) for start, end in zip(ends, ends[1:])]

    def layer_fan(self, l):
        """``(n_in, n_out)`` of layer ``l`` when it is a Dense layer with its own weight: the input and output widths
        the Kronecker factors of ``kfac_factors`` are over."""
        dense = self.owner(l)
        if not isinstance(dense, Dense):
            raise UnsupportedNetworkError(
                f"layer {l} is {describe_layer(dense, self)}; Kronecker factors are defined here for Dense layers only"
            )
        n_out, n_in = self.tensor(dense.weight).shape
        return n_in, n_out

    def owner(self, l):
        """The layer record that first uses the parameters of contract layer ``l``."""
        first = self._groups[l][0]
        return next(layer for layer in self._layers if first in parameter_indices(layer))

    def parameter_names(self):
        """``[(l, name, shape)]`` per parameter tensor in the contract's order: ``(0, "W", (8, 4))``,
        ``(0, "b", (8,))``."""
        names = []
        for l, group in enumerate(self._groups):
            owner = self.owner(l)
            for field, value in tensors(owner):
                if _is_index(value) and value in group:
                    names.append((l, "W" if field == "weight" else "b", self._parameters[value].shape))
            for index in group:  # tensors first used through a layer's other field (tied across kinds)
                if not any(_is_index(v) and v == index for _, v in tensors(owner)):
                    names.append((l, f"parameter {index}", self._parameters[index].shape))
        return names

    # ---- flat parameter vector ----------------------------------------------------------------
    def to_vector(self):
        """All parameters as one ``(P,)`` vector: per layer ``W_l`` row-major, then ``b_l``."""
        return np.concatenate([p.reshape(-1) for p in self._parameters])

    def from_vector(self, theta):
        """A new network of this architecture whose parameters are the ``(P,)`` vector ``theta``."""
        theta = real_array("the parameter vector", theta, f"a real ({self.n_params},) vector laid out like to_vector()")
        if theta.shape != (self.n_params,):
            raise ShapeError(
                f"parameter vector has shape {theta.shape}, but this network has P = {self.n_params} parameters"
            )
        theta = cast_finite("the parameter vector", theta, self._dtype)
        parameters, start = [], 0
        for p in self._parameters:
            parameters.append(_frozen_copy(theta[start : start + p.size].reshape(p.shape), self._dtype))
            start += p.size
        return Network(self._layers, parameters, self._input_shape, self._loss, self._reduction, self._dtype)

    def astype(self, dtype):
        """The same network with every array in ``dtype`` (``float64`` or ``float32``)."""
        dtype = check_dtype(dtype)
        if dtype == self._dtype:
            return self
        parameters = [
            _frozen_copy(cast_finite(f"parameter {i}", p, dtype), dtype) for i, p in enumerate(self._parameters)
        ]
        layers = [_frozen_constants(layer, dtype) for layer in self._layers]
        return Network(layers, parameters, self._input_shape, self._loss, self._reduction, dtype)

    def with_loss(self, loss, reduction="mean"):
        """The same layers and parameters with another loss (``None``: no loss)."""
        check_loss(loss, reduction)
        return Network(self._layers, self._parameters, self._input_shape, loss, reduction, self._dtype)

    def describe(self):
        """The layers in a line: ``Dense(4 -> 8), tanh, Dense(8 -> 3), identity``."""
        return ", ".join(describe_layer(layer, self) for layer in self._layers)

    def __repr__(self):
        if self._mlp:
            return (
                f"Network(sizes={self.sizes}, activations={list(self.activations)}, loss={self._loss!r}, "
                f"P={self.n_params}, dtype={self._dtype.name})"
            )
        loss = "no loss" if self._loss is None else f"loss={self._loss!r}, reduction={self._reduction!r}"
        return (
            f"Network(input_shape={self._input_shape}, layers=[{self.describe()}], {loss}, P={self.n_params}, "
            f"dtype={self._dtype.name})"
        )


def _kinds():
    from . import layers

    return layers.KINDS


def _frozen_constants(layer, dtype):
    """``layer`` with every array field (frozen tensors, statistics) a read-only copy in ``dtype``."""
    from dataclasses import fields, replace

    changes = {
        f.name: _frozen_copy(getattr(layer, f.name), dtype)
        for f in fields(layer)
        if isinstance(getattr(layer, f.name), np.ndarray)
    }
    return replace(layer, **changes) if changes else layer


def _rebuild(layers, parameters, input_shape, loss, reduction, dtype):
    return Network.from_layers(layers, parameters, input_shape, loss, reduction, dtype)


def check_loss(loss, reduction):
    """Raise for a loss name or reduction that does not exist (``None``: a network without a loss)."""
    if loss is not None:
        definitions.loss(loss)
    if reduction not in REDUCTIONS:
        raise ArgumentError(f"reduction {reduction!r} is not supported; use one of: {', '.join(REDUCTIONS)}")
