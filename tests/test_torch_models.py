"""The network-level test cases of four curvature libraries, rebuilt in the suite's words (read from their sources:
curvlinops' ``test/cases.py`` and ``test/kfac_cases.py``, BackPACK's ``test/extensions/**/*_settings.py``,
laplace-torch's test fixtures, ASDL's ``test/conftest.py``; no code copied): a table of small records (model
builder, loss, one sample's input shape, N). Each is taken in by ``Network.from_torch`` and then computes what the
original module and loss compute (outputs, loss, gradient, Hessian by ``torch.func`` against ``net.to_torch()``
to 1e-12, outputs and loss against the numpy forward to 1e-10, the trainable count), or is refused with the reason its
record names.

Where a peer wraps a chain in a helper that only reshapes for its own loss conventions (curvlinops'
``WeightShareModel`` with MSE), the record holds the chain it computes. ``python -m tests.test_torch_models``
prints the census: taken in and refused, per library and per reason.
"""

import itertools
from collections import Counter, OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass

import pytest

from xval import Network
from xval.errors import ArgumentError

torch = pytest.importorskip("torch")
from tests.torch_equivalence import assert_same_model  # noqa: E402

nn = torch.nn
F = torch.nn.functional


@dataclass
class Case:
    id: str
    source: str
    build: object  # () -> nn.Module
    loss: object  # () -> loss module, or None
    shape: tuple  # one sample's input shape
    n: int = 3
    refused: str = None  # the words the refusal must hold; None: taken in


CASES = []


def case(source, id, build, loss, shape, n=3, refused=None):
    CASES.append(Case(f"{source}-{id}", source, build, loss, tuple(shape), n, refused))


def loss_of(kind, reduction="mean"):
    cls = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}[kind]
    return lambda: cls(reduction=reduction)


def mlp(*widths, act=None, bias=True):
    """Linear layers of ``widths``, an ``act()`` after each but the last."""
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if act is not None and i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def frozen(module):
    return module.requires_grad_(False)


def flat_size(module, shape):
    with torch.no_grad():
        return module(torch.zeros(1, *shape)).numel()


def conv_head(shape, *body, outputs=5):
    """BackPACK's convolution cases: ``body``, ReLU, Flatten, then a frozen Linear to ``outputs`` classes."""
    size = flat_size(nn.Sequential(*body), shape)
    return nn.Sequential(*body[:1], nn.ReLU(), *body[1:], nn.Flatten(), frozen(nn.Linear(size, outputs)))


# ---- modules of the peers' forms --------------------------------------------------------------------------------
class DictInput(nn.Module):
    """A model called with a mapping {"x": tensor} (curvlinops, laplace)."""

    def __init__(self, outputs, act=nn.ReLU):
        super().__init__()
        self.net = mlp(10, 5, outputs, act=act)

    def forward(self, data):
        return self.net(data["x"])


class MaybeDict(nn.Module):
    """laplace's custom model: a mapping or a tensor; torch.fx traces the tensor path."""

    def __init__(self):
        super().__init__()
        self.net = mlp(5, 100, 2, act=nn.ReLU)

    def forward(self, data):
        x = data["x"] if isinstance(data, MutableMapping) else data
        return self.net(x)


class ClassesFirst(nn.Module):
    """curvlinops' weight-sharing model for cross-entropy: (N, T, C) outputs moved to (N, C, T)."""

    def __init__(self):
        super().__init__()
        self.net = mlp(10, 5, 3, act=nn.ReLU)

    def forward(self, x):
        return self.net(x).movedim(-1, 1)


class Averaged(nn.Module):
    """A chain, then the mean over the positions (curvlinops' 'reduce' setting, laplace's reduction model)."""

    def __init__(self, net, axes):
        super().__init__()
        self.net, self.axes = net, axes

    def forward(self, x):
        return self.net(x).mean(dim=self.axes)


class ChannelsLast(nn.Module):
    """curvlinops' convolution 'expand' setting: (N, C, H, W) outputs permuted to (N, H, W, C)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 4, padding=2)

    def forward(self, x):
        return self.conv(x).permute(0, 2, 3, 1)


def parameters_function():
    """curvlinops' callable case: a function of a parameter dict, not a module."""
    weights = {"W": torch.randn(3, 10), "b": torch.randn(3)}
    return lambda x: F.linear(x, weights["W"], weights["b"])


class Residual(nn.Module):
    """BackPACK's branching cases (Parallel(Identity, ...)): the input added to a branch's output."""

    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, x):
        return x + self.branch(x)


class Sliced(nn.Module):
    """BackPACK's Slicing module: an index into the tensor."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[self.index]


class Recurrent(nn.Module):
    """BackPACK's RNN cases: a recurrent layer, its output sequence, flattened."""

    def __init__(self, kind, size, hidden):
        super().__init__()
        self.rnn = kind(size, hidden, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0].flatten(1)


class ShapeDependent(nn.Module):
    """laplace's reward model: a forward that branches on the input's rank."""

    def __init__(self):
        super().__init__()
        self.net = mlp(3, 100, 1, act=nn.ReLU)

    def forward(self, x):
        if len(x.shape) == 3:
            return self.net(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], 2)
        return self.net(x)


class OutOfOrder(nn.Module):
    """laplace's feature-extractor CNN: the head registered between the two convolution blocks it follows."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 6, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Linear(16 * 2 * 2, 30), nn.ReLU(), nn.Linear(30, 10))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x):
        x = self.conv2(self.conv1(x))
        return self.fc(x.view(x.size()[0], -1))


class WithTargets(nn.Module):
    """ASDL's NetworkA: forward(inputs, targets=None, flip=False) returns the logits when called with inputs alone."""

    def __init__(self, net):
        super().__init__()
        self.model = net

    def forward(self, inputs, targets=None, flip=False):
        logits = self.model(inputs)
        if targets is not None:
            loss = F.cross_entropy(logits, targets)
            return (loss, logits) if flip else (logits, loss)
        return logits


@dataclass
class Output:
    loss: object
    logits: object


class DataclassOutput(nn.Module):
    """ASDL's NetworkB: returns a dataclass holding the logits (Hugging Face style)."""

    def __init__(self):
        super().__init__()
        self.model = mlp(4, 8, 8, 3, act=nn.ReLU)

    def forward(self, inputs):
        return Output(loss=None, logits=self.model(inputs))


def eval_mode(module):
    """BackPACK's eval-mode initialisation: random running statistics, then eval."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.running_mean.uniform_(-1, 1)
            child.running_var.uniform_(0.5, 2)
            child.weight.data.uniform_(0.5, 1.5)
            child.bias.data.uniform_(-0.5, 0.5)
    return module.eval()


# ---- curvlinops -------------------------------------------------------------------------------------------------
for kind, reduction in [("ce", "mean"), ("ce", "sum")]:
    case(
        "curvlinops",
        f"mlp-relu-{kind}-{reduction}",
        lambda: mlp(10, 5, 3, act=nn.ReLU),
        loss_of(kind, reduction),
        (10,),
    )
for outputs, reduction in [(1, "mean"), (2, "mean"), (2, "sum")]:
    case(
        "curvlinops",
        f"mlp-relu-bce-{outputs}-{reduction}",
        lambda o=outputs: mlp(10, 5, o, act=nn.ReLU),
        loss_of("bce", reduction),
        (10,),
    )
for reduction in ("mean", "sum"):
    case(
        "curvlinops",
        f"mlp-relu-mse-{reduction}",
        lambda: mlp(8, 5, 3, act=nn.ReLU),
        loss_of("mse", reduction),
        (8,),
        n=2,
    )
for kind, outputs in [("ce", 3), ("bce", 1), ("mse", 2)]:
    case(
        "curvlinops",
        f"dict-input-{kind}",
        lambda o=outputs: DictInput(o),
        loss_of(kind),
        (10,),
        refused="operator.getitem",
    )
for reduction in ("mean", "sum"):
    case(
        "curvlinops",
        f"sequence-ce-classes-first-{reduction}",
        ClassesFirst,
        loss_of("ce", reduction),
        (5, 10),
        refused="Tensor.movedim",
    )
    case(
        "curvlinops",
        f"sequence-bce-{reduction}",
        lambda: mlp(10, 5, 2, act=nn.ReLU),
        loss_of("bce", reduction),
        (5, 10),
    )
    case(
        "curvlinops",
        f"sequence-mse-{reduction}",
        lambda: mlp(8, 5, 3, act=nn.ReLU),
        loss_of("mse", reduction),
        (5, 8),
        n=2,
    )
case(
    "curvlinops",
    "function-of-parameters",
    parameters_function,
    loss_of("mse"),
    (10,),
    refused="from_torch takes a torch.nn.Module",
)
case(
    "curvlinops",
    "cnn-maxpool-ce",
    lambda: nn.Sequential(
        nn.Conv2d(1, 3, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 4, 10),
    ),
    loss_of("ce"),
    (1, 20, 20),
    n=5,
)
case(
    "curvlinops",
    "dropout-train",
    lambda: nn.Sequential(nn.Linear(10, 5), nn.Dropout(), nn.ReLU(), nn.Linear(5, 2)),
    loss_of("ce"),
    (10,),
    refused="train mode",
)
case(
    "curvlinops",
    "batchnorm-train",
    lambda: nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)),
    loss_of("ce"),
    (10,),
    refused="train mode",
)
case("curvlinops", "mlp-drop-last", lambda: mlp(10, 5, 2, act=nn.ReLU), loss_of("ce"), (10,))
# kfac_cases.py
for reduction in ("mean", "sum"):
    case("curvlinops", f"deep-linear-scalar-mse-{reduction}", lambda: mlp(6, 3, 1), loss_of("mse", reduction), (6,))
    case("curvlinops", f"deep-linear-mse-{reduction}", lambda: mlp(5, 4, 3), loss_of("mse", reduction), (5,))
    case(
        "curvlinops",
        f"deep-linear-dict-input-{reduction}",
        lambda: DictInput(3, act=nn.Identity),
        loss_of("mse", reduction),
        (10,),
        refused="operator.getitem",
    )
    case(
        "curvlinops",
        f"weight-sharing-expand-{reduction}",
        lambda: mlp(5, 4, 3),
        loss_of("mse", reduction),
        (4, 8, 5),
        n=2,
    )
    case(
        "curvlinops",
        f"weight-sharing-reduce-{reduction}",
        lambda: Averaged(mlp(5, 4, 3), (1, 2)),
        loss_of("mse", reduction),
        (4, 8, 5),
        refused="Tensor.mean",
    )
    case(
        "curvlinops",
        f"conv-expand-{reduction}",
        ChannelsLast,
        loss_of("mse", reduction),
        (3, 8, 8),
        refused="Tensor.permute",
    )
    case(
        "curvlinops",
        f"conv-reduce-{reduction}",
        lambda: nn.Sequential(nn.Conv2d(3, 2, 4, padding=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(start_dim=1)),
        loss_of("mse", reduction),
        (3, 8, 8),
        n=2,
    )
    case(
        "curvlinops", f"one-datum-deep-linear-ce-{reduction}", lambda: mlp(5, 4, 3), loss_of("ce", reduction), (5,), n=1
    )
    case(
        "curvlinops",
        f"one-datum-deep-linear-bce-{reduction}",
        lambda: mlp(4, 3, 2),
        loss_of("bce", reduction),
        (4,),
        n=1,
    )
    case(
        "curvlinops",
        f"single-linear-scalar-mse-{reduction}",
        lambda: nn.Linear(6, 1),
        loss_of("mse", reduction),
        (6,),
        n=5,
    )
    case("curvlinops", f"single-linear-mse-{reduction}", lambda: nn.Linear(5, 3), loss_of("mse", reduction), (5,), n=7)
    case(
        "curvlinops",
        f"single-linear-weight-sharing-expand-{reduction}",
        lambda: nn.Linear(5, 3),
        loss_of("mse", reduction),
        (4, 8, 5),
        n=2,
    )
    case(
        "curvlinops",
        f"single-linear-weight-sharing-reduce-{reduction}",
        lambda: Averaged(nn.Linear(5, 3), (1, 2)),
        loss_of("mse", reduction),
        (4, 8, 5),
        refused="Tensor.mean",
    )

# ---- BackPACK -----------------------------------------------------------------------------------------------------
case("backpack", "example-linear-ce", lambda: nn.Sequential(nn.Linear(10, 5)), loss_of("ce"), (10,))
case("backpack", "deep-linear-ce", lambda: mlp(10, 7, 5), loss_of("ce"), (10,))
case("backpack", "mlp-relu-ce-sum", lambda: mlp(10, 7, 5, act=nn.ReLU), loss_of("ce", "sum"), (10,))
case("backpack", "mlp-sigmoid-mse", lambda: mlp(10, 7, 5, act=nn.Sigmoid), loss_of("mse"), (10,))
for act, bias in itertools.product(
    [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.LogSigmoid, nn.ELU, nn.SELU], [True, False]
):
    case(
        "backpack",
        f"cnn-{act.__name__}-bias-{bias}",
        lambda a=act, b=bias: nn.Sequential(nn.Conv2d(3, 2, 2, bias=b), a(), nn.Flatten(), frozen(nn.Linear(72, 5))),
        loss_of("ce"),
        (3, 7, 7),
    )
POOL_SHAPES = {1: (3, 7), 2: (3, 7, 7), 3: (3, 7, 7, 7)}
for dims, kind, options in itertools.product([1, 2, 3], ["Max", "Avg"], range(3)):
    shape = (3, 11, 11) if (dims, options) == (2, 0) else POOL_SHAPES[dims]
    arguments = {
        ("Max", 0): (2, 1),
        ("Max", 1): (2, 1, 0, 2),
        ("Max", 2): (2, 1, 0, 2, False, True),
        ("Avg", 0): (2, 1),
        ("Avg", 1): (2, 1, 0, True),
        ("Avg", 2): (2, 1, 0, False),
    }[kind, options]
    case(
        "backpack",
        f"cnn-{kind.lower()}pool{dims}d-{options}",
        lambda d=dims, k=kind, a=arguments, s=shape: conv_head(
            s, getattr(nn, f"Conv{d}d")(3, 2, 2), getattr(nn, f"{k}Pool{d}d")(*a)
        ),
        loss_of("ce", "sum"),
        shape,
    )
CONVOLUTIONS = [  # (dims, transposed, sample shape, positional arguments)
    (1, False, (3, 7), (3, 2, 2)),
    (1, False, (2, 7), (2, 3, 2, 2, 0, 2)),
    (1, False, (3, 7), (3, 2, 2, 2, 1)),
    (1, False, (3, 8), (3, 6, 2, 4, 2, 3)),
    (1, False, (3, 7), (3, 2, 2, 4, 2, 1, 1, False)),
    (2, False, (3, 7, 7), (3, 2, 2)),
    (2, False, (2, 7, 7), (2, 3, 2, 2, 0, 2)),
    (2, False, (3, 7, 7), (3, 2, 2, 2, 1)),
    (2, False, (3, 8, 8), (3, 6, 2, 4, 2, 3)),
    (2, False, (3, 7, 7), (3, 2, 2, 4, 2, 1, 1, False)),
    (3, False, (3, 2, 7, 7), (3, 2, 2)),
    (3, False, (2, 3, 7, 7), (2, 3, 2, 2, 0, 2)),
    (3, False, (3, 2, 7, 7), (3, 2, 2, 3, 2)),
    (3, False, (3, 4, 8, 8), (3, 6, 2, 4, 2, 3)),
    (3, False, (3, 2, 7, 7), (3, 2, 2, 4, 2, 1, 1, False)),
    (1, True, (3, 7), (3, 2, 2)),
    (1, True, (2, 7), (2, 3, 2, 2, 0, 0, 1, True, 2)),
    (1, True, (3, 7), (3, 2, 2, 2, 1)),
    (1, True, (3, 8), (3, 6, 2, 4, 2, 0, 1, True, 3)),
    (1, True, (3, 7), (3, 2, 2, 4, 2, 0, 1, False)),
    (2, True, (3, 7, 7), (3, 2, 2)),
    (2, True, (2, 9, 9), (2, 4, 2, 1, 0, 0, 1, True, 2)),
    (2, True, (3, 7, 7), (3, 2, 2, 2, 1)),
    (2, True, (3, 7, 7), (3, 2, 2, 4, 2, 0, 1, False)),
    (3, True, (3, 2, 7, 7), (3, 2, 2)),
    (3, True, (2, 3, 5, 5), (2, 3, 2, 2, 2, 0, 1, True, 2)),
    (3, True, (3, 2, 7, 7), (3, 2, 2, 4, 2, 0, 1, False)),
    # grouped
    (1, False, (6, 7), (6, 4, 2, 1, 0, 1, 2)),
    (2, False, (6, 7, 5), (6, 3, 2, 1, 0, 1, 3)),
    (3, False, (4, 7, 5, 6), (4, 2, 2, 1, 0, 2, 2)),
    (1, True, (6, 8), (6, 3, 2, 4, 2, 0, 3, True, 3)),
    (2, True, (4, 9, 9), (4, 2, 2, 1, 0, 0, 2, True, 2)),
    (3, True, (4, 3, 5, 5), (4, 2, (2, 2, 1), 2, 2, 0, 2, True, 2)),
]
for number, (dims, transposed, shape, arguments) in enumerate(CONVOLUTIONS):
    name = f"ConvTranspose{dims}d" if transposed else f"Conv{dims}d"
    case(
        "backpack",
        f"cnn-{name.lower()}-{number}",
        lambda n=name, s=shape, a=arguments: conv_head(s, getattr(nn, n)(*a)),
        loss_of("ce", "sum"),
        shape,
    )
for extra, act, kind, reduction in [
    ((4,), None, "mse", "mean"),
    ((4, 2), nn.Sigmoid, "mse", "mean"),
    ((4, 2, 3), None, "mse", "sum"),
    ((4,), None, "ce", "mean"),
    ((4, 2), nn.Sigmoid, "ce", "mean"),
    ((4, 2, 3), nn.ReLU, "ce", "sum"),
]:
    case(
        "backpack",
        f"linear-positions-{len(extra)}-{kind}-flatten",
        lambda a=act: nn.Sequential(*mlp(5, 3, 2, act=a), nn.Flatten()),
        loss_of(kind, reduction),
        (*extra, 5),
    )
case(
    "backpack",
    "multi-d-cross-entropy",
    lambda: mlp(5, 3, 2, act=nn.ReLU),
    loss_of("ce", "sum"),
    (4, 2, 3, 5),
    refused="the suite's class losses take outputs",
)
case(
    "backpack",
    "pad-zero",
    lambda: nn.Sequential(
        nn.Conv2d(3, 2, 2),
        nn.ConstantPad2d((1, 1, 0, 2), 0.0),
        nn.Conv2d(2, 2, 3, stride=2),
        nn.Flatten(),
        nn.Linear(8, 2),
    ),
    loss_of("mse"),
    (3, 4, 4),
    n=5,
)
case(
    "backpack",
    "pad-channels-value",
    lambda: nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1),
        nn.ReLU(),
        nn.ConstantPad3d((1, 1, 2, 0, 1, 2), 1.0),
        nn.Conv2d(5, 2, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 3),
    ),
    loss_of("ce"),
    (3, 4, 4),
    n=5,
)
case(
    "backpack",
    "slicing-flatten",
    lambda: nn.Sequential(
        nn.Conv2d(3, 2, 2, padding=1),
        Sliced((slice(None), 0, slice(None, None, 2), slice(0, 2))),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6, 4),
    ),
    loss_of("ce"),
    (3, 4, 5),
    refused="operator.getitem",
)
case(
    "backpack",
    "slicing-twice",
    lambda: nn.Sequential(
        nn.Conv2d(3, 2, 2, padding=1),
        Sliced((slice(None), slice(None), 2)),
        nn.ReLU(),
        Sliced((slice(None), 1)),
        nn.Linear(6, 4),
    ),
    loss_of("mse"),
    (3, 4, 5),
    refused="operator.getitem",
)
case("backpack", "bce-soft-labels", lambda: mlp(6, 4, 1, act=nn.ReLU), loss_of("bce"), (6,))
case("backpack", "bce-sum", lambda: mlp(6, 4, 1, act=nn.ReLU), loss_of("bce", "sum"), (6,))
# local settings of the GGN-diagonal, Hessian-diagonal and KFAC extensions
for kind, hidden in [(nn.RNN, 3), (nn.LSTM, 4)]:
    case(
        "backpack",
        f"{kind.__name__.lower()}-flatten",
        lambda k=kind, h=hidden: Recurrent(k, 6, h),
        loss_of("mse"),
        (5, 6),
        refused=kind.__name__,
    )
case("backpack", "rnn-linear-classes-first", lambda: Recurrent(nn.RNN, 6, 3), loss_of("ce"), (5, 6), refused="RNN")
for dims, shape in [(1, (2, 9)), (2, (2, 6, 8)), (3, (2, 9, 5, 4))]:
    case(
        "backpack",
        f"linear-adaptive-avgpool{dims}d",
        lambda d=dims, s=shape: nn.Sequential(
            nn.Linear(s[-1], s[-1]),
            getattr(nn, f"AdaptiveAvgPool{d}d")({1: (3,), 2: (3, 4), 3: (3, 5, 2)}[d]),
            nn.Flatten(),
        ),
        loss_of("mse"),
        shape,
        n=2,
    )
    case(
        "backpack",
        f"cnn-adaptive-avgpool{dims}d",
        lambda d=dims: conv_head(
            POOL_SHAPES[d] if d != 2 else (3, 11, 11),
            getattr(nn, f"Conv{d}d")(3, 2, 2),
            getattr(nn, f"AdaptiveAvgPool{d}d")(2),
        ),
        loss_of("ce", "sum"),
        POOL_SHAPES[dims] if dims != 2 else (3, 11, 11),
    )
for dims, shape in [(1, (3, 4)), (2, (2, 4, 3)), (3, (3, 4, 1, 2))]:
    case(
        "backpack",
        f"batchnorm{dims}d-flatten",
        lambda d=dims, s=shape: eval_mode(nn.Sequential(getattr(nn, f"BatchNorm{d}d")(s[0]), nn.Flatten())),
        loss_of("mse"),
        shape,
    )
    case(
        "backpack",
        f"batchnorm{dims}d-multi-d-cross-entropy",
        lambda d=dims, s=shape: eval_mode(nn.Sequential(getattr(nn, f"BatchNorm{d}d")(s[0]))),
        loss_of("ce"),
        shape,
        refused="the suite's class losses take outputs",
    )
case(
    "backpack",
    "batchnorm3d-linear-chain",
    lambda: eval_mode(
        nn.Sequential(nn.BatchNorm3d(3), nn.Linear(2, 3), nn.BatchNorm3d(3), nn.ReLU(), nn.BatchNorm3d(3), nn.Flatten())
    ),
    loss_of("mse"),
    (3, 4, 1, 2),
)
case(
    "backpack",
    "batchnorm3d-linear-multi-d-cross-entropy",
    lambda: eval_mode(
        nn.Sequential(nn.BatchNorm3d(3), nn.Linear(2, 3), nn.BatchNorm3d(3), nn.ReLU(), nn.BatchNorm3d(3))
    ),
    loss_of("ce"),
    (3, 4, 1, 2),
    refused="the suite's class losses take outputs",
)
for number, (vocabulary, shape) in enumerate([(5, ()), (3, (2, 2))]):
    case(
        "backpack",
        f"embedding-{number}",
        lambda v=vocabulary: nn.Sequential(nn.Embedding(v, 3), nn.Flatten()),
        loss_of("ce"),
        shape or (1,),
        refused="Embedding",
    )
case(
    "backpack",
    "branching-linear",
    lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(), Residual(nn.Linear(5, 5)), nn.Sigmoid(), nn.Linear(5, 4)),
    loss_of("ce"),
    (10,),
    refused="operator.add",
)
case(
    "backpack",
    "branching-convolution",
    lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 3, 3, padding=1))),
        nn.MaxPool2d(3, stride=2),
        nn.Flatten(),
        nn.Linear(12, 5),
    ),
    loss_of("ce"),
    (2, 6, 6),
    refused="operator.add",
)
case(
    "backpack",
    "nested-branching-convolution",
    lambda: nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1),
        nn.ReLU(),
        Residual(
            nn.Sequential(
                nn.Conv2d(2, 4, 3, padding=1),
                nn.Sigmoid(),
                nn.Conv2d(4, 2, 3, padding=1),
                Residual(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))),
            )
        ),
        nn.MaxPool2d(3, stride=2),
        nn.Flatten(),
        nn.Linear(8, 5),
    ),
    loss_of("ce"),
    (3, 6, 6),
    refused="operator.add",
)
case(
    "backpack",
    "resnet-block",
    lambda: eval_mode(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
    ),
    loss_of("mse"),
    (3, 5, 5),
    refused="operator.add",
)
case("backpack", "one-datum-mlp-relu-mse", lambda: mlp(7, 3, 1, act=nn.ReLU), loss_of("mse"), (7,), n=1)
case("backpack", "one-datum-mlp-sigmoid-ce", lambda: mlp(5, 4, 3, act=nn.Sigmoid), loss_of("ce"), (5,), n=1)
case("backpack", "one-datum-bce-soft", lambda: mlp(6, 4, 1, act=nn.ReLU), loss_of("bce"), (6,), n=1)
case("backpack", "one-datum-bce-sum", lambda: mlp(6, 4, 1, act=nn.ReLU), loss_of("bce", "sum"), (6,), n=1)
for dims, shape, c_mid, kernel in [(1, (2, 4), 4, 4), (2, (2, 3, 3), 4, 3), (3, (2, 3, 3, 3), 3, 3)]:
    conv = getattr(nn, f"Conv{dims}d")
    case(
        "backpack",
        f"one-datum-conv{dims}d-single-output",
        lambda c=conv, m=c_mid, k=kernel: nn.Sequential(c(2, m, k), nn.ReLU(), c(m, 1, 1), nn.Flatten()),
        loss_of("mse"),
        shape,
        n=1,
    )
for dims, shape, (c_mid, kernel, padding) in [
    (1, (2, 9), (4, 3, 5)),
    (2, (2, 4, 4), (3, 2, 2)),
    (3, (2, 6, 6, 6), (4, 2, 3)),
]:
    transposed = getattr(nn, f"ConvTranspose{dims}d")
    case(
        "backpack",
        f"one-datum-convtranspose{dims}d-single-output",
        lambda t=transposed, c=c_mid, k=kernel, p=padding: nn.Sequential(
            t(2, c, k, padding=p), nn.Sigmoid(), t(c, 1, 1), nn.Flatten()
        ),
        loss_of("mse"),
        shape,
        n=1,
    )
case(
    "backpack",
    "one-datum-branching-scaled",
    lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(), Residual(nn.Linear(5, 5)), nn.Sigmoid(), nn.Linear(5, 4)),
    loss_of("ce"),
    (10,),
    n=1,
    refused="operator.add",
)
# first-order settings not among the second-order ones
for extra, reduction in [((4,), "mean"), ((4, 2), "mean"), ((4, 2, 3), "sum")]:
    case(
        "backpack",
        f"linear-positions-{len(extra)}-mse",
        lambda e=extra: mlp(5, 3, 2, act=nn.Sigmoid if len(e) == 2 else None),
        loss_of("mse", reduction),
        (*extra, 5),
    )
for c_in, shape, size in [
    (3, (3, 7), 16),
    (2, (2, 7, 7), 128),
    (3, (3, 7, 7), 128),
    (2, (2, 2, 7, 7), 384),
    (3, (3, 2, 7, 7), 384),
]:
    transposed = getattr(nn, f"ConvTranspose{len(shape) - 1}d")
    case(
        "backpack",
        f"convtranspose{len(shape) - 1}d-{c_in}-relu-linear",
        lambda t=transposed, c=c_in, s=size: nn.Sequential(t(c, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(s, 5)),
        loss_of("ce", "sum"),
        shape,
    )

# ---- laplace-torch ------------------------------------------------------------------------------------------------
case("laplace", "deep-linear-ce-sum", lambda: mlp(3, 20, 2), loss_of("ce", "sum"), (3,), n=10)
case("laplace", "deep-linear-mse-sum", lambda: mlp(3, 20, 2), loss_of("mse", "sum"), (3,), n=10)
case("laplace", "deep-linear-scalar-mse-sum", lambda: mlp(3, 20, 1), loss_of("mse", "sum"), (3,), n=10)
case(
    "laplace",
    "linear-no-bias-mse-sum",
    lambda: nn.Sequential(nn.Linear(3, 1, bias=False)),
    loss_of("mse", "sum"),
    (3,),
    n=10,
)
case(
    "laplace",
    "no-output-bias-ce-sum",
    lambda: nn.Sequential(nn.Linear(3, 20), nn.Linear(20, 2, bias=False)),
    loss_of("ce", "sum"),
    (3,),
    n=10,
)
case("laplace", "mlp-tanh-ce-sum", lambda: mlp(3, 20, 2, act=nn.Tanh), loss_of("ce", "sum"), (3,), n=10)
case("laplace", "mlp-tanh-mse-sum", lambda: mlp(3, 20, 2, act=nn.Tanh), loss_of("mse", "sum"), (3,), n=10)
case(
    "laplace",
    "conv-flatten-tanh-ce-sum",
    lambda: nn.Sequential(
        nn.Conv2d(3, 4, 2, 2), nn.Flatten(), nn.Tanh(), nn.Linear(16, 20), nn.Tanh(), nn.Linear(20, 2)
    ),
    loss_of("ce", "sum"),
    (3, 5, 5),
    n=10,
)
case(
    "laplace",
    "named-layers-mse-sum",
    lambda: nn.Sequential(OrderedDict(fc1=nn.Linear(3, 20), clf=nn.Linear(20, 2))),
    loss_of("mse", "sum"),
    (3,),
    n=3,
)
case("laplace", "mapping-or-tensor-ce-sum", MaybeDict, loss_of("ce", "sum"), (5,), n=4)
case(
    "laplace",
    "mean-over-positions",
    lambda: Averaged(nn.Sequential(nn.Linear(3, 20), nn.ReLU()), 1),
    loss_of("ce", "sum"),
    (4, 3),
    refused="Tensor.mean",
)
case(
    "laplace",
    "shape-dependent-forward",
    ShapeDependent,
    loss_of("mse", "sum"),
    (3,),
    refused="tracing ShapeDependent.forward with torch.fx failed",
)
case(
    "laplace",
    "cnn-registered-out-of-order",
    OutOfOrder,
    loss_of("ce", "sum"),
    (3, 8, 8),
    refused="another order than module.parameters()",
)

# ---- ASDL ---------------------------------------------------------------------------------------------------------
for kind in ("ce", "mse"):
    case("asdl", f"mlp-{kind}", lambda: WithTargets(mlp(4, 8, 8, 3, act=nn.ReLU)), loss_of(kind), (4,), n=4)
    case(
        "asdl",
        f"cnn-{kind}",
        lambda: WithTargets(
            nn.Sequential(
                nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Conv2d(4, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)
            )
        ),
        loss_of(kind),
        (3, 4, 4),
        n=4,
    )
case(
    "asdl",
    "dataclass-output",
    DataclassOutput,
    loss_of("ce"),
    (4,),
    refused="operation tests.test_torch_models.Output is not supported",
)


def build(record):
    torch.manual_seed(0)
    module = record.build()
    return module.double() if isinstance(module, nn.Module) else module


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("record", CASES, ids=[record.id for record in CASES])
def test_peer_case(record):
    module = build(record)
    loss = record.loss() if record.loss else None
    if record.refused:
        with pytest.raises(ArgumentError, match=None) as caught:
            Network.from_torch(module, loss, input_shape=record.shape)
        assert record.refused in str(caught.value), str(caught.value)
        return
    net = Network.from_torch(module, loss, input_shape=record.shape)
    assert_same_model(module, loss, net, n=record.n)


def test_the_census_spans_the_peers_kinds_losses_and_reductions():
    """The sample is representative: every supported layer kind, each torch loss with both reductions, and refusals,
    from every library."""
    taken = [record for record in CASES if not record.refused]
    text = " ".join(repr(build(record)) + repr(record.loss and record.loss()) for record in taken)
    for word in [
        "Linear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "MaxPool1d",
        "MaxPool3d",
        "AvgPool2d",
        "AdaptiveAvgPool3d",
        "BatchNorm1d",
        "BatchNorm3d",
        "ConstantPad3d",
        "Flatten",
        "LeakyReLU",
        "ELU",
        "SELU",
        "LogSigmoid",
        "Sigmoid",
        "Tanh",
    ]:
        assert word in text, word
    losses = Counter((type(record.loss()).__name__, record.loss().reduction) for record in taken)
    for name in ("MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss"):
        assert losses[name, "mean"] and losses[name, "sum"], name
    assert (
        {record.source for record in taken}
        == {record.source for record in CASES if record.refused}
        == {"curvlinops", "backpack", "laplace", "asdl"}
    )
    assert len(CASES) >= 40


def census():
    """``{source: Counter(outcome)}``: "taken in" or the refusal's reason."""
    table = {}
    for record in CASES:
        table.setdefault(record.source, Counter())[record.refused and f"refused: {record.refused}" or "taken in"] += 1
    return table


if __name__ == "__main__":
    for source, outcomes in census().items():
        print(f"{source}: {sum(outcomes.values())} cases")
        for outcome, number in outcomes.most_common():
            print(f"  {number:4d}  {outcome}")
