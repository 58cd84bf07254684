"""The one network description that every engine reads: plain numpy arrays, validated and copied."""
import numpy as np

from . import definitions
from .checks import cast_finite, check_dtype, real_array
from .errors import ArgumentError, ShapeError, check_seed, describe, is_real_number


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


class Network:
    """A feed-forward network ``a_l = W_l z_l + b_l``, ``z_{l+1} = f_l(a_l)``, ``z_0 = x``, and its loss.

    ``W_l`` is ``(n_{l+1}, n_l)``, ``b_l`` is ``(n_{l+1},)``; layers are numbered from 0. The parameter
    vector lists, layer by layer, ``W_l`` row-major then ``b_l``. Instances are immutable: the arrays are
    private copies whose memory cannot be written (not even after ``flags.writeable = True``), attributes cannot be
    set, and methods that change parameters return a new ``Network``.
    """

    # weakref: manual caches per network; _sizes, _counts: the layout, fixed at construction (read on every call)
    __slots__ = ("_weights", "_biases", "_activations", "_loss", "_dtype", "_sizes", "_counts", "__weakref__")

    def __init__(self, weights, biases, activations, loss, dtype):
        # Use from_arrays or random: they validate; this constructor trusts its arguments.
        weights, biases = tuple(weights), tuple(biases)
        sizes = (weights[0].shape[1],) + tuple(w.shape[0] for w in weights)
        counts = tuple(w.size + b.size for w, b in zip(weights, biases))
        for name, value in (("_weights", weights), ("_biases", biases), ("_activations", tuple(activations)),
                            ("_loss", loss), ("_dtype", dtype), ("_sizes", sizes), ("_counts", counts)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"a Network cannot be changed after construction (tried to set {name!r}); build a new one "
                             "with from_arrays, from_vector or astype")

    def __delattr__(self, name):
        raise AttributeError(f"a Network cannot be changed after construction (tried to delete {name!r})")

    def __reduce__(self):
        # Pickling (multiprocessing, joblib) rebuilds through from_arrays, which validates and freezes again.
        return Network.from_arrays, (list(self._weights), list(self._biases), list(self._activations), self._loss,
                                     self._dtype.name)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, weights, biases, activations, loss, dtype="float64"):
        """Validate and copy ``weights``/``biases``; ``activations`` is one name per layer.

        A single activation name means that activation on hidden layers and ``identity`` on the output.
        """
        dtype = check_dtype(dtype)
        weights = _sequence("weights", weights, "a list of (n_out, n_in) weight matrices, one per layer")
        biases = _sequence("biases", biases, "a list of (n_out,) bias vectors, one per layer")
        if not weights:
            raise ShapeError("a network needs at least one layer, but weights is empty; pass one (n_out, n_in) matrix per layer")
        if len(biases) != len(weights):
            raise ShapeError(
                f"got {len(weights)} weight matrices but {len(biases)} bias vectors; pass one of each per layer "
                "(b_l of shape (n_out,) for each W_l of shape (n_out, n_in))"
            )
        activations = cls._expand_activations(activations, len(weights))
        definitions.loss(loss)
        out_w, out_b = [], []
        for layer, (w, b) in enumerate(zip(weights, biases)):
            w = real_array(f"W_{layer}", w, f"a real (n_out, n_in) matrix for layer {layer}")
            b = real_array(f"b_{layer}", b, f"a real (n_out,) vector for layer {layer}")
            following = _shape(weights[layer + 1]) if layer + 1 < len(weights) else None
            cls._check_layer_shapes(layer, w, b, out_w[-1] if out_w else None, following)
            out_w.append(_frozen_copy(cast_finite(f"W_{layer}", w, dtype), dtype))
            out_b.append(_frozen_copy(cast_finite(f"b_{layer}", b, dtype), dtype))
        return cls(out_w, out_b, activations, loss, dtype)

    @staticmethod
    def _check_layer_shapes(layer, w, b, previous, following):
        """Shape errors of layer ``layer``, each blaming the array that is wrong: a transposed ``W_l`` (its bias and
        the neighbouring layers fit ``W_l.T``) is blamed on ``W_l``, not on the bias. ``following`` is the shape of
        ``W_{l+1}`` (``None`` for the last layer or when it has none)."""
        if w.ndim != 2:
            hint = f"; for a single output unit use W_{layer}.reshape(1, {w.shape[0]})" if w.ndim == 1 else ""
            raise ShapeError(f"layer {layer}: W_{layer} must be 2-D (n_out, n_in), got shape {w.shape}{hint}")
        if min(w.shape) == 0:
            raise ShapeError(f"layer {layer}: W_{layer} has an empty dimension, shape {w.shape}; every layer needs at "
                             "least one input and one output unit")
        fits_transposed = b.shape == (w.shape[1],) and w.shape[0] != w.shape[1]
        neighbours_agree = ((previous is not None and previous.shape[0] == w.shape[0])
                            or (following is not None and len(following) == 2 and following[1] == w.shape[1]))
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
                f"weight_scale is {weight_scale!r}, but it must be a finite number; 1.0 gives the N(0, 1/n_in) initialisation"
            )
        seed = check_seed("seed", seed)
        sizes = [int(s) for s in sizes]
        rng = np.random.default_rng(seed)
        weights = [weight_scale * rng.standard_normal((n_out, n_in)) / np.sqrt(n_in) for n_in, n_out in zip(sizes, sizes[1:])]
        biases = [weight_scale * 0.1 * rng.standard_normal(n_out) for n_out in sizes[1:]]
        return cls.from_arrays(weights, biases, activations, loss, dtype=dtype)

    @classmethod
    def from_torch(cls, module, loss, dtype=None):
        """The network of a torch ``nn.Sequential`` of ``nn.Linear`` and activation modules; ``loss`` is the suite's
        loss name (its correspondence with torch's losses: ``xval.torch_io``). torch is imported here, not before."""
        from . import torch_io

        return torch_io.from_torch(cls, module, loss, dtype)

    def to_torch(self):
        """The equivalent ``nn.Sequential`` (Linear, then the activation module unless ``identity``), in this dtype."""
        from . import torch_io

        return torch_io.to_torch(self)

    @staticmethod
    def _expand_activations(activations, n_layers):
        if isinstance(activations, str):
            activations = [activations] * (n_layers - 1) + ["identity"]
        activations = _sequence("activations", activations, "an activation name per layer, or one name for the hidden layers")
        if len(activations) != n_layers:
            raise ShapeError(
                f"got {len(activations)} activation names for {n_layers} layers; pass one per layer "
                "(the last is the output activation), or a single name for all hidden layers"
            )
        for name in activations:
            definitions.activation(name)
        return activations

    # ---- description --------------------------------------------------------------------------
    weights = property(lambda self: self._weights, doc="``W_l`` per layer, read-only arrays.")
    biases = property(lambda self: self._biases, doc="``b_l`` per layer, read-only arrays.")
    activations = property(lambda self: self._activations, doc="Activation name per layer.")
    loss = property(lambda self: self._loss, doc="Loss name.")
    dtype = property(lambda self: self._dtype, doc="numpy dtype of every array.")

    @property
    def n_layers(self):
        return len(self._weights)

    @property
    def sizes(self):
        """Widths ``[n_0, ..., n_L]``."""
        return list(self._sizes)

    @property
    def layer_param_counts(self):
        """``P_l = n_{l+1} * n_l + n_{l+1}`` per layer."""
        return list(self._counts)

    @property
    def n_params(self):
        """``P``, the total parameter count."""
        return sum(self._counts)

    @property
    def param_slices(self):
        """``slice`` of each layer's parameters in the flat vector."""
        ends = np.cumsum([0] + self.layer_param_counts)
        return [slice(int(start), int(end)) for start, end in zip(ends, ends[1:])]

    # ---- flat parameter vector ----------------------------------------------------------------
    def to_vector(self):
        """All parameters as one ``(P,)`` vector: per layer ``W_l`` row-major, then ``b_l``."""
        return np.concatenate([np.concatenate([w.reshape(-1), b]) for w, b in zip(self._weights, self._biases)])

    def from_vector(self, theta):
        """A new network of this architecture whose parameters are the ``(P,)`` vector ``theta``."""
        theta = real_array("the parameter vector", theta, f"a real ({self.n_params},) vector laid out like to_vector()")
        if theta.shape != (self.n_params,):
            raise ShapeError(f"parameter vector has shape {theta.shape}, but this network has P = {self.n_params} parameters")
        weights, biases = [], []
        for sl, w in zip(self.param_slices, self._weights):
            chunk = theta[sl]
            weights.append(chunk[: w.size].reshape(w.shape))
            biases.append(chunk[w.size:])
        cast_finite("the parameter vector", theta, self._dtype)
        return Network.from_arrays(weights, biases, self._activations, self._loss, dtype=self._dtype)

    def astype(self, dtype):
        """The same network with every array in ``dtype`` (``float64`` or ``float32``)."""
        return Network.from_arrays(self._weights, self._biases, self._activations, self._loss, dtype=dtype)

    def __repr__(self):
        return (
            f"Network(sizes={self.sizes}, activations={list(self._activations)}, loss={self._loss!r}, "
            f"P={self.n_params}, dtype={self._dtype.name})"
        )
