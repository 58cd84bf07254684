"""A torch module read as a chain of operations (for ``Network.from_torch``): ``operations(module)`` returns one
``Op`` per supported operation, in order, or raises ``ArgumentError`` naming the first one that is not supported,
where it is (module path, source line) and what is supported.

A module of a supported class, or of a subclass that adds no method of its own, is read whole. Any other module,
the model itself included, is traced through its ``forward`` with ``torch.fx``: its call_module nodes are read as
above, its call_function and call_method nodes as the same operations written as functions (``F.relu``,
``torch.tanh``, ``x.flatten(1)``, ``x.view(x.size(0), -1)``, ``F.linear(x, self.weight, self.bias)``, ...). The
graph must be a chain: each operation takes the previous one's output as its only tensor input, and the model
returns the last one's (no branches, no residual additions). Checks of the module's state (hooks, dtypes, train
mode of Dropout and BatchNorm, ...) are ``xval.torch_io``'s; this module reads structure only.
"""

import inspect
import math
import operator
import os
from dataclasses import dataclass, field

from . import definitions
from .errors import ArgumentError

SUPPORTED = (
    "nn.Linear, nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d, nn.MaxPool1d/2d/3d, nn.AvgPool1d/2d/3d, "
    "nn.AdaptiveAvgPool1d/2d/3d, nn.BatchNorm1d/2d/3d (eval mode), nn.ZeroPad1d/2d/3d, "
    "nn.ConstantPad1d/2d/3d, "
    "nn.Flatten, nn.LogSoftmax(dim=-1), nn.Dropout (eval mode or p=0), nn.Identity, nn.ReLU, nn.LeakyReLU, "
    "nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.LogSigmoid, nn.Softplus, nn.Sigmoid, nn.Tanh, the same operations "
    "as functions (F.relu, torch.tanh, F.linear, ...), and x.flatten(1) / x.view(x.size(0), -1), in a chain"
)


@dataclass
class Op:
    """One operation of the chain. ``kind``: linear, conv, pool, adaptive_avg_pool, batch_norm, pad, activation,
    log_softmax, flatten, reshape or identity; ``where`` names it for messages; ``options`` are its settings in
    torch's terms (dims counted with the batch axis); ``tensors`` its torch tensors (weight, bias, running_mean,
    running_var), each a parameter or buffer of the model, or ``None``."""

    kind: str
    where: str
    options: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)


def _torch():
    import torch

    return torch


# ---- supported module classes --------------------------------------------------------------------------------
def _module_classes():
    nn = _torch().nn
    return {
        nn.Linear: _linear_module,
        **{
            cls: _conv_module
            for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
        },
        **{
            cls: _pool_module
            for cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
        },
        **{cls: _adaptive_module for cls in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)},
        **{cls: _batch_norm_module for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)},
        **{
            cls: _pad_module
            for cls in (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)
        },
        **{
            cls: _dropout_module
            for cls in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
        },
        nn.Identity: lambda m, where: Op("identity", where),
        nn.Flatten: lambda m, where: Op("flatten", where, {"start_dim": m.start_dim, "end_dim": m.end_dim}),
        nn.LogSoftmax: lambda m, where: Op("log_softmax", where, {"dim": m.dim}),
        nn.ReLU: lambda m, where: activation("relu", where),
        nn.Sigmoid: lambda m, where: activation("sigmoid", where),
        nn.Tanh: lambda m, where: activation("tanh", where),
        nn.SELU: lambda m, where: activation("selu", where),
        nn.SiLU: lambda m, where: activation("silu", where),
        nn.LogSigmoid: lambda m, where: activation("logsigmoid", where),
        nn.LeakyReLU: lambda m, where: activation("leaky_relu", where, slope=m.negative_slope),
        nn.ELU: lambda m, where: activation("elu", where, alpha=m.alpha),
        nn.GELU: lambda m, where: _gelu(m.approximate, where),
        nn.Softplus: lambda m, where: activation("softplus", where, beta=m.beta, threshold=m.threshold),
    }


# Methods a subclass may define and still be read as its supported base class: they do not change forward.
_HARMLESS = {"__init__", "extra_repr", "__repr__", "reset_parameters", "_get_name", "__setstate__"}


def supported_class(module):
    """The supported torch class ``module`` is read as: its own class, or the supported base of a subclass that
    defines no method besides ``__init__``/``extra_repr``/``reset_parameters`` (``None`` otherwise)."""
    classes = _module_classes()
    for cls in type(module).__mro__:
        if cls in classes:
            return cls
        if any(
            callable(value) or isinstance(value, (property, staticmethod, classmethod))
            for name, value in vars(cls).items()
            if name not in _HARMLESS and not name.startswith("__")
        ) or any(name in vars(cls) for name in ("__call__", "forward", "_call_impl", "__getattr__")):
            return None
    return None


def _linear_module(m, where):
    return Op("linear", where, {}, {"weight": m.weight, "bias": m.bias})


def _conv_module(m, where):
    if m.padding_mode != "zeros":
        raise ArgumentError(
            f"{where} has padding_mode={m.padding_mode!r}; only padding_mode='zeros' is supported "
            "(other modes are not a layer of the suite)"
        )
    options = {
        "dims": len(m.kernel_size),
        "transposed": m.transposed,
        "stride": tuple(m.stride),
        "padding": m.padding if isinstance(m.padding, str) else tuple(m.padding),
        "dilation": tuple(m.dilation),
        "groups": m.groups,
        "output_padding": tuple(m.output_padding) if m.transposed else (),
    }
    return Op("conv", where, options, {"weight": m.weight, "bias": m.bias})


def _pool_module(m, where):
    nn = _torch().nn
    dims = int(type(m).__name__[-2])
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return _max_pool(dims, where, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
    return _avg_pool(
        dims,
        where,
        m.kernel_size,
        m.stride,
        m.padding,
        m.ceil_mode,
        m.count_include_pad,
        getattr(m, "divisor_override", None),
    )


def _adaptive_module(m, where):
    return _adaptive(int(type(m).__name__[-2]), where, m.output_size)


def _batch_norm_module(m, where):
    options = {
        "dims": int(type(m).__name__[-2]),
        "training": m.training,
        "eps": float(m.eps),
        "track_running_stats": m.track_running_stats,
    }
    return Op(
        "batch_norm",
        where,
        options,
        {"weight": m.weight, "bias": m.bias, "running_mean": m.running_mean, "running_var": m.running_var},
    )


def _pad_module(m, where):
    return _pad(where, tuple(m.padding), "constant", m.value)


def _dropout_module(m, where):
    return _dropout(where, m.p, m.training)


# ---- the operations in torch's terms -------------------------------------------------------------------------
def activation(name, where, **options):
    """An activation Op: options that equal the suite's defaults are left out, so that equal functions read equal
    (torch's Softplus threshold=inf is the suite's threshold=None: never switch to the identity)."""
    defaults = dict(definitions.ACTIVATIONS[name].options)
    if name == "softplus" and options.get("threshold") == math.inf:
        options["threshold"] = None
    kept = tuple(
        (key, float(value) if value is not None else None) for key, value in options.items() if value != defaults[key]
    )
    return Op("activation", where, {"name": name, "options": kept})


def _gelu(approximate, where):
    if approximate not in ("none", "tanh"):
        raise ArgumentError(f"{where}: GELU approximate={approximate!r} is not one of 'none', 'tanh'")
    return activation("gelu" if approximate == "none" else "gelu_tanh", where)


def _max_pool(dims, where, kernel, stride, padding, dilation, ceil_mode, return_indices):
    if return_indices:
        raise ArgumentError(
            f"{where} returns indices (return_indices=True): its output is a tuple, not a tensor; "
            "build it with return_indices=False"
        )
    kernel = _spatial(kernel, dims)
    return Op(
        "pool",
        where,
        {
            "mode": "max",
            "dims": dims,
            "kernel": kernel,
            "stride": _stride(stride, kernel, dims),
            "padding": _spatial(padding, dims),
            "dilation": _spatial(dilation, dims),
            "ceil_mode": bool(ceil_mode),
        },
    )


def _avg_pool(dims, where, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    kernel = _spatial(kernel, dims)
    return Op(
        "pool",
        where,
        {
            "mode": "avg",
            "dims": dims,
            "kernel": kernel,
            "stride": _stride(stride, kernel, dims),
            "padding": _spatial(padding, dims),
            "dilation": (1,) * dims,
            "ceil_mode": bool(ceil_mode),
            "count_include_pad": bool(count_include_pad),
            "divisor_override": divisor_override,
        },
    )


def _adaptive(dims, where, output_size):
    size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * dims
    size = tuple(None if s is None else int(s) for s in size)
    return Op("adaptive_avg_pool", where, {"dims": dims, "output_size": size})


def _pad(where, padding, mode, value):
    if mode != "constant":
        raise ArgumentError(f"{where} pads with mode={mode!r}; only constant (zero or value) padding is supported")
    return Op(
        "pad", where, {"padding": tuple(int(p) for p in padding), "value": 0.0 if value is None else float(value)}
    )


def _dropout(where, p, training):
    if training and p > 0:
        raise ArgumentError(
            f"{where} is a Dropout with p={p} in train mode: its output is random; call model.eval() "
            "first (in eval mode, or with p=0, Dropout is the identity)"
        )
    return Op("identity", where)


def _spatial(value, dims):
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * dims


def _stride(stride, kernel, dims):
    return kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _spatial(stride, dims)


# ---- the same operations as functions and methods ------------------------------------------------------------
REQUIRED = object()


def _function_table():
    """``{function: (parameter names with defaults, builder(where, bound arguments) -> Op)}``."""
    torch = _torch()
    F = torch.nn.functional
    table = {}

    def add(functions, parameters, build):
        for function in functions:
            table[function] = (parameters, build)

    def act(name, **fixed):
        return lambda where, a: activation(name, where, **fixed)

    one = (("input", REQUIRED), ("inplace", False))
    add([F.relu, torch.relu, F.relu_, torch.relu_], one, act("relu"))
    add([torch.sigmoid, F.sigmoid], (("input", REQUIRED),), act("sigmoid"))
    add([torch.tanh, F.tanh], (("input", REQUIRED),), act("tanh"))
    add([F.selu, torch.selu], one, act("selu"))
    add([F.silu], one, act("silu"))
    add([F.logsigmoid], (("input", REQUIRED),), act("logsigmoid"))
    add(
        [F.leaky_relu],
        (("input", REQUIRED), ("negative_slope", 0.01), ("inplace", False)),
        lambda where, a: activation("leaky_relu", where, slope=a["negative_slope"]),
    )
    add(
        [F.elu],
        (("input", REQUIRED), ("alpha", 1.0), ("inplace", False)),
        lambda where, a: activation("elu", where, alpha=a["alpha"]),
    )
    add([F.gelu], (("input", REQUIRED), ("approximate", "none")), lambda where, a: _gelu(a["approximate"], where))
    add(
        [F.softplus],
        (("input", REQUIRED), ("beta", 1.0), ("threshold", 20.0)),
        lambda where, a: activation("softplus", where, beta=a["beta"], threshold=a["threshold"]),
    )
    log_softmax = lambda where, a: Op("log_softmax", where, {"dim": a["dim"], "dtype": a["dtype"]})
    add([F.log_softmax], (("input", REQUIRED), ("dim", None), ("_stacklevel", 3), ("dtype", None)), log_softmax)
    add([torch.log_softmax], (("input", REQUIRED), ("dim", REQUIRED), ("dtype", None)), log_softmax)
    add(
        [torch.flatten],
        (("input", REQUIRED), ("start_dim", 0), ("end_dim", -1)),
        lambda where, a: Op("flatten", where, {"start_dim": a["start_dim"], "end_dim": a["end_dim"]}),
    )
    add(
        [torch.reshape],
        (("input", REQUIRED), ("shape", REQUIRED)),
        lambda where, a: Op("reshape", where, {"shape": tuple(a["shape"])}),
    )
    add(
        [F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout],
        (("input", REQUIRED), ("p", 0.5), ("training", True), ("inplace", False)),
        lambda where, a: _dropout(where, a["p"], a["training"]),
    )
    add(
        [torch.dropout, torch.alpha_dropout, torch.feature_alpha_dropout],
        (("input", REQUIRED), ("p", REQUIRED), ("train", REQUIRED)),
        lambda where, a: _dropout(where, a["p"], a["train"]),
    )
    add(
        [F.linear],
        (("input", REQUIRED), ("weight", REQUIRED), ("bias", None)),
        lambda where, a: Op("linear", where, {}, {"weight": a["weight"], "bias": a["bias"]}),
    )
    conv = (
        ("input", REQUIRED),
        ("weight", REQUIRED),
        ("bias", None),
        ("stride", 1),
        ("padding", 0),
        ("dilation", 1),
        ("groups", 1),
    )
    for dims, function in enumerate([F.conv1d, F.conv2d, F.conv3d], start=1):
        add([function], conv, lambda where, a, dims=dims: _conv_function(where, a, dims, False))
    transposed = (
        ("input", REQUIRED),
        ("weight", REQUIRED),
        ("bias", None),
        ("stride", 1),
        ("padding", 0),
        ("output_padding", 0),
        ("groups", 1),
        ("dilation", 1),
    )
    for dims, function in enumerate([F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d], start=1):
        add([function], transposed, lambda where, a, dims=dims: _conv_function(where, a, dims, True))
    max_pool = (
        ("input", REQUIRED),
        ("kernel_size", REQUIRED),
        ("stride", None),
        ("padding", 0),
        ("dilation", 1),
        ("ceil_mode", False),
        ("return_indices", False),
    )
    for dims, function in enumerate([F.max_pool1d, F.max_pool2d, F.max_pool3d], start=1):
        add(
            [function],
            max_pool,
            lambda where, a, dims=dims: _max_pool(
                dims,
                where,
                a["kernel_size"],
                a["stride"],
                a["padding"],
                a["dilation"],
                a["ceil_mode"],
                a["return_indices"],
            ),
        )
    avg_pool = (
        ("input", REQUIRED),
        ("kernel_size", REQUIRED),
        ("stride", None),
        ("padding", 0),
        ("ceil_mode", False),
        ("count_include_pad", True),
        ("divisor_override", None),
    )
    for dims, function in enumerate([F.avg_pool1d, F.avg_pool2d, F.avg_pool3d], start=1):
        add(
            [function],
            avg_pool[:6] if dims == 1 else avg_pool,
            lambda where, a, dims=dims: _avg_pool(
                dims,
                where,
                a["kernel_size"],
                a["stride"],
                a["padding"],
                a["ceil_mode"],
                a["count_include_pad"],
                a.get("divisor_override"),
            ),
        )
    for dims, function in enumerate([F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d], start=1):
        add(
            [function],
            (("input", REQUIRED), ("output_size", REQUIRED)),
            lambda where, a, dims=dims: _adaptive(dims, where, a["output_size"]),
        )
    add(
        [F.pad],
        (("input", REQUIRED), ("pad", REQUIRED), ("mode", "constant"), ("value", None)),
        lambda where, a: _pad(where, a["pad"], a["mode"], a["value"]),
    )
    add(
        [F.batch_norm],
        (
            ("input", REQUIRED),
            ("running_mean", REQUIRED),
            ("running_var", REQUIRED),
            ("weight", None),
            ("bias", None),
            ("training", False),
            ("momentum", 0.1),
            ("eps", 1e-5),
        ),
        lambda where, a: Op(
            "batch_norm",
            where,
            {
                "dims": None,
                "training": a["training"],
                "eps": float(a["eps"]),
                "track_running_stats": a["running_mean"] is not None,
            },
            {k: a[k] for k in ("weight", "bias", "running_mean", "running_var")},
        ),
    )
    return table


_METHODS = {
    "relu": ((("self", REQUIRED),), lambda where, a: activation("relu", where)),
    "relu_": ((("self", REQUIRED),), lambda where, a: activation("relu", where)),
    "sigmoid": ((("self", REQUIRED),), lambda where, a: activation("sigmoid", where)),
    "sigmoid_": ((("self", REQUIRED),), lambda where, a: activation("sigmoid", where)),
    "tanh": ((("self", REQUIRED),), lambda where, a: activation("tanh", where)),
    "tanh_": ((("self", REQUIRED),), lambda where, a: activation("tanh", where)),
    "contiguous": ((("self", REQUIRED),), lambda where, a: Op("identity", where)),
    "flatten": (
        (("self", REQUIRED), ("start_dim", 0), ("end_dim", -1)),
        lambda where, a: Op("flatten", where, {"start_dim": a["start_dim"], "end_dim": a["end_dim"]}),
    ),
    "log_softmax": (
        (("self", REQUIRED), ("dim", REQUIRED), ("dtype", None)),
        lambda where, a: Op("log_softmax", where, {"dim": a["dim"], "dtype": a["dtype"]}),
    ),
}
_RESHAPES = ("view", "reshape")


def _conv_function(where, a, dims, transposed):
    stride, dilation = _spatial(a["stride"], dims), _spatial(a["dilation"], dims)
    padding = a["padding"] if isinstance(a["padding"], str) else _spatial(a["padding"], dims)
    options = {
        "dims": dims,
        "transposed": transposed,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": int(a["groups"]),
        "output_padding": _spatial(a["output_padding"], dims) if transposed else (),
    }
    return Op("conv", where, options, {"weight": a["weight"], "bias": a["bias"]})


def _bind(parameters, args, kwargs, where):
    """``{name: value}`` of a call's arguments against ``parameters`` (``((name, default), ...)``)."""
    names = [name for name, _ in parameters]
    if len(args) > len(names):
        raise ArgumentError(f"{where} gets {len(args)} positional arguments, more than it takes ({', '.join(names)})")
    bound = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names or key in bound:
            raise ArgumentError(f"{where} gets an argument {key!r} that is not supported here")
        bound[key] = value
    for name, default in parameters:
        if name not in bound:
            if default is REQUIRED:
                raise ArgumentError(f"{where} lacks its argument {name!r}")
            bound[name] = default
    return bound


# ---- tracing ----------------------------------------------------------------------------------------------------
def operations(root):
    """The chain of ``Op`` that ``root`` computes, in order."""
    cls = supported_class(root)
    if cls is not None:
        return [_module_classes()[cls](root, f"the model ({type(root).__name__})")]
    return _Reader(root).read(_trace(root))


def _trace(root):
    torch = _torch()
    fx = torch.fx

    class Tracer(fx.Tracer):
        def is_leaf_module(self, module, qualified_name):
            return supported_class(module) is not None or super().is_leaf_module(module, qualified_name)

    tracer = Tracer()
    tracer.record_stack_traces = True
    try:
        signature = inspect.signature(type(root).forward)
    except (TypeError, ValueError):
        signature = None
    concrete = {}
    if signature is not None:
        inputs = [p for p in list(signature.parameters.values())[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        required = [p.name for p in inputs if p.default is p.empty]
        if len(required) > 1:
            raise ArgumentError(
                f"{type(root).__name__}.forward takes {len(required)} inputs ({', '.join(required)}); "
                "from_torch takes models of one input tensor"
            )
        # Extra arguments keep their defaults: the model is read as called with its input alone.
        concrete = {p.name: p.default for p in inputs[1:] if p.default is not p.empty}
    try:
        return tracer.trace(root, concrete_args=concrete or None)
    except ArgumentError:
        raise
    except Exception as exc:  # torch.fx raises many kinds: control flow on traced values, unsupported Python, ...
        raise ArgumentError(
            f"tracing {type(root).__name__}.forward with torch.fx failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); from_torch takes a chain of supported "
            "operations, without control flow that depends on the input's values"
        ) from None


class _Reader:
    """Walks a traced graph node by node, keeping the node that holds the chain's current tensor."""

    def __init__(self, root):
        self.root = root
        self.functions = _function_table()
        self.attributes = {}  # get_attr node -> tensor
        self.sizes = {}  # shape-query node -> "batch" (the batch size), "size" (a whole shape) or "other"
        self.specialized = set()  # placeholders of arguments that keep their defaults, and what derives from them

    def read(self, graph):
        ops, current = [], None
        for node in graph.nodes:
            if node.op == "placeholder":
                if current is None:
                    current = node
                else:
                    self.specialized.add(node)
            elif node.op == "get_attr":
                self.attributes[node] = self._attribute(node)
            elif node.op == "output":
                self._check_output(node, current)
            elif node.all_input_nodes and all(n in self.specialized for n in node.all_input_nodes):
                self.specialized.add(node)
            elif self._shape_query(node):
                continue
            else:
                ops.append(self._operation(node, current))
                current = node
        return ops

    def _attribute(self, node):
        torch = _torch()
        try:
            value = self.root.get_parameter(node.target)
        except AttributeError:
            try:
                value = self.root.get_buffer(node.target)
            except AttributeError:
                value = None
        if not isinstance(value, torch.Tensor):
            raise ArgumentError(
                f"{self._where(node)} reads the attribute {node.target!r}, which is not a parameter or "
                "buffer of the model; register it with nn.Parameter (or register_buffer)"
            )
        return value

    def _shape_query(self, node):
        """Record ``x.size()``, ``x.size(0)``, ``x.shape``, ``x.shape[0]``: the batch size may shape a ``view``."""
        target, args = node.target, node.args
        if node.op == "call_method" and target == "size":
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim")
            self.sizes[node] = "size" if dim is None else ("batch" if dim == 0 else "other")
        elif node.op == "call_function" and target is getattr and len(args) == 2 and args[1] == "shape":
            self.sizes[node] = "size"
        elif node.op == "call_function" and target is operator.getitem and args and args[0] in self.sizes:
            self.sizes[node] = "batch" if self.sizes[args[0]] == "size" and args[1] == 0 else "other"
        else:
            return False
        return True

    def _check_output(self, node, current):
        result = node.args[0]
        if not hasattr(result, "op"):
            raise ArgumentError(
                f"{type(self.root).__name__}.forward returns {type(result).__name__}, not one tensor; "
                "from_torch takes models that return their output tensor"
            )
        if result is not current:
            raise ArgumentError(
                f"{type(self.root).__name__}.forward returns the result of {self._where(result)}, "
                f"not of its last operation ({self._where(current)}); from_torch takes a chain of "
                "operations, each on the previous one's output"
            )

    def _operation(self, node, current):
        where = self._where(node)
        tensors = [n for n in node.all_input_nodes if n not in self.attributes and n not in self.sizes]
        if not tensors:
            raise ArgumentError(
                f"{where} does not take the chain's tensor (it computes from parameters or "
                "constants); from_torch takes operations on the previous output, with parameters "
                "passed as they are (F.linear(x, self.weight, self.bias))"
            )
        if tensors != [current]:
            others = [n for n in tensors if n is not current]
            what = (
                f"the output of {self._where(others[0])}"
                if others and others[0].op != "placeholder"
                else "the model's input"
                if others
                else "no tensor of the chain"
            )
            raise ArgumentError(
                f"{where} takes {what}"
                + (" as well" if current in tensors else "")
                + ", not only the previous operation's output: from_torch takes a chain of operations "
                "(no branches, residual connections or concatenations)"
            )
        if node.op == "call_module":
            return self._module(node, where)
        if node.op == "call_method" and node.target in _RESHAPES:
            return self._reshape(node, where)
        if node.op == "call_method" and node.target in _METHODS:
            parameters, build = _METHODS[node.target]
        elif node.op == "call_function" and node.target in self.functions:
            parameters, build = self.functions[node.target]
        else:
            raise ArgumentError(f"{where} is not supported; from_torch takes {SUPPORTED}")
        bound = _bind(parameters, node.args, node.kwargs, where)
        first = parameters[0][0]
        if bound[first] is not current:
            raise ArgumentError(f"{where} takes the chain's tensor as another argument than its input")
        for key, value in bound.items():
            if key != first and hasattr(value, "op"):
                if value in self.sizes:
                    raise ArgumentError(
                        f"{where} takes a size read from a tensor as its {key!r}; only views of "
                        "(batch size, -1) are supported"
                    )
                bound[key] = self.attributes[value]
        return build(where, bound)

    def _module(self, node, where):
        if node.args[1:] or node.kwargs:
            raise ArgumentError(f"{where} is called with more arguments than its input")
        module = self.root.get_submodule(node.target)
        cls = supported_class(module)
        if cls is None:
            raise ArgumentError(f"{where} is not supported; from_torch takes {SUPPORTED}")
        return _module_classes()[cls](module, where)

    def _reshape(self, node, where):
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if "shape" in node.kwargs or "size" in node.kwargs:
            shape = tuple(node.kwargs.get("shape", node.kwargs.get("size")))
        resolved = []
        for entry in shape:
            if hasattr(entry, "op"):
                if self.sizes.get(entry) != "batch":
                    raise ArgumentError(
                        f"{where} takes a size read from a tensor other than the batch size; only "
                        "x.view(x.size(0), -1) and views that keep the batch axis are supported"
                    )
                resolved.append("batch")
            else:
                resolved.append(int(entry))
        return Op("reshape", where, {"shape": tuple(resolved)})

    def _where(self, node):
        if node.op == "call_module":
            return f"module {node.target} ({type(self.root.get_submodule(node.target)).__name__})"
        if node.op == "placeholder":
            return "the model's input"
        if node.op == "get_attr":
            return f"attribute {node.target}"
        stack = node.meta.get("nn_module_stack") or {}
        inside = f" in module {list(stack)[-1]}" if stack else ""
        return f"operation {_name(node)}{inside}{_source(node)}"


def _name(node):
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    name = getattr(target, "__name__", repr(target))
    torch = _torch()
    if getattr(torch.nn.functional, name, None) is target:
        return f"torch.nn.functional.{name}"
    if getattr(torch, name, None) is target:
        return f"torch.{name}"
    if getattr(operator, name, None) is target:
        return f"operator.{name}"
    return f"{getattr(target, '__module__', None) or ''}.{name}".lstrip(".")


def _source(node):
    """`` at file.py:12 (x = x + y)``: the innermost frame of the user's code in the node's stack trace."""
    trace = node.stack_trace or ""
    torch_dir = os.path.dirname(_torch().__file__)
    lines = trace.splitlines()
    found = ""
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith('File "'):
            path = text[6 : text.index('"', 6)]
            if not path.startswith(torch_dir):
                number = text.split("line ")[1].split(",")[0] if "line " in text else "?"
                code = lines[i + 1].strip() if i + 1 < len(lines) else ""
                found = f" at {os.path.basename(path)}:{number}" + (f" ({code})" if code else "")
    return found
