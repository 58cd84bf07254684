"""The case table: each case is data (architecture, loss, targets, batch, seed), installed with the suite so that
code outside this repository can run it (``python -m xval check`` does).

Ids read like ``mlp-4x8x3-tanh-mse-N5``. ``make`` turns a case into ``(net, X, Y)`` in a dtype, ``problem`` into a
``contract.Problem`` (with a unit direction ``v`` for ``hvp``).
"""

import numpy as np

from . import definitions
from .contract import Problem
from .errors import unknown_name
from .network import Network

CASES = [
    # depth 1: linear regression and softmax regression
    dict(sizes=[3, 1], activations=["identity"], loss="mse", n=1),
    dict(sizes=[4, 3], activations=["identity"], loss="cross_entropy", targets="soft", n=5),
    # one hidden layer, each activation
    dict(sizes=[4, 8, 3], activations="tanh", loss="mse", n=5),
    dict(sizes=[4, 8, 3], activations="sigmoid", loss="cross_entropy", targets="onehot", n=7),
    dict(sizes=[3, 6, 6, 2], activations="relu", loss="mse", n=8),
    dict(sizes=[3, 6, 6, 2], activations="softplus", loss="cross_entropy", targets="soft", n=6),
    # a width-1 bottleneck
    dict(sizes=[5, 1, 4], activations="tanh", loss="mse", n=4),
    # different activations per layer, non-identity outputs
    dict(sizes=[4, 7, 5, 6, 3], activations=["sigmoid", "relu", "softplus", "tanh"], loss="mse", n=5),
    dict(sizes=[3, 5, 4, 3], activations=["softplus", "tanh", "sigmoid"], loss="cross_entropy", targets="onehot", n=1),
    # depth 6
    dict(sizes=[3, 5, 5, 5, 5, 5, 2], activations="tanh", loss="mse", n=3),
    dict(
        sizes=[2, 4, 4, 4, 4, 4, 3],
        activations=["tanh", "sigmoid", "relu", "softplus", "tanh", "identity"],
        loss="cross_entropy",
        targets="soft",
        n=4,
    ),
    # saturated units from large weights
    dict(sizes=[4, 6, 6, 3], activations="sigmoid", loss="mse", n=5, weight_scale=30.0, tag="saturated"),
    dict(
        sizes=[4, 6, 3],
        activations="tanh",
        loss="cross_entropy",
        targets="onehot",
        n=5,
        weight_scale=20.0,
        tag="saturated",
    ),
    # near-zero gradients: vanishing through tiny weights, and targets the network almost fits
    dict(sizes=[4, 6, 6, 6, 6, 2], activations="tanh", loss="mse", n=3, weight_scale=0.05, tag="vanishing"),
    dict(sizes=[3, 8, 2], activations="softplus", loss="mse", targets="near_fit", n=6),
]


# Networks of every layer kind, each layer as data: ``(kind, options)``; channels and widths in are read off the
# running shape. Parameters are drawn N(0, 1/fan_in), biases N(0, 0.1^2); ``frozen`` tensors become constants.
LAYER_CASES = [
    dict(
        name="conv2d-tanh-maxpool",
        input=(2, 6, 6),
        n=3,
        loss="cross_entropy",
        targets="onehot",
        layers=[
            ("conv", dict(out=3, kernel=3, padding=1)),
            ("activation", "tanh"),
            ("maxpool", dict(kernel=2)),
            ("flatten", {}),
            ("dense", dict(out=3)),
        ],
    ),
    dict(
        name="conv1d-strided-dilated-grouped-avgpool",
        input=(2, 11),
        n=4,
        loss="bce_with_logits",
        reduction="sum",
        targets="binary",
        layers=[
            ("conv", dict(out=4, kernel=3, stride=2, padding=2, dilation=2, groups=2)),
            ("activation", "sigmoid"),
            ("avgpool", dict(kernel=2, padding=1, ceil_mode=True, count_include_pad=False)),
            ("flatten", {}),
            ("dense", dict(out=2)),
        ],
    ),
    dict(
        name="convtranspose2d-softplus",
        input=(2, 3, 3),
        n=2,
        loss="mean_squared_error",
        layers=[
            ("conv_transpose", dict(out=2, kernel=3, stride=2, padding=1, output_padding=1)),
            ("activation", ("softplus", (("beta", 2.0), ("threshold", 5.0)))),
            ("flatten", {}),
            ("dense", dict(out=2)),
        ],
    ),
    dict(
        name="dense-over-positions-nobias-frozen",
        input=(3, 4),
        n=3,
        loss="squared_error",
        reduction="sum",
        layers=[
            ("dense", dict(out=5, frozen_weight=True)),
            ("activation", ("leaky_relu", (("slope", 0.2),))),
            ("dense", dict(out=2, bias=False)),
            ("flatten", {}),
        ],
    ),
    dict(
        name="tied-dense-gelu",
        input=(4,),
        n=3,
        loss="mse",
        layers=[
            ("dense", dict(out=4, tie="a")),
            ("activation", "tanh"),
            ("dense", dict(out=4, tie="a")),
            ("activation", "gelu"),
        ],
    ),
    dict(
        name="pad-conv-batchnorm-elu-adaptivepool-logsoftmax",
        input=(1, 5, 5),
        n=3,
        loss="nll",
        targets="onehot",
        layers=[
            ("pad", dict(padding=(1, 0, 0, 1))),
            ("conv", dict(out=2, kernel=3)),
            ("batchnorm", {}),
            ("activation", ("elu", (("alpha", 0.7),))),
            ("adaptive_avgpool", dict(size=2)),
            ("flatten", {}),
            ("dense", dict(out=3)),
            ("log_softmax", {}),
        ],
    ),
    dict(
        name="conv3d-silu",
        input=(1, 3, 3, 3),
        n=2,
        loss="mse",
        layers=[("conv", dict(out=2, kernel=2)), ("activation", "silu"), ("flatten", {}), ("dense", dict(out=2))],
    ),
    dict(
        name="mlp-selu-gelu_tanh-logsigmoid",
        input=(3,),
        n=4,
        loss="mean_bce_with_logits",
        targets="binary",
        layers=[
            ("dense", dict(out=5)),
            ("activation", "selu"),
            ("dense", dict(out=4)),
            ("activation", "gelu_tanh"),
            ("dense", dict(out=3)),
            ("activation", "logsigmoid"),
        ],
    ),
]


def _build_layers(case, rng):
    """``(layers, parameters)`` of a layer case (``LAYER_CASES``)."""
    from . import layers as records

    shape, out, parameters, ties = tuple(case["input"]), [], [], {}

    def tensor(array, frozen=False):
        if frozen:
            return array
        parameters.append(array)
        return len(parameters) - 1

    for kind, options in case["layers"]:
        if kind == "dense":
            tie = options.get("tie")
            if tie in ties:
                record = ties[tie]
            else:
                n_in, n_out = shape[-1], options["out"]
                weight = tensor(rng.standard_normal((n_out, n_in)) / np.sqrt(n_in), options.get("frozen_weight", False))
                bias = tensor(0.1 * rng.standard_normal(n_out)) if options.get("bias", True) else None
                record = records.Dense(weight, bias)
                if tie:
                    ties[tie] = record
        elif kind in ("conv", "conv_transpose"):
            dims, c_in, c_out, groups = len(shape) - 1, shape[0], options["out"], options.get("groups", 1)
            kernel = (options["kernel"],) * dims
            transposed = kind == "conv_transpose"
            weight_shape = (c_in, c_out // groups, *kernel) if transposed else (c_out, c_in // groups, *kernel)
            fan_in = c_in // groups * int(np.prod(kernel))
            weight = tensor(rng.standard_normal(weight_shape) / np.sqrt(fan_in))
            bias = tensor(0.1 * rng.standard_normal(c_out))
            spread = {
                key: (options.get(key, default),) * dims
                for key, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("output_padding", 0))
            }
            record = records.Conv(
                weight,
                bias,
                dims,
                spread["stride"],
                spread["padding"],
                spread["dilation"],
                groups,
                transposed,
                spread["output_padding"] if transposed else (),
            )
        elif kind == "activation":
            name, activation_options = (options, ()) if isinstance(options, str) else options
            record = records.Activation(name, activation_options)
        elif kind in ("maxpool", "avgpool"):
            dims = len(shape) - 1
            k = options["kernel"]
            record = records.Pool(
                "max" if kind == "maxpool" else "avg",
                dims,
                (k,) * dims,
                (options.get("stride", k),) * dims,
                (options.get("padding", 0),) * dims,
                (1,) * dims,
                options.get("ceil_mode", False),
                options.get("count_include_pad", True),
            )
        elif kind == "adaptive_avgpool":
            dims = len(shape) - 1
            record = records.AdaptiveAvgPool(dims, (options["size"],) * dims)
        elif kind == "batchnorm":
            c = shape[0]
            record = records.Normalization(
                tensor(1.0 + 0.1 * rng.standard_normal(c)),
                tensor(0.1 * rng.standard_normal(c)),
                0.1 * rng.standard_normal(c),
                0.5 + rng.random(c),
                1e-5,
            )
        elif kind == "flatten":
            record = records.Flatten()
        elif kind == "pad":
            record = records.Pad(tuple(options["padding"]))
        elif kind == "log_softmax":
            record = records.LogSoftmax()
        else:
            raise ValueError(f"unknown layer kind {kind!r} in case {case['name']!r}")
        out.append(record)
        shape = _shape_after(record, shape, parameters)
    return out, parameters


def _shape_after(record, shape, parameters):
    """The sample shape after ``record`` (a throwaway network answers it, with the parameters drawn so far)."""
    net = Network.__new__(Network)
    object.__setattr__(net, "_parameters", tuple(parameters))
    return tuple(record.output_shape(shape, net))


def case_id(case):
    """``mlp-4x8x3-tanh-mse-N5`` (sizes, activations once when all hidden are equal, loss, batch, tag), or for a layer
    case ``layers-conv2d-relu-maxpool-cross_entropy-N3`` (its name, loss and reduction, batch)."""
    if "layers" in case:
        reduction = "-sum" if case.get("reduction", "mean") == "sum" else ""
        return f"layers-{case['name']}-{case['loss']}{reduction}-N{case['n']}"
    acts = case["activations"]
    acts = acts if isinstance(acts, str) else "+".join(acts)
    parts = ["mlp", "x".join(map(str, case["sizes"])), acts, case["loss"]]
    if case.get("targets") and case["targets"] != "regression":
        parts.append(case["targets"])
    parts.append(f"N{case['n']}")
    if case.get("tag"):
        parts.append(case["tag"])
    return "-".join(parts)


# How far near-fit targets sit from the outputs: far enough above the dtype's rounding of the outputs
# that the residual, and so the gradient, is still determined to the comparison tolerance.
NEAR_FIT_RESIDUAL = {"float64": 1e-4, "float32": 1e-1}


def make_targets(kind, rng, net, X, dtype):
    n, k = X.shape[0], net.output_size
    if kind == "binary":
        return rng.random((n, k))
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, size=n)]
    if kind == "soft":
        logits = rng.standard_normal((n, k))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == "near_fit":
        return definitions.outputs(net, X) + NEAR_FIT_RESIDUAL[dtype] * rng.standard_normal((n, k))
    return rng.standard_normal((n, k))


def make(case, dtype="float64", seed=0):
    """``(net, X, Y)`` for ``case``, the network and data in ``dtype``."""
    if "layers" in case:
        rng = np.random.default_rng(seed)
        records, parameters = _build_layers(case, rng)
        net = Network.from_layers(records, parameters, case["input"], case["loss"], case.get("reduction", "mean"))
        X = rng.standard_normal((case["n"], *case["input"]))
        Y = make_targets(case.get("targets", "regression"), rng, net, X, dtype)
        return net.astype(dtype), X.astype(dtype), Y.reshape(case["n"], *net.output_shape).astype(dtype)
    net = Network.random(
        case["sizes"], case["activations"], case["loss"], seed=seed, weight_scale=case.get("weight_scale", 1.0)
    )
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((case["n"], case["sizes"][0]))
    Y = make_targets(case.get("targets", "regression"), rng, net, X, dtype)
    return net.astype(dtype), X.astype(dtype), Y.astype(dtype)


def unit_direction(net, seed=0):
    """A random unit direction ``(P,)`` in the network's dtype (for ``hvp``)."""
    v = np.random.default_rng(seed).standard_normal(net.n_params)
    return (v / np.linalg.norm(v)).astype(net.dtype)


def problem(case, dtype="float64", seed=0):
    """The ``contract.Problem`` of ``case`` in ``dtype``: its network, data, targets and a unit direction."""
    net, X, Y = make(case, dtype, seed)
    return Problem(case_id(case), net, X, Y, unit_direction(net, seed))


def select(names=None):
    """The cases whose ids are in ``names`` (all when ``None``), in table order; an error naming an unknown id."""
    if names is None:
        return list(CASES)
    by_id = {case_id(case): case for case in CASES}
    unknown = [name for name in names if name not in by_id]
    if unknown:
        raise unknown_name("case", unknown[0], by_id)
    return [by_id[name] for name in names]
