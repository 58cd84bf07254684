"""The arbiter's layers (``xval.arbiter.passes``) against torch: each layer kind of ``xval.layers`` in a tiny model
built in torch, its records made here from the modules (weights copied), the arbiter's forward equal to the torch
module's to 1e-15 and its loss, gradient and Hessian equal to ``torch.func`` on float64 to 1e-12; every loss and
both reductions; tied parameters (one module used twice) and frozen ones (``requires_grad=False``: constants)."""

import numpy as np
import pytest

from xval import Network
from xval.layers import AdaptiveAvgPool, Activation, Conv, Dense, Flatten, LogSoftmax, Normalization, Pad, Pool

arbiter = pytest.importorskip("xval.arbiter")
torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch.func's

PLAIN = {
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU: "relu",
    nn.SELU: "selu",
    nn.SiLU: "silu",
    nn.LogSigmoid: "logsigmoid",
    nn.Identity: "identity",
}


def _axes(value, dims):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _dims(module):
    return int(type(module).__name__[-2])  # MaxPool2d -> 2


def _record(module, field):
    """The ``xval.layers`` record of one torch module (``field`` turns a tensor into a parameter index or constant)."""
    if isinstance(module, nn.Linear):
        return Dense(field(module.weight), field(module.bias))
    if isinstance(module, nn.modules.conv._ConvNd):
        transposed = module.transposed
        return Conv(
            field(module.weight),
            field(module.bias),
            len(module.kernel_size),
            tuple(module.stride),
            tuple(module.padding),
            tuple(module.dilation),
            module.groups,
            transposed,
            tuple(module.output_padding) if transposed else (),
        )
    if isinstance(module, nn.modules.pooling._MaxPoolNd):
        d = _dims(module)
        return Pool(
            "max",
            d,
            _axes(module.kernel_size, d),
            _axes(module.stride, d),
            _axes(module.padding, d),
            _axes(module.dilation, d),
            module.ceil_mode,
        )
    if isinstance(module, nn.modules.pooling._AvgPoolNd):
        d = _dims(module)
        return Pool(
            "avg",
            d,
            _axes(module.kernel_size, d),
            _axes(module.stride, d),
            _axes(module.padding, d),
            (),
            module.ceil_mode,
            module.count_include_pad,
            getattr(module, "divisor_override", None),
        )
    if isinstance(module, nn.modules.pooling._AdaptiveAvgPoolNd):
        return AdaptiveAvgPool(_dims(module), _axes(module.output_size, _dims(module)))
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return Normalization(
            field(module.weight),
            field(module.bias),
            module.running_mean.numpy().copy(),
            module.running_var.numpy().copy(),
            module.eps,
        )
    if isinstance(module, nn.modules.padding._ConstantPadNd):
        return Pad(tuple(module.padding), module.value)
    if isinstance(module, nn.Flatten):
        return Flatten(module.start_dim - 1, module.end_dim if module.end_dim < 0 else module.end_dim - 1)
    if isinstance(module, nn.LogSoftmax):
        return LogSoftmax()
    if isinstance(module, nn.LeakyReLU):
        return Activation("leaky_relu", (("slope", module.negative_slope),))
    if isinstance(module, nn.ELU):
        return Activation("elu", (("alpha", module.alpha),))
    if isinstance(module, nn.GELU):
        return Activation("gelu" if module.approximate == "none" else "gelu_tanh")
    if isinstance(module, nn.Softplus):
        return Activation("softplus", (("beta", float(module.beta)), ("threshold", float(module.threshold))))
    return Activation(PLAIN[type(module)])


def network_of(model, input_shape, loss, reduction):
    """The ``Network`` of an ``nn.Sequential``: trainable tensors in first-use order (one parameter however often a
    module is used), frozen ones as constants, ``None`` for an absent bias."""
    parameters, index = [], {}

    def field(tensor):
        if tensor is None:
            return None
        if not tensor.requires_grad:
            return tensor.detach().numpy().copy()
        if id(tensor) not in index:
            index[id(tensor)] = len(parameters)
            parameters.append(tensor.detach().numpy().copy())
        return index[id(tensor)]

    return Network.from_layers([_record(m, field) for m in model], parameters, input_shape, loss, reduction)


def torch_losses(name, f, y):
    """Per-sample losses of ``xval.definitions.LOSSES``, in torch."""
    f, y = f.reshape(len(f), -1), y.reshape(len(y), -1)
    bce = nn.functional.binary_cross_entropy_with_logits(f, y, reduction="none")
    return {
        "mse": lambda: 0.5 * ((f - y) ** 2).sum(1),
        "squared_error": lambda: ((f - y) ** 2).sum(1),
        "mean_squared_error": lambda: ((f - y) ** 2).mean(1),
        "cross_entropy": lambda: -(y * f.log_softmax(1)).sum(1),
        "nll": lambda: -(y * f).sum(1),
        "bce_with_logits": lambda: bce.sum(1),
        "mean_bce_with_logits": lambda: bce.mean(1),
    }[name]()


def torch_objective(model, net):
    """``E(theta, X, Y)`` of the model's trainable parameters as one flat vector in the contract's order."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for p in net.parameters]

    def objective(theta, X, Y):
        parts, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            parts[name] = theta[start : start + size].reshape(shape)
            start += size
        losses = torch_losses(net.loss, torch.func.functional_call(model, parts, (X,), strict=False), Y)
        return losses.mean() if net.reduction == "mean" else losses.sum()

    return objective


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _batchnorm(channels, affine=True):
    module = nn.BatchNorm2d(channels, affine=affine)
    with torch.no_grad():
        module.running_mean.normal_()
        module.running_var.uniform_(0.5, 2.0)
        if affine:
            module.weight.normal_()
            module.bias.normal_()
    return module


def _tied_and_frozen():
    shared, frozen = nn.Linear(3, 3), nn.Linear(3, 2)
    frozen.weight.requires_grad_(False)  # the bias stays trainable
    return nn.Sequential(shared, nn.Tanh(), shared, nn.GELU(), frozen)


# id: (model builder, input shape, loss, reduction, targets)
MODELS = {
    "dense-over-positions-no-bias-sum": (
        lambda: nn.Sequential(nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 2, bias=False), nn.Flatten()),
        (3, 4),
        "squared_error",
        "sum",
        "real",
    ),
    "conv1d-stride-padding-dilation-groups": (
        lambda: nn.Sequential(
            nn.Conv1d(4, 2, 3, stride=2, padding=1, dilation=2, groups=2), nn.ELU(0.7), nn.Flatten(), nn.Linear(6, 2)
        ),
        (4, 7),
        "mse",
        "mean",
        "real",
    ),
    "conv2d-maxpool-batchnorm-avgpool": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2),
            nn.MaxPool2d(2, stride=1, padding=1),
            _batchnorm(2),
            nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False, padding=1),
            nn.Flatten(),
            nn.Linear(18, 3),
        ),
        (1, 4, 4),
        "cross_entropy",
        "mean",
        "probabilities",
    ),
    "conv3d-adaptive-avgpool": (
        lambda: nn.Sequential(nn.Conv3d(1, 2, 2), nn.Sigmoid(), nn.AdaptiveAvgPool3d((1, 2, 1)), nn.Flatten()),
        (1, 3, 3, 3),
        "mean_squared_error",
        "mean",
        "real",
    ),
    "convtranspose1d-groups-output-padding": (
        lambda: nn.Sequential(
            nn.ConvTranspose1d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2), nn.Tanh(), nn.Flatten()
        ),
        (2, 3),
        "bce_with_logits",
        "sum",
        "unit",
    ),
    "convtranspose2d-dilation": (
        lambda: nn.Sequential(
            nn.ConvTranspose2d(1, 2, 2, stride=2, dilation=2, bias=False), nn.LeakyReLU(0.1), nn.Flatten()
        ),
        (1, 2, 2),
        "mean_bce_with_logits",
        "mean",
        "unit",
    ),
    "convtranspose3d": (
        lambda: nn.Sequential(nn.ConvTranspose3d(1, 1, 2), nn.Softplus(2.0, 1.5), nn.Flatten()),
        (1, 2, 1, 2),
        "mse",
        "sum",
        "real",
    ),
    "pad-maxpool-dilation-ceil-logsoftmax-nll": (
        lambda: nn.Sequential(
            nn.ConstantPad1d((1, -1), 0.5),
            nn.Conv1d(1, 2, 2),
            nn.MaxPool1d(2, stride=2, dilation=2, ceil_mode=True),
            nn.Flatten(),
            nn.LogSoftmax(-1),
        ),
        (1, 6),
        "nll",
        "sum",
        "probabilities",
    ),
    "avgpool-divisor-batchnorm-no-affine": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, (1, 2)),
            _batchnorm(2, affine=False),
            nn.AvgPool2d((1, 3), 1, (0, 1), divisor_override=2),
            nn.SELU(),
            nn.AdaptiveAvgPool2d((1, 2)),
            nn.Flatten(),
        ),
        (1, 1, 5),
        "mse",
        "mean",
        "real",
    ),
    "avgpool1d-padding-counted": (
        lambda: nn.Sequential(nn.Conv1d(1, 1, 2), nn.AvgPool1d(3, stride=2, padding=1), nn.Flatten()),
        (1, 6),
        "mse",
        "mean",
        "real",
    ),
    "tied-and-frozen": (_tied_and_frozen, (3,), "mse", "mean", "real"),
}


def _targets(kind, rng, shape):
    if kind == "probabilities":
        y = rng.random(shape)
        return y / y.reshape(len(y), -1).sum(1).reshape((len(y),) + (1,) * (len(shape) - 1))
    return rng.random(shape) if kind == "unit" else rng.standard_normal(shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_layers_against_torch(name):
    build, input_shape, loss, reduction, targets = MODELS[name]
    torch.manual_seed(sum(map(ord, name)))
    model = build().double().eval()
    net = network_of(model, input_shape, loss, reduction)
    assert net.n_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2,) + input_shape)
    Y = _targets(targets, rng, (2,) + net.output_shape)
    with torch.no_grad():
        outputs = model(torch.tensor(X)).numpy()
    assert relative(arbiter.forward(net, X), outputs) <= 1e-15
    objective = torch_objective(model, net)
    theta, Xt, Yt = torch.tensor(net.to_vector()), torch.tensor(X), torch.tensor(Y)
    assert relative(arbiter.loss(net, X, Y), objective(theta, Xt, Yt).item()) <= 1e-15
    assert relative(arbiter.gradient(net, X, Y), torch.func.grad(objective)(theta, Xt, Yt).numpy()) <= 1e-12
    assert relative(arbiter.hessian(net, X, Y), torch.func.hessian(objective)(theta, Xt, Yt).numpy()) <= 1e-12


def test_tied_parameters_sum_over_their_uses():
    """One Linear used twice: its gradient is the sum of both uses' (the same network with the two uses as separate
    parameters, at equal values, summed)."""
    torch.manual_seed(0)
    shared = nn.Linear(2, 2).double()
    tied = network_of(nn.Sequential(shared, nn.Tanh(), shared), (2,), "mse", "mean")
    separate = network_of(
        nn.Sequential(shared, nn.Tanh(), nn.Linear(2, 2).double().requires_grad_(True)), (2,), "mse", "mean"
    )
    separate = separate.from_vector(np.concatenate([tied.to_vector(), tied.to_vector()]))
    X, Y = np.array([[0.3, -0.8]]), np.array([[0.1, 0.2]])
    both = arbiter.gradient(separate, X, Y)
    np.testing.assert_allclose(
        arbiter.gradient(tied, X, Y), both[:6] + both[6:], rtol=0, atol=4e-16 * np.abs(both).max()
    )
    assert tied.n_params == 6
