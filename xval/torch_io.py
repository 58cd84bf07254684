"""A ``Network`` from a torch model and its loss (``Network.from_torch``), and back (``net.to_torch()``).

``from_torch(module, loss, dtype=None, input_shape=None)`` takes a model only when the network it builds computes
exactly the model's function; anything else is an ``ArgumentError`` naming what was refused, where, and the fix:

- **Structure** (``xval.torch_trace``): a chain of supported modules and functions, found by ``torch.fx`` tracing
  (nested ``nn.Sequential``, wrappers and subclasses whose ``forward`` is such a chain).
- **State**: no forward, pre-forward or backward hooks (on any module, or global), no gradient hooks on
  parameters, no parametrizations (``parametrize``, ``weight_norm``, ``spectral_norm``), no uninitialised lazy or
  meta-device tensors, no buffers besides BatchNorm's running statistics, BatchNorm in eval mode with running
  statistics, Dropout in eval mode (or ``p=0``: the identity), every trainable parameter used.
- **Parameters**: the trainable ones (``requires_grad``) are the network's parameters, one per tensor however many
  layers use it (tied weights: the layers name the same index), in ``module.parameters()`` order, so that
  ``net.n_params == sum(p.numel() for p in module.parameters() if p.requires_grad)`` and ``net.to_vector()`` is
  ``torch.nn.utils.parameters_to_vector`` of them; a model whose layers use them in another order than they are
  registered is refused (register the submodules in the order ``forward`` calls them). Frozen tensors
  (``requires_grad=False``) are constants of the layers; ``bias=False`` is no bias.
- **dtype**: the model's (float64 or float32; all its tensors alike), or ``dtype=`` converts. float16 and bfloat16
  models are refused (their outputs round differently from any float32/float64 network): ``model.double()``.
- **Input shape**: one sample's shape. Read from the model when its first layer is a Linear (``(in_features,)``);
  otherwise, or for inputs ``(N, ..., D)`` that a Linear maps over leading positions, pass ``input_shape=``.
  After building, the model and ``net.to_torch()`` are run on two random samples and must agree.

Losses: a torch loss module, with ``reduction='mean'`` or ``'sum'``, is the suite's loss exactly (no rescaling):

==========================  ==========================  ============================================
torch                       net.loss, net.reduction     per sample (y_hat of K entries)
==========================  ==========================  ============================================
MSELoss mean / sum          mean_squared_error, mean    ||y_hat - y||^2 / K, E = (1/N) sum_n
                            squared_error, sum          ||y_hat - y||^2, E = sum_n
BCEWithLogitsLoss mean/sum  mean_bce_with_logits, mean  (1/K) sum_k BCE; bce_with_logits, sum
CrossEntropyLoss mean/sum   cross_entropy, mean / sum   class indices or probability rows, (N, C) only
NLLLoss mean / sum          nll, mean / sum             after a final LogSoftmax(dim=-1), (N, C) only
==========================  ==========================  ============================================

A loss name of the suite (``'mse'``, ``'cross_entropy'``, ...) keeps its meaning, with the mean over samples;
``None``: a network without a loss. Refused: ``reduction='none'``, ``weight=``, ``pos_weight=``,
``label_smoothing``, a non-negative ``ignore_index``, other losses, and class losses on outputs ``(N, C, d1, ...)``.

torch is imported only when one of these functions runs: ``xval`` imports without it.
"""

import math

import numpy as np

from . import definitions
from .errors import ArgumentError, EngineUnavailableError, ShapeError, XvalError, describe
from .layers import Activation, AdaptiveAvgPool, Conv, Dense, Flatten, LogSoftmax, Normalization, Pad, Pool
from .torch_trace import SUPPORTED, operations
from .values import check_dtype

INSTALL = "pip install torch  (or: pip install -e '.[torch]')"
LOSS_MODULES = ("MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "NLLLoss")
_LOSS_NAMES = {  # torch loss class -> {reduction: suite's loss name}
    "MSELoss": {"mean": "mean_squared_error", "sum": "squared_error"},
    "BCEWithLogitsLoss": {"mean": "mean_bce_with_logits", "sum": "bce_with_logits"},
    "CrossEntropyLoss": {"mean": "cross_entropy", "sum": "cross_entropy"},
    "NLLLoss": {"mean": "nll", "sum": "nll"},
}
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
# Outputs of the model and of the network built from it, on random inputs, agree to this relative difference.
_AGREE = {"float64": 1e-10, "float32": 1e-4}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailableError(
            f"converting to or from torch needs torch, which is not importable ({exc}); install it with: {INSTALL}"
        ) from None
    return torch


# ---- from torch -------------------------------------------------------------------------------------------------
def from_torch(cls, module, loss, dtype=None, input_shape=None):
    """A ``cls`` (``Network``) computing exactly ``module`` and ``loss``; see the module docstring."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ArgumentError(f"from_torch takes a torch.nn.Module, got {describe(module)}")
    loss_name, reduction, loss_needs = _loss(loss)
    _check_state(module)
    ops = operations(module)
    model_dtype = _model_dtype(module, ops)
    dtype = model_dtype if dtype is None else check_dtype(dtype)
    shape = _input_shape(ops, input_shape)
    layers, parameters = _Builder(module, dtype).build(ops, shape)
    try:
        net = cls.from_layers(layers, parameters, shape, loss_name, reduction, dtype)
    except XvalError as exc:
        raise type(exc)(f"the model's layers do not fit input_shape={shape}: {exc}") from None
    _check_loss_fits(net, loss, loss_needs)
    _check_same_function(module, net, shape, model_dtype)
    return net


def _loss(loss):
    """``(suite's loss name, reduction, what it needs of the outputs)`` for a torch loss module, a name or None."""
    if loss is None:
        return None, "mean", ()
    if isinstance(loss, str):
        spec = definitions.loss(loss)
        return loss, "mean", ("classes",) if spec.class_targets else ()
    torch = _torch()
    nn = torch.nn
    if not isinstance(loss, nn.Module):
        raise ArgumentError(
            f"loss is {describe(loss)}; pass a torch loss module (nn.MSELoss(reduction='sum'), "
            f"nn.CrossEntropyLoss(), ...), one of the suite's loss names, or None"
        )
    base = next(
        (
            cls.__name__
            for cls in type(loss).__mro__
            if cls.__name__ in LOSS_MODULES and cls.__module__.startswith("torch.nn")
        ),
        None,
    )
    if base is None or (type(loss).forward is not getattr(nn, base).forward):
        what = (
            type(loss).__name__
            if base is None
            else f"{type(loss).__name__}, a subclass of {base} with its own forward,"
        )
        raise ArgumentError(
            f"loss {what} is not supported; from_torch takes nn.{', nn.'.join(LOSS_MODULES)} "
            "(reduction 'mean' or 'sum'), a loss name of the suite, or None"
        )
    _check_hooks(loss, f"the loss ({type(loss).__name__})")
    if loss.reduction not in ("mean", "sum"):
        raise ArgumentError(
            f"{base}(reduction={loss.reduction!r}) is not supported: the objective must be a number; "
            "use reduction='mean' or 'sum'"
        )
    refusals = [
        ("weight", getattr(loss, "weight", None) is not None, "class or entry weights"),
        ("pos_weight", getattr(loss, "pos_weight", None) is not None, "positive-class weights"),
        ("label_smoothing", getattr(loss, "label_smoothing", 0.0) != 0.0, "label smoothing"),
        (
            "ignore_index",
            getattr(loss, "ignore_index", -100) >= 0,
            f"ignoring class {getattr(loss, 'ignore_index', None)} (targets of that class would not count)",
        ),
    ]
    for option, refused, what in refusals:
        if refused:
            raise ArgumentError(
                f"{base} with {option}= is not supported: the suite's losses have no {what}; build it without {option}"
            )
    needs = {"CrossEntropyLoss": ("classes",), "NLLLoss": ("classes", "log_softmax")}.get(base, ())
    return _LOSS_NAMES[base][loss.reduction], loss.reduction, needs


def _check_loss_fits(net, loss, needs):
    name = type(loss).__name__ if loss is not None and not isinstance(loss, str) else repr(loss)
    if "classes" in needs and len(net.output_shape) != 1:
        raise ArgumentError(
            f"loss {name} on outputs of shape (N, {', '.join(map(str, net.output_shape))}) is not "
            "supported: the suite's class losses take outputs (N, C) with targets (N,) or (N, C); "
            "end the model with nn.Flatten() if every entry is one class score, or use another loss"
        )
    if "log_softmax" in needs and not isinstance(net.layers[-1], LogSoftmax):
        raise ArgumentError(
            f"loss {name} takes log-probabilities, but the model does not end in nn.LogSoftmax(dim=-1) "
            f"(its last layer is {net.describe().split(', ')[-1]}); add it, or use nn.CrossEntropyLoss "
            "on the logits"
        )


# ---- the model's state --------------------------------------------------------------------------------------------
_HOOKS = (
    ("_forward_pre_hooks", "a forward pre-hook"),
    ("_forward_hooks", "a forward hook"),
    ("_backward_pre_hooks", "a backward pre-hook"),
    ("_backward_hooks", "a backward hook"),
)


def _check_hooks(module, where):
    torch = _torch()
    for attribute, what in _HOOKS:
        hooks = getattr(module, attribute, None) or {}
        for hook in hooks.values():
            kind = type(hook).__name__
            if kind == "WeightNorm":
                raise ArgumentError(
                    f"{where} has weight_norm (torch.nn.utils.weight_norm): its weight is recomputed "
                    "from two parameters; call torch.nn.utils.remove_weight_norm on it first"
                )
            if kind == "SpectralNorm":
                raise ArgumentError(
                    f"{where} has spectral_norm (torch.nn.utils.spectral_norm): its weight is "
                    "rescaled on every call; call torch.nn.utils.remove_spectral_norm on it first"
                )
            raise ArgumentError(
                f"{where} has {what} ({getattr(hook, '__name__', kind)}): it may change what the "
                "module computes, which the network would not; remove it (handle.remove())"
            )
    if torch.nn.utils.parametrize.is_parametrized(module):
        names = ", ".join(module.parametrizations.keys())
        raise ArgumentError(
            f"{where} has parametrized tensors ({names}; torch.nn.utils.parametrize, "
            "parametrizations.weight_norm, spectral_norm, orthogonal, ...): they are recomputed on "
            "every call; call torch.nn.utils.parametrize.remove_parametrizations on them first"
        )


def _check_state(module):
    """Refuse what makes the module compute something other than its structure says, or what cannot be read."""
    torch = _torch()
    nn = torch.nn
    if isinstance(module, torch.jit.ScriptModule):
        raise ArgumentError(
            f"the model is a TorchScript module ({type(module).__name__}); pass the nn.Module it was scripted from"
        )
    globals_ = torch.nn.modules.module
    for attribute, what in (
        ("_global_forward_pre_hooks", "forward pre-hook"),
        ("_global_forward_hooks", "forward hook"),
        ("_global_backward_pre_hooks", "backward pre-hook"),
        ("_global_backward_hooks", "backward hook"),
    ):
        if getattr(globals_, attribute, None):
            raise ArgumentError(
                f"a global module {what} is registered (torch.nn.modules.module.register_module_"
                f"{what.replace(' ', '_').replace('-', '_')}): it may change what every module "
                "computes; remove it first"
            )
    for path, child in module.named_modules():
        where = f"module {path} ({type(child).__name__})" if path else f"the model ({type(child).__name__})"
        if isinstance(child, nn.modules.lazy.LazyModuleMixin) and child.has_uninitialized_params():
            raise ArgumentError(
                f"{where} is a lazy module whose parameters are not initialised yet; run the model "
                "once on an input (model(x)) so that their shapes are known"
            )
        _check_hooks(child, where)
    for name, parameter in module.named_parameters():
        if isinstance(parameter, nn.parameter.UninitializedParameter):
            raise ArgumentError(f"parameter {name} is uninitialised (a lazy module); run the model once on an input")
        if parameter.is_meta:
            raise ArgumentError(
                f"parameter {name} is on the meta device (no values); build the model on the CPU or "
                "load its weights (model.to_empty(device='cpu') then load_state_dict)"
            )
        if getattr(parameter, "_backward_hooks", None) or getattr(parameter, "_post_accumulate_grad_hooks", None):
            raise ArgumentError(
                f"parameter {name} has a gradient hook (register_hook): torch's gradients of it differ "
                "from the model's derivatives; remove it first"
            )
    for name, buffer in module.named_buffers():
        path, _, leaf = name.rpartition(".")
        owner = module.get_submodule(path)
        if not (isinstance(owner, nn.modules.batchnorm._BatchNorm) and leaf in _BN_BUFFERS):
            raise ArgumentError(
                f"buffer {name} of {type(owner).__name__} is not supported: only BatchNorm's running "
                "statistics are; a buffer may change what the model computes"
            )
        if buffer.is_meta:
            raise ArgumentError(f"buffer {name} is on the meta device (no values); load the model's state first")


def _model_dtype(module, ops):
    """The dtype of every floating tensor the operations use (float64 or float32); half precision is refused."""
    torch = _torch()
    found = {}
    for op in ops:
        for key, tensor in op.tensors.items():
            if tensor is not None:
                found.setdefault(tensor.dtype, f"the {key} of {op.where}")
    for kind, where in found.items():
        if kind in (torch.float16, torch.bfloat16):
            raise ArgumentError(
                f"{where} is {str(kind).replace('torch.', '')}: half-precision models round "
                "differently from any float32 or float64 network; convert the model first "
                "(model.double() or model.float())"
            )
        if kind not in (torch.float32, torch.float64):
            raise ArgumentError(
                f"{where} has dtype {str(kind).replace('torch.', '')}; the suite takes real float32 or float64 tensors"
            )
    if not found:
        raise ArgumentError(
            "the model has no parameters: every quantity of the suite is a derivative with respect "
            "to them; " + SUPPORTED
        )
    if len(found) > 1:
        listed = ", ".join(f"{str(k).replace('torch.', '')} ({where})" for k, where in found.items())
        raise ArgumentError(f"the model mixes dtypes: {listed}; convert it to one (model.double()) or pass dtype=")
    return np.dtype(str(next(iter(found))).replace("torch.", ""))


def _input_shape(ops, input_shape):
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ArgumentError(
                f"input_shape is {describe(input_shape)}, but it must be one sample's shape, a "
                "tuple of whole numbers >= 1 without the batch axis, e.g. input_shape=(3, 32, 32)"
            )
        return tuple(int(s) for s in shape)
    for op in ops:
        if op.kind == "linear":
            return (int(op.tensors["weight"].shape[1]),)
        if op.kind not in ("activation", "identity"):
            raise ArgumentError(
                f"the input shape cannot be read from the model: its first layer is {op.where}; pass "
                "input_shape=, one sample's shape without the batch axis (e.g. (3, 32, 32))"
            )
    raise ArgumentError("the input shape cannot be read from the model; pass input_shape=")


# ---- building the layers ----------------------------------------------------------------------------------------
class _Builder:
    """Turns operations into layer records, tracking one sample's shape; trainable tensors become parameter indices
    in ``module.parameters()`` order, frozen ones read-only constants."""

    def __init__(self, module, dtype):
        self.module, self.dtype = module, dtype
        self.trainable = [p for p in module.parameters() if p.requires_grad]
        self.index = {id(p): i for i, p in enumerate(self.trainable)}
        self.arrays = [None] * len(self.trainable)
        self.order = []  # trainable indices in the order the layers first use them

    def tensor(self, value):
        """What ``net.tensor`` gives for a field: the array behind an index, a constant as itself."""
        return self.arrays[value] if isinstance(value, int) else value

    def field(self, tensor):
        if tensor is None:
            return None
        array = tensor.detach().cpu().numpy().astype(self.dtype)  # a copy, in the network's dtype
        index = self.index.get(id(tensor)) if tensor.requires_grad else None
        if index is None:
            array.flags.writeable = False
            return array
        if index not in self.order:
            self.order.append(index)
            self.arrays[index] = array
        return index

    def build(self, ops, shape):
        layers = []
        for op in ops:
            try:
                new = getattr(self, "_" + op.kind)(op, shape)
                for layer in new:
                    shape = tuple(layer.output_shape(shape, self))
            except ShapeError as exc:
                raise ShapeError(f"{op.where} gets samples of shape {shape}: {exc}") from None
            layers += new
        if not layers:
            raise ArgumentError("the model computes the identity (no layers); " + SUPPORTED)
        if not self.trainable:
            raise ArgumentError(
                "the model has no trainable parameters (every one has requires_grad=False): every "
                "quantity of the suite is a derivative with respect to them; unfreeze some"
            )
        self._check_order()
        if all(isinstance(layer, (Dense, Activation)) for layer in layers):
            layers = _mlp_form(layers)
        return layers, self.arrays

    def _check_order(self):
        names = {id(p): name for name, p in self.module.named_parameters()}
        unused = [names[id(p)] for i, p in enumerate(self.trainable) if i not in self.order]
        if unused:
            raise ArgumentError(
                f"trainable parameter {unused[0]} is never used by the model's forward: the "
                "derivatives with respect to it are zero and the network would not count it; freeze "
                "it (requires_grad_(False)) or remove it"
            )
        if self.order != sorted(self.order):
            position = next(p for p, i in enumerate(self.order) if i != p)
            early, late = (names[id(self.trainable[i])] for i in (self.order[position], position))
            raise ArgumentError(
                f"the model's forward uses its parameters in another order than module.parameters() "
                f"lists them ({early} before {late}); the network's parameter vector follows "
                "module.parameters(), which must be the order of use: register the submodules in "
                "the order forward calls them"
            )

    def _linear(self, op, shape):
        return [Dense(self.field(op.tensors["weight"]), self.field(op.tensors["bias"]))]

    def _conv(self, op, shape):
        o = op.options
        weight = self.field(op.tensors["weight"])
        kernel = self.tensor(weight).shape[2:]
        padding, before = o["padding"], []
        if padding == "valid":
            padding = (0,) * o["dims"]
        elif padding == "same":  # torch pads d (k - 1) in all, the odd one on the right
            totals = [d * (k - 1) for d, k in zip(o["dilation"], kernel)]
            if all(t % 2 == 0 for t in totals):
                padding = tuple(t // 2 for t in totals)
            else:
                pairs = [(t // 2, t - t // 2) for t in reversed(totals)]
                before, padding = [Pad(tuple(p for pair in pairs for p in pair))], (0,) * o["dims"]
        elif isinstance(padding, str):
            raise ArgumentError(f"{op.where} has padding={padding!r}; use an int, a tuple, 'same' or 'valid'")
        return before + [
            Conv(
                weight,
                self.field(op.tensors["bias"]),
                o["dims"],
                tuple(o["stride"]),
                tuple(padding),
                tuple(o["dilation"]),
                int(o["groups"]),
                bool(o["transposed"]),
                tuple(o["output_padding"]),
            )
        ]

    def _pool(self, op, shape):
        o = op.options
        return [
            Pool(
                o["mode"],
                o["dims"],
                o["kernel"],
                o["stride"],
                o["padding"],
                o["dilation"],
                o["ceil_mode"],
                o.get("count_include_pad", True),
                o.get("divisor_override"),
            )
        ]

    def _adaptive_avg_pool(self, op, shape):
        return [AdaptiveAvgPool(op.options["dims"], op.options["output_size"])]

    def _batch_norm(self, op, shape):
        o, t = op.options, op.tensors
        if o["training"]:
            raise ArgumentError(
                f"{op.where} is in train mode: it normalises with each batch's statistics, which "
                "couples the samples; call model.eval() first (BatchNorm then uses its running "
                "statistics)"
            )
        if not o["track_running_stats"] or t["running_mean"] is None:
            raise ArgumentError(
                f"{op.where} has no running statistics (track_running_stats=False): it normalises "
                "with each batch's statistics in eval mode too; build it with track_running_stats=True"
            )
        expected = {1: (1, 2), 2: (3,), 3: (4,)}.get(o["dims"])
        if expected is not None and len(shape) not in expected:
            raise ShapeError(f"BatchNorm{o['dims']}d takes samples of {' or '.join(map(str, expected))} axes")
        return [
            Normalization(
                self.field(t["weight"]),
                self.field(t["bias"]),
                self.field(t["running_mean"]),
                self.field(t["running_var"]),
                o["eps"],
            )
        ]

    def _pad(self, op, shape):
        padding = op.options["padding"]
        if len(padding) % 2 or len(padding) // 2 > len(shape):
            raise ArgumentError(
                f"{op.where} pads {len(padding) / 2:g} axes of samples of shape {shape}: the batch "
                "axis cannot be padded, and pads come in pairs"
            )
        if any(p < 0 for p in padding):
            raise ArgumentError(f"{op.where} has negative padding {padding} (cropping), which is not supported")
        return [Pad(padding, op.options["value"])]

    def _activation(self, op, shape):
        definitions.check_options(op.options["name"], op.options["options"])
        return [Activation(op.options["name"], op.options["options"])]

    def _log_softmax(self, op, shape):
        dim, ndim = op.options["dim"], len(shape) + 1
        if dim is None:
            raise ArgumentError(
                f"{op.where} has dim=None (torch then picks the axis from the input's rank); pass dim=-1"
            )
        if op.options.get("dtype") is not None:
            raise ArgumentError(f"{op.where} casts to dtype {op.options['dtype']}, which is not supported")
        if dim % ndim != ndim - 1:
            raise ArgumentError(
                f"{op.where} is over axis {dim} of inputs (N, {', '.join(map(str, shape))}); only the "
                "last axis (dim=-1) is supported"
            )
        return [LogSoftmax()]

    def _flatten(self, op, shape):
        start_dim, end_dim, ndim = op.options["start_dim"], op.options["end_dim"], len(shape) + 1
        start, end = start_dim % ndim, end_dim % ndim
        if start == 0 and end > 0:
            raise ArgumentError(
                f"{op.where} flattens the batch axis (start_dim={start_dim}), which mixes the samples; use start_dim=1"
            )
        if start > end:
            raise ShapeError(f"start_dim {start_dim} comes after end_dim {end_dim}")
        if start == end:
            return []
        return [Flatten(start_dim - 1 if start_dim > 0 else start_dim, end_dim - 1 if end_dim > 0 else end_dim)]

    def _reshape(self, op, shape):
        target, size = op.options["shape"], math.prod(shape)
        if target and target[0] == "batch" and "batch" not in target[1:] and sum(s == -1 for s in target) <= 1:
            known = math.prod(s for s in target[1:] if s != -1)
            new = tuple(size // known if s == -1 else s for s in target[1:]) if known and size % known == 0 else None
        elif target and target[0] == -1 and all(isinstance(s, int) and s >= 1 for s in target[1:]):
            new = tuple(target[1:]) if math.prod(target[1:]) == size else None
        else:
            raise ArgumentError(
                f"{op.where} reshapes to {target}: the batch size must come from the input "
                "(x.view(x.size(0), -1)); a fixed batch size is not supported"
            )
        if new is not None and math.prod(new) == size:
            if new == shape:
                return []
            for start in range(len(shape)):
                for end in range(start + 1, len(shape)):
                    if (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]) == new:
                        return [Flatten(start, -1 if end == len(shape) - 1 else end)]
        raise ArgumentError(
            f"{op.where} reshapes samples of shape {shape} to {target[1:]}: only flattening "
            "consecutive axes of each sample is supported"
        )

    def _identity(self, op, shape):
        return []


def _mlp_form(layers):
    """A Dense with no activation after it gets ``identity``: a chain of Linear layers and activations is then the
    suite's plain MLP shape (Dense, activation, Dense, activation, ...)."""
    result = []
    for position, layer in enumerate(layers):
        result.append(layer)
        following = layers[position + 1] if position + 1 < len(layers) else None
        if isinstance(layer, Dense) and not isinstance(following, Activation):
            result.append(Activation("identity"))
    return result


def _check_same_function(module, net, shape, model_dtype):
    """Run the model and ``net.to_torch()`` on two random samples: a model read wrongly is refused, never kept."""
    torch = _torch()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, *shape), generator=generator, dtype=torch.float64)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            expected = module(x.to(dtype=getattr(torch, model_dtype.name), device=device))
    except Exception as exc:  # the model's own error on inputs of this shape
        raise ArgumentError(
            f"the model fails on inputs of shape (N, {', '.join(map(str, shape))}) "
            f"({type(exc).__name__}: {exc}); pass input_shape=, one sample's shape"
        ) from None
    if not isinstance(expected, torch.Tensor):
        raise ArgumentError(f"the model returns {type(expected).__name__}, not one tensor")
    with torch.no_grad():
        got = to_torch(net)(x.to(getattr(torch, net.dtype.name))).double()
    expected = expected.detach().cpu().double()
    if not bool(torch.isfinite(expected).all()):
        raise ArgumentError(
            "the model's outputs are not finite on random inputs (e.g. a max pooling window that lies "
            "entirely in the padding gives -inf); the suite takes models with finite outputs"
        )
    if tuple(expected.shape) != (2, *net.output_shape):
        raise ArgumentError(
            f"the model's outputs have shape {tuple(expected.shape[1:])} per sample, but the layers "
            f"read from it give {net.output_shape}; {SUPPORTED}"
        )
    scale = max(1.0, float(expected.abs().max()))
    tolerance = max(_AGREE[model_dtype.name], _AGREE[net.dtype.name])
    difference = float((got - expected).abs().max())
    if not difference <= tolerance * scale:
        raise ArgumentError(
            f"the network read from the model computes other outputs (largest difference "
            f"{difference:.3g} on random inputs): from_torch misread it; please report this model. "
            f"Layers read: {net.describe()}"
        )


# ---- to torch ---------------------------------------------------------------------------------------------------
def to_torch(net):
    """An ``nn.Sequential`` computing ``net``'s outputs, in its dtype, on the CPU: one module per layer, tied
    parameters as one shared ``nn.Parameter``, frozen constants as parameters with ``requires_grad=False``, so that
    ``from_torch(net.to_torch(), ...)`` gives the network back (up to ``identity`` layers outside a plain MLP)."""
    torch = _torch()
    dtype = getattr(torch, net.dtype.name)
    shared = {}

    def parameter(value):
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in shared:
                shared[value] = torch.nn.Parameter(torch.tensor(np.array(net.parameters[value]), dtype=dtype))
            return shared[value]
        return torch.nn.Parameter(torch.tensor(np.array(value), dtype=dtype), requires_grad=False)

    # identity activations are no module (from_torch gives a plain MLP its identity layers back)
    children = [
        _module_of(layer, shape, net, parameter, dtype)
        for layer, shape in zip(net.layers, net.shapes)
        if not (isinstance(layer, Activation) and layer.name == "identity")
    ]
    return torch.nn.Sequential(*children) if children else torch.nn.Sequential(torch.nn.Identity())


def _module_of(layer, shape, net, parameter, dtype):
    """The torch module of one layer record, getting samples of ``shape``."""
    torch = _torch()
    nn = torch.nn
    if isinstance(layer, Dense):
        n_out, n_in = net.tensor(layer.weight).shape
        module = nn.Linear(n_in, n_out, bias=layer.bias is not None, dtype=dtype)
        return _assign(module, weight=parameter(layer.weight), bias=parameter(layer.bias))
    if isinstance(layer, Conv):
        c_in, c_out = layer.channels(net)
        name = f"ConvTranspose{layer.dims}d" if layer.transposed else f"Conv{layer.dims}d"
        extra = {"output_padding": layer.output_padding} if layer.transposed else {}
        module = getattr(nn, name)(
            c_in,
            c_out,
            layer.kernel(net),
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            dtype=dtype,
            **extra,
        )
        return _assign(module, weight=parameter(layer.weight), bias=parameter(layer.bias))
    if isinstance(layer, Activation):
        return _activation_module(layer)
    if isinstance(layer, LogSoftmax):
        return nn.LogSoftmax(dim=-1)
    if isinstance(layer, Flatten):
        return nn.Flatten(
            layer.start + 1 if layer.start >= 0 else layer.start, layer.end + 1 if layer.end >= 0 else layer.end
        )
    if isinstance(layer, Pool):
        return _pool_module(layer)
    if isinstance(layer, AdaptiveAvgPool):
        return getattr(nn, f"AdaptiveAvgPool{layer.dims}d")(layer.output_size)
    if isinstance(layer, Normalization):
        return _batch_norm_module(layer, shape, net, parameter, dtype)
    if isinstance(layer, Pad):
        return getattr(nn, f"ConstantPad{min(len(layer.padding) // 2, 3)}d")(layer.padding, layer.value)
    raise ArgumentError(f"to_torch has no module for the layer {type(layer).__name__}")


def _assign(module, **tensors):
    for name, value in tensors.items():
        if value is not None:
            setattr(module, name, value)
    return module


def _activation_module(layer):
    nn = _torch().nn
    options = dict(layer.options)
    simple = {
        "identity": nn.Identity,
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "selu": nn.SELU,
        "silu": nn.SiLU,
        "logsigmoid": nn.LogSigmoid,
        "gelu": nn.GELU,
    }
    if layer.name in simple:
        return simple[layer.name]()
    if layer.name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if layer.name == "leaky_relu":
        return nn.LeakyReLU(options.get("slope", 0.01))
    if layer.name == "elu":
        return nn.ELU(options.get("alpha", 1.0))
    if layer.name == "softplus":  # the suite's threshold=None never switches to x: torch's threshold=inf
        threshold = options.get("threshold")
        return nn.Softplus(beta=options.get("beta", 1.0), threshold=math.inf if threshold is None else threshold)
    raise ArgumentError(f"to_torch has no module for the activation {layer.name!r}")


def _pool_module(layer):
    nn = _torch().nn
    if layer.mode == "max":
        return getattr(nn, f"MaxPool{layer.dims}d")(
            layer.kernel, layer.stride, layer.padding, layer.dilation or 1, ceil_mode=layer.ceil_mode
        )
    if layer.dilation and any(d != 1 for d in layer.dilation):
        raise ArgumentError("torch's average pooling has no dilation; this layer cannot become a torch module")
    extra = {} if layer.divisor_override is None else {"divisor_override": layer.divisor_override}
    if extra and layer.dims == 1:
        raise ArgumentError("torch's AvgPool1d has no divisor_override; this layer cannot become a torch module")
    return getattr(nn, f"AvgPool{layer.dims}d")(
        layer.kernel,
        layer.stride,
        layer.padding,
        ceil_mode=layer.ceil_mode,
        count_include_pad=layer.count_include_pad,
        **extra,
    )


def _batch_norm_module(layer, shape, net, parameter, dtype):
    torch = _torch()
    dims = {1: 1, 2: 1, 3: 2, 4: 3}.get(len(shape))
    if dims is None:
        raise ArgumentError(f"torch has no BatchNorm for samples of shape {shape}")
    channels = shape[0]
    affine = layer.weight is not None or layer.bias is not None
    module = getattr(torch.nn, f"BatchNorm{dims}d")(channels, eps=layer.eps, affine=affine, dtype=dtype).eval()
    with torch.no_grad():
        module.running_mean.copy_(torch.tensor(np.array(net.tensor(layer.mean)), dtype=dtype))
        module.running_var.copy_(torch.tensor(np.array(net.tensor(layer.var)), dtype=dtype))
    if affine:
        ones, zeros = np.ones(channels), np.zeros(channels)
        _assign(
            module,
            weight=parameter(layer.weight if layer.weight is not None else ones),
            bias=parameter(layer.bias if layer.bias is not None else zeros),
        )
    return module


def loss_module(net):
    """The torch loss module that ``from_torch`` reads as ``net.loss`` and ``net.reduction`` (``None`` without a
    loss); the suite's ``mse`` (0.5 ||y_hat - y||^2) has no torch module and is refused."""
    nn = _torch().nn
    if net.loss is None:
        return None
    for base, names in _LOSS_NAMES.items():
        if names.get(net.reduction) == net.loss:
            return getattr(nn, base)(reduction=net.reduction)
    raise ArgumentError(
        f"the suite's loss {net.loss!r} (reduction {net.reduction!r}) is no torch loss module; torch's "
        "MSELoss is mean_squared_error (mean) or squared_error (sum)"
    )
