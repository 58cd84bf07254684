"""Small networks of every layer kind, each written once as torch modules and a torch loss, for the reference engines'
tests: ``build`` turns an entry into the torch module itself (its weights drawn from a seed) and the ``xval.Network``
read off it by ``network_of`` (frozen tensors become constants, a module used twice is one tied parameter), so that a
test can check that ``torch_ref`` and ``jax_ref`` compute exactly what torch's own modules and losses compute.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pytest

from xval import Network
from xval.layers import (
    Activation,
    AdaptiveAvgPool,
    Conv,
    Dense,
    Flatten,
    LogSoftmax,
    Normalization,
    Pad,
    Pool,
    parameter_indices,
)

torch = pytest.importorskip("torch")
nn = torch.nn


def _tuple(value, dims):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _activation(module):
    """The ``Activation`` record of a torch activation module, or ``None``."""
    plain = {
        nn.Identity: "identity",
        nn.Sigmoid: "sigmoid",
        nn.Tanh: "tanh",
        nn.ReLU: "relu",
        nn.SELU: "selu",
        nn.SiLU: "silu",
        nn.LogSigmoid: "logsigmoid",
    }
    if type(module) in plain:
        return Activation(plain[type(module)])
    if isinstance(module, nn.LeakyReLU):
        return Activation("leaky_relu", (("slope", module.negative_slope),))
    if isinstance(module, nn.ELU):
        return Activation("elu", (("alpha", module.alpha),))
    if isinstance(module, nn.GELU):
        return Activation("gelu" if module.approximate == "none" else "gelu_tanh")
    if isinstance(module, nn.Softplus):
        return Activation("softplus", (("beta", float(module.beta)), ("threshold", float(module.threshold))))
    return None


def network_of(modules, input_shape, loss, reduction, dtype):
    """The ``Network`` computing ``nn.Sequential(*modules)``: trainable tensors in first-use order (a module used twice
    is one parameter), tensors with ``requires_grad=False`` as constants."""
    parameters, index = [], {}

    def tensor(value):
        if value is None:
            return None
        if not value.requires_grad:
            return value.detach().numpy().copy()
        if id(value) not in index:
            index[id(value)] = len(parameters)
            parameters.append(value.detach().numpy().copy())
        return index[id(value)]

    layers = []
    for module in modules:
        kind = type(module).__name__
        dims = int(kind[-2]) if kind.endswith("d") and kind[-2].isdigit() else 0  # Conv2d -> 2
        record = _activation(module)
        if record is not None:
            layers.append(record)
        elif isinstance(module, nn.Linear):
            layers.append(Dense(tensor(module.weight), tensor(module.bias)))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            layers.append(
                Conv(
                    tensor(module.weight),
                    tensor(module.bias),
                    dims,
                    module.stride,
                    module.padding,
                    module.dilation,
                    module.groups,
                )
            )
        elif isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            layers.append(
                Conv(
                    tensor(module.weight),
                    tensor(module.bias),
                    dims,
                    module.stride,
                    module.padding,
                    module.dilation,
                    module.groups,
                    True,
                    module.output_padding,
                )
            )
        elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            layers.append(
                Pool(
                    "max",
                    dims,
                    _tuple(module.kernel_size, dims),
                    _tuple(module.stride, dims),
                    _tuple(module.padding, dims),
                    _tuple(module.dilation, dims),
                    module.ceil_mode,
                )
            )
        elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            layers.append(
                Pool(
                    "avg",
                    dims,
                    _tuple(module.kernel_size, dims),
                    _tuple(module.stride, dims),
                    _tuple(module.padding, dims),
                    (),
                    module.ceil_mode,
                    module.count_include_pad,
                    getattr(module, "divisor_override", None),
                )
            )
        elif isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
            layers.append(AdaptiveAvgPool(dims, _tuple(module.output_size, dims)))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            layers.append(
                Normalization(
                    tensor(module.weight),
                    tensor(module.bias),
                    module.running_mean.numpy().copy(),
                    module.running_var.numpy().copy(),
                    module.eps,
                )
            )
        elif isinstance(module, (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ZeroPad2d)):
            layers.append(Pad(tuple(module.padding), float(module.value)))
        elif isinstance(module, nn.Flatten):
            end = module.end_dim if module.end_dim < 0 else module.end_dim - 1
            layers.append(Flatten(module.start_dim - 1, end))
        elif isinstance(module, nn.LogSoftmax):
            layers.append(LogSoftmax())
        else:
            raise TypeError(f"no layer record for {module}")
    return Network.from_layers(layers, parameters, input_shape, loss, reduction, dtype)


# suite loss -> (torch's loss module of a reduction, its factor: E = factor(N, reduction) * module(outputs, targets),
# the targets the module takes)
TORCH_LOSSES = {
    "mse": (lambda: nn.MSELoss(reduction="sum"), lambda n, reduction: 0.5 / n if reduction == "mean" else 0.5, "real"),
    "squared_error": (
        lambda: nn.MSELoss(reduction="sum"),
        lambda n, reduction: 1 / n if reduction == "mean" else 1,
        "real",
    ),
    "mean_squared_error": (
        lambda: nn.MSELoss(reduction="mean"),
        lambda n, reduction: 1 if reduction == "mean" else n,
        "real",
    ),
    "bce_with_logits": (
        lambda: nn.BCEWithLogitsLoss(reduction="sum"),
        lambda n, reduction: 1 / n if reduction == "mean" else 1,
        "probabilities",
    ),
    "mean_bce_with_logits": (
        lambda: nn.BCEWithLogitsLoss(reduction="mean"),
        lambda n, reduction: 1 if reduction == "mean" else n,
        "probabilities",
    ),
    "cross_entropy": (
        lambda: nn.CrossEntropyLoss(reduction="sum"),
        lambda n, reduction: 1 / n if reduction == "mean" else 1,
        "classes",
    ),
    "nll": (lambda: nn.NLLLoss(reduction="sum"), lambda n, reduction: 1 / n if reduction == "mean" else 1, "classes"),
}


def torch_objective(loss, reduction, outputs, targets):
    """``E`` of the suite's ``loss`` and ``reduction``, from torch's own loss module on ``outputs`` ``(N, ...)``."""
    module, factor, _ = TORCH_LOSSES[loss]
    return factor(outputs.shape[0], reduction) * module()(outputs, targets)


@dataclass(frozen=True)
class Entry:
    """One network: ``modules()`` builds its torch modules (seeded by the caller), ``input_shape`` per sample, the
    suite's ``loss`` (``None``: no loss) and ``reduction``, ``n`` samples. ``float32``: its derivatives are checked
    in float32 too (every forward pass is); tag ``loss``: it is there for its loss."""

    name: str
    modules: Callable
    input_shape: tuple
    loss: Optional[str] = "mse"
    reduction: str = "mean"
    n: int = 3
    float32: bool = False
    tags: tuple = field(default=())


def _mlp(*middle, inputs=3, outputs=2):
    return lambda: [nn.Linear(inputs, 4), *middle, nn.Linear(4, outputs)]


def _tied():
    shared = nn.Linear(3, 3)
    return [shared, nn.Tanh(), shared, nn.Sigmoid(), nn.Linear(3, 2)]


def _frozen():
    first = nn.Linear(3, 4)
    first.weight.requires_grad_(False)
    last = nn.Linear(4, 2)
    last.requires_grad_(False)
    return [first, nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), last]


def _batch_norm(module):
    with torch.no_grad():
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)
        if module.weight is not None:
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
    return module.eval()


NETWORKS = [
    # convolutions: stride, padding, dilation, groups; transposed with output padding
    Entry(
        "conv1d-stride2-pad1-dil2",
        lambda: [nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=2), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2)],
        (2, 9),
        float32=True,
    ),
    Entry(
        "conv2d-groups2-pad1-relu",
        lambda: [nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)],
        (4, 3, 3),
        "cross_entropy",
        "mean",
    ),
    Entry(
        "conv3d-nobias-sigmoid",
        lambda: [nn.Conv3d(1, 2, 2, bias=False), nn.Sigmoid(), nn.Flatten(), nn.Linear(16, 2)],
        (1, 3, 3, 3),
        "bce_with_logits",
        "sum",
    ),
    Entry(
        "convT1d-stride2-outpad1",
        lambda: [
            nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1, output_padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(24, 2),
        ],
        (2, 4),
        "mse",
        "sum",
    ),
    Entry(
        "convT2d-groups2-dil2-stride2",
        lambda: [
            nn.ConvTranspose2d(2, 4, 2, stride=2, padding=1, groups=2, dilation=2),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(100, 2),
        ],
        (2, 3, 3),
    ),
    Entry(
        "convT3d",
        lambda: [nn.ConvTranspose3d(1, 2, 2), nn.ELU(0.7), nn.Flatten(), nn.Linear(54, 2)],
        (1, 2, 2, 2),
        "mean_squared_error",
        "sum",
    ),
    # pools
    Entry(
        "maxpool2d-ceil-pad1",
        lambda: [
            nn.Conv2d(1, 2, 3, padding=1),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(32, 3),
        ],
        (1, 6, 6),
        "cross_entropy",
        "sum",
        float32=True,
    ),
    Entry(
        "maxpool1d-dil2",
        lambda: [nn.Conv1d(2, 2, 2), nn.MaxPool1d(2, stride=2, dilation=2), nn.Flatten(), nn.Linear(6, 2)],
        (2, 9),
    ),
    Entry("maxpool3d", lambda: [nn.Conv3d(1, 2, 1), nn.MaxPool3d(2), nn.Flatten(), nn.Linear(16, 2)], (1, 4, 4, 4)),
    Entry(
        "avgpool2d-ceil-exclude-pad",
        lambda: [
            nn.Conv2d(1, 2, 2),
            nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
            nn.Flatten(),
            nn.Linear(18, 2),
        ],
        (1, 6, 6),
    ),
    Entry(
        "avgpool2d-divisor3",
        lambda: [nn.Conv2d(1, 2, 2), nn.AvgPool2d(2, divisor_override=3), nn.Flatten(), nn.Linear(8, 2)],
        (1, 5, 5),
    ),
    Entry(
        "avgpool1d-ceil-include-pad",
        lambda: [nn.Conv1d(1, 2, 2), nn.AvgPool1d(3, 2, 1, ceil_mode=True), nn.Flatten(), nn.Linear(10, 2)],
        (1, 9),
    ),
    Entry(
        "avgpool3d-stride1-pad1",
        lambda: [nn.AvgPool3d(2, stride=1, padding=1, count_include_pad=False), nn.Flatten(), nn.Linear(64, 2)],
        (1, 3, 3, 3),
    ),
    Entry(
        "adaptive-avgpool1d",
        lambda: [nn.Conv1d(1, 2, 2), nn.AdaptiveAvgPool1d(3), nn.Flatten(), nn.Linear(6, 2)],
        (1, 8),
    ),
    Entry(
        "adaptive-avgpool2d-none",
        lambda: [nn.Conv2d(1, 2, 2), nn.AdaptiveAvgPool2d((3, None)), nn.Flatten(), nn.Linear(24, 2)],
        (1, 6, 5),
    ),
    Entry(
        "adaptive-avgpool3d", lambda: [nn.AdaptiveAvgPool3d((2, 1, 3)), nn.Flatten(), nn.Linear(12, 2)], (2, 3, 4, 5)
    ),
    # batch normalization (eval), padding, flattening
    Entry(
        "batchnorm2d-eval",
        lambda: [nn.Conv2d(1, 2, 2), _batch_norm(nn.BatchNorm2d(2)), nn.Tanh(), nn.Flatten(), nn.Linear(18, 2)],
        (1, 4, 4),
    ),
    Entry(
        "batchnorm1d-eval-no-affine",
        lambda: [nn.Linear(3, 4), _batch_norm(nn.BatchNorm1d(4, affine=False)), nn.Sigmoid(), nn.Linear(4, 2)],
        (3,),
    ),
    Entry(
        "zeropad2d-conv",
        lambda: [nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(1, 2, 2), nn.Tanh(), nn.Flatten(), nn.Linear(30, 2)],
        (1, 3, 3),
    ),
    Entry(
        "constpad1d-and-crop",
        lambda: [nn.ConstantPad1d((2, -1), 0.5), nn.Conv1d(1, 1, 2), nn.Flatten(), nn.Linear(5, 2)],
        (1, 5),
    ),
    Entry(
        "flatten-partial-dense-over-positions",
        lambda: [nn.Conv2d(1, 2, 2), nn.Flatten(2), nn.Linear(4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(6, 2)],
        (1, 3, 3),
    ),
    # dense layers: over leading positions (N, T, D), without bias, frozen, tied
    Entry(
        "dense-over-positions",
        lambda: [nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)],
        (3, 4),
        "mse",
        "sum",
        float32=True,
    ),
    Entry("dense-no-bias", lambda: [nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2)], (3,)),
    Entry("dense-frozen", _frozen, (3,)),
    Entry("dense-tied", _tied, (3,), float32=True),
    # activations with options
    Entry(
        "leaky_relu-elu-selu", _mlp(nn.LeakyReLU(0.2), nn.Linear(4, 4), nn.ELU(0.7), nn.Linear(4, 4), nn.SELU()), (3,)
    ),
    Entry(
        "gelu-gelu_tanh-silu",
        _mlp(nn.GELU(), nn.Linear(4, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 4), nn.SiLU()),
        (3,),
    ),
    Entry("logsigmoid-softplus-beta2-threshold1", _mlp(nn.LogSigmoid(), nn.Linear(4, 4), nn.Softplus(2.0, 1.0)), (3,)),
    # each loss with each reduction; LogSoftmax + NLLLoss
    *[
        Entry(f"mlp-{loss}-{reduction}", _mlp(nn.Tanh(), outputs=3), (3,), loss, reduction, n=4, tags=("loss",))
        for loss in (
            "mse",
            "squared_error",
            "mean_squared_error",
            "cross_entropy",
            "bce_with_logits",
            "mean_bce_with_logits",
        )
        for reduction in ("mean", "sum")
    ],
    *[
        Entry(
            f"logsoftmax-nll-{reduction}",
            _mlp(nn.Tanh(), nn.LogSoftmax(dim=-1), outputs=3),
            (3,),
            "nll",
            reduction,
            n=4,
            tags=("loss",),
        )
        for reduction in ("mean", "sum")
    ],
    # no loss: forward and output Jacobian only
    Entry("conv2d-no-loss", lambda: [nn.Conv2d(1, 2, 2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)], (1, 3, 3), None),
]


def kfac_defined(net, l):
    """Whether the contract defines KFAC for layer ``l``: a Dense layer with its own trainable weight and bias, used
    by no other layer, on ``(N, n_in)`` inputs."""
    dense = net.owner(l)
    position = next(i for i, layer in enumerate(net.layers) if layer is dense)
    users = [layer for layer in net.layers if set(parameter_indices(layer)) & set(net.groups[l])]
    return (
        isinstance(dense, Dense)
        and tuple(net.groups[l]) == (dense.weight, dense.bias)
        and users == [dense]
        and len(net.shapes[position]) == 1
    )


def build(entry, dtype, seed=0):
    """``(module, net, X, Y, torch targets)`` for ``entry`` in ``dtype``: the torch module (eval mode) and the Network
    read off it, a batch ``X``, the suite's targets ``Y`` (``None`` without a loss) and the targets torch's loss
    module takes (class indices for the class losses)."""
    torch.manual_seed(seed)
    modules = entry.modules()
    module = nn.Sequential(*modules).to(getattr(torch, dtype)).eval()
    net = network_of(list(module), entry.input_shape, entry.loss, entry.reduction, dtype)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((entry.n, *entry.input_shape)).astype(dtype)
    if entry.loss is None:
        return module, net, X, None, None
    shape = (entry.n, *net.output_shape)
    kind = TORCH_LOSSES[entry.loss][2]
    if kind == "classes":
        classes = rng.integers(0, net.output_shape[-1], size=entry.n)
        return module, net, X, np.eye(net.output_shape[-1], dtype=dtype)[classes], torch.as_tensor(classes)
    Y = (rng.uniform(0, 1, shape) if kind == "probabilities" else rng.standard_normal(shape)).astype(dtype)
    return module, net, X, Y, torch.as_tensor(Y)
