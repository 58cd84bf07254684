"""``Network.from_torch`` / ``net.to_torch()``: the torch losses and their reductions, the layer kinds, the input
shape, dtypes and the round trip. Each accepted model is compared with the ORIGINAL module and loss (outputs, loss,
gradient and Hessian by ``torch.func``, to 1e-12) and with a numpy forward of the network's layers
(``tests/torch_equivalence.py``); the plain MLPs also with ``manual``, never through ``torch_ref``."""

import os
import subprocess
import sys

import numpy as np
import pytest

import manual
from xval import Network
from xval.errors import ArgumentError, UnknownNameError
from xval.layers import Activation, Conv, Dense, Flatten, LogSoftmax, Pad

torch = pytest.importorskip("torch")
from tests.torch_equivalence import assert_same_model, derivatives, numpy_forward, numpy_objective  # noqa: E402

from xval import torch_io  # noqa: E402

nn = torch.nn
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seeded(build, seed=0):
    torch.manual_seed(seed)
    return build().double()


def mlp():
    return seeded(lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3)))


# ---- losses -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "loss, name, reduction",
    [
        (nn.MSELoss(), "mean_squared_error", "mean"),
        (nn.MSELoss(reduction="sum"), "squared_error", "sum"),
        (nn.BCEWithLogitsLoss(), "mean_bce_with_logits", "mean"),
        (nn.BCEWithLogitsLoss(reduction="sum"), "bce_with_logits", "sum"),
        (nn.CrossEntropyLoss(), "cross_entropy", "mean"),
        (nn.CrossEntropyLoss(reduction="sum"), "cross_entropy", "sum"),
    ],
    ids=lambda value: value if isinstance(value, str) else f"{type(value).__name__}-{value.reduction}",
)
def test_torch_losses_are_the_suites_losses_exactly(loss, name, reduction):
    net = Network.from_torch(mlp(), loss)
    assert (net.loss, net.reduction) == (name, reduction)
    assert_same_model(mlp(), loss, net, n=5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_nll_after_log_softmax(reduction):
    def build():
        return seeded(lambda: nn.Sequential(nn.Linear(3, 5), nn.ELU(0.5), nn.Linear(5, 4), nn.LogSoftmax(dim=1)))

    net = Network.from_torch(build(), nn.NLLLoss(reduction=reduction))
    assert (net.loss, net.reduction) == ("nll", reduction) and isinstance(net.layers[-1], LogSoftmax)
    assert_same_model(build(), nn.NLLLoss(reduction=reduction), net, n=4)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_takes_probability_rows_as_torch_does(reduction):
    net = Network.from_torch(mlp(), nn.CrossEntropyLoss(reduction=reduction))
    X = np.random.default_rng(0).standard_normal((6, 4))
    rows = np.random.default_rng(1).dirichlet(np.ones(3), size=6)
    with torch.no_grad():
        expected = float(nn.CrossEntropyLoss(reduction=reduction)(mlp()(torch.as_tensor(X)), torch.as_tensor(rows)))
    assert abs(numpy_objective(net, X, rows) - expected) <= 1e-12 * abs(expected)


def test_mse_over_extra_output_axes_divides_by_every_entry():
    # torch's mean runs over N * T * K entries: the suite's per-sample mean over K' = T * K, then over N.
    def build():
        return seeded(lambda: nn.Sequential(nn.Linear(5, 4), nn.SiLU(), nn.Linear(4, 2)))

    net = Network.from_torch(build(), nn.MSELoss(), input_shape=(3, 5))
    assert net.output_shape == (3, 2) and net.loss == "mean_squared_error"
    assert_same_model(build(), nn.MSELoss(), net, n=4)


def test_the_suites_loss_names_keep_their_meaning():
    net = Network.from_torch(mlp(), "mse")
    assert (net.loss, net.reduction) == ("mse", "mean") and net.is_mlp
    X, Y = np.random.default_rng(2).standard_normal((7, 4)), np.random.default_rng(3).standard_normal((7, 3))
    # torch's MSELoss (mean over N * n_L entries) is 2 / n_L times the suite's mse (0.5 ||.||^2 averaged over N)
    _, _, _, torch_hessian = derivatives(mlp(), nn.MSELoss(), torch.as_tensor(X), torch.as_tensor(Y))
    ours = manual.hessian(net, X, Y) * 2 / 3
    assert np.linalg.norm(ours - torch_hessian) <= 1e-12 * np.linalg.norm(torch_hessian)


def test_cross_entropy_by_name_is_manuals_on_one_hot_rows():
    net = Network.from_torch(mlp(), "cross_entropy")
    X, classes = np.random.default_rng(2).standard_normal((9, 4)), np.random.default_rng(3).integers(0, 3, size=9)
    _, _, _, torch_hessian = derivatives(mlp(), nn.CrossEntropyLoss(), torch.as_tensor(X), torch.as_tensor(classes))
    ours = manual.hessian(net, X, np.eye(3)[classes])
    assert np.linalg.norm(ours - torch_hessian) <= 1e-12 * np.linalg.norm(torch_hessian)


def test_no_loss():
    net = Network.from_torch(mlp(), None)
    assert net.loss is None
    assert_same_model(mlp(), None, net)


@pytest.mark.parametrize(
    "loss, message",
    [
        (nn.MSELoss(reduction="none"), r"reduction='none'\) is not supported"),
        (nn.CrossEntropyLoss(weight=torch.ones(3, dtype=torch.float64)), r"CrossEntropyLoss with weight="),
        (nn.CrossEntropyLoss(label_smoothing=0.1), r"label_smoothing= is not supported"),
        (nn.CrossEntropyLoss(ignore_index=0), r"ignore_index= is not supported.*ignoring class 0"),
        (nn.BCEWithLogitsLoss(pos_weight=torch.ones(3)), r"pos_weight= is not supported"),
        (nn.BCEWithLogitsLoss(weight=torch.ones(3)), r"BCEWithLogitsLoss with weight="),
        (nn.NLLLoss(weight=torch.ones(3)), r"NLLLoss with weight="),
        (nn.L1Loss(), r"loss L1Loss is not supported; from_torch takes nn.MSELoss"),
        (nn.HuberLoss(), r"loss HuberLoss is not supported"),
        (nn.BCELoss(), r"loss BCELoss is not supported"),
        (torch.nn.functional.mse_loss, r"pass a torch loss module"),
        (nn.NLLLoss(), r"NLLLoss takes log-probabilities, but the model does not end in nn.LogSoftmax"),
    ],
    ids=[
        "none",
        "ce-weight",
        "smoothing",
        "ignore-index",
        "pos-weight",
        "bce-weight",
        "nll-weight",
        "l1",
        "huber",
        "bce",
        "function",
        "nll-without-log-softmax",
    ],
)
def test_losses_the_suite_does_not_compute_are_refused_by_name(loss, message):
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(mlp(), loss)


def test_a_loss_subclass_with_its_own_forward_is_refused():
    class Scaled(nn.MSELoss):
        def forward(self, input, target):
            return 2 * super().forward(input, target)

    with pytest.raises(ArgumentError, match="Scaled, a subclass of MSELoss with its own forward, is not supported"):
        Network.from_torch(mlp(), Scaled())


def test_a_loss_with_a_hook_is_refused():
    loss = nn.MSELoss()
    loss.register_forward_hook(lambda module, args, output: 3 * output)
    with pytest.raises(ArgumentError, match=r"the loss \(MSELoss\) has a forward hook"):
        Network.from_torch(mlp(), loss)


def test_unknown_loss_names_are_refused():
    with pytest.raises(UnknownNameError, match="unknown loss 'msee'"):
        Network.from_torch(mlp(), "msee")


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), nn.NLLLoss(), "cross_entropy"], ids=["ce", "nll", "name"])
def test_class_losses_on_outputs_with_extra_axes_are_refused(loss):
    module = nn.Sequential(nn.Conv1d(2, 3, 2), nn.LogSoftmax(dim=-1))
    with pytest.raises(
        ArgumentError,
        match=r"on outputs of shape \(N, 3, 4\) is not supported: the suite's class "
        r"losses take outputs \(N, C\)",
    ):
        Network.from_torch(module, loss, input_shape=(2, 5))


# ---- layer kinds --------------------------------------------------------------------------------------------------
LAYERS = {
    "conv1d-stride-dilation-groups": (
        lambda: nn.Sequential(
            nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), nn.Tanh(), nn.Flatten(), nn.Linear(30, 2)
        ),
        (4, 11),
    ),
    "conv2d-same-even-kernel": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 3, (2, 3), padding="same"), nn.GELU(), nn.Flatten(), nn.Linear(3 * 4 * 5, 2)
        ),
        (2, 4, 5),
    ),
    "conv2d-valid-no-bias": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 3, 3, padding="valid", bias=False), nn.SELU(), nn.Flatten(), nn.Linear(3 * 2 * 3, 2)
        ),
        (2, 4, 5),
    ),
    "conv3d": (
        lambda: nn.Sequential(
            nn.Conv3d(1, 2, 2, stride=(1, 2, 1)), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * 2 * 2 * 3, 2)
        ),
        (1, 3, 4, 4),
    ),
    "conv-transpose1d": (
        lambda: nn.Sequential(
            nn.ConvTranspose1d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
            nn.Softplus(beta=2, threshold=5),
            nn.Flatten(),
            nn.Linear(4 * 8, 2),
        ),
        (2, 4),
    ),
    "conv-transpose2d-dilation": (
        lambda: nn.Sequential(
            nn.ConvTranspose2d(2, 3, 2, dilation=2, bias=False), nn.LogSigmoid(), nn.Flatten(), nn.Linear(3 * 5 * 6, 2)
        ),
        (2, 3, 4),
    ),
    "conv-transpose3d": (
        lambda: nn.Sequential(
            nn.ConvTranspose3d(1, 2, 2, stride=2), nn.Sigmoid(), nn.Flatten(), nn.Linear(2 * 4 * 4 * 2, 2)
        ),
        (1, 2, 2, 1),
    ),
    "max-pool-ceil-dilation": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2),
            nn.MaxPool2d(2, stride=2, padding=1, dilation=2, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(2 * 3 * 4, 2),
        ),
        (1, 6, 7),
    ),
    "avg-pool-no-pad-count": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 2, 2),
            nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
            nn.Flatten(),
            nn.Linear(2 * 4, 2),
        ),
        (2, 8),
    ),
    "avg-pool-divisor": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2), nn.AvgPool2d(2, divisor_override=3), nn.Flatten(), nn.Linear(2 * 2 * 2, 2)
        ),
        (1, 5, 5),
    ),
    "avg-pool-ceil": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2),
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(2 * 4 * 4, 2),
        ),
        (1, 7, 8),
    ),  # a window past the end
    "adaptive-avg-pool": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2), nn.AdaptiveAvgPool2d((3, None)), nn.Flatten(), nn.Linear(2 * 3 * 6, 2)
        ),
        (1, 6, 7),
    ),
    "batch-norm-eval": (
        lambda: nn.Sequential(nn.Conv2d(2, 3, 2), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)),
        (2, 4, 4),
    ),
    "batch-norm-no-affine": (
        lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.Tanh(), nn.Linear(4, 2)),
        (3,),
    ),
    "pad-constant": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2),
            nn.ConstantPad2d((1, 0, 2, 1), 0.5),
            nn.ZeroPad1d(1),
            nn.Flatten(),
            nn.Linear(2 * 6 * 7, 2),
        ),
        (1, 4, 5),
    ),
    "flatten-partial-gelu-tanh": (
        lambda: nn.Sequential(nn.Linear(4, 3), nn.GELU("tanh"), nn.Flatten(1, 2), nn.Linear(3, 2)),
        (2, 1, 4),
    ),
    "dropout-eval-identity": (
        lambda: nn.Sequential(
            nn.Linear(3, 4), nn.Dropout(0.5), nn.ReLU(inplace=True), nn.Identity(), nn.Dropout(0.0), nn.Linear(4, 2)
        ),
        (3,),
    ),
}


def layer_model(name):
    build, shape = LAYERS[name]
    torch.manual_seed(3)
    module = build().double()
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):  # non-trivial statistics
            child.running_mean.uniform_(-1, 1)
            child.running_var.uniform_(0.5, 2)
    return module.eval(), shape


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_kinds_compute_what_the_module_computes(name):
    module, shape = layer_model(name)
    loss = nn.MSELoss(reduction="sum")
    net = Network.from_torch(module, loss, input_shape=shape)
    assert_same_model(module, loss, net, n=3)


def test_same_padding_with_an_even_kernel_pads_the_extra_entry_on_the_right():
    module, shape = layer_model("conv2d-same-even-kernel")
    net = Network.from_torch(module, None, input_shape=shape)
    assert net.layers[0] == Pad((1, 1, 0, 1)) and isinstance(net.layers[1], Conv) and net.layers[1].padding == (0, 0)


def test_options_equal_to_the_suites_defaults_are_left_out():
    module = nn.Sequential(
        nn.Linear(2, 2),
        nn.LeakyReLU(),
        nn.Linear(2, 2),
        nn.ELU(alpha=0.5),
        nn.Linear(2, 2),
        nn.Softplus(),
        nn.Linear(2, 2),
        nn.Softplus(beta=1, threshold=float("inf")),
    ).double()
    net = Network.from_torch(module, None)
    activations = [layer for layer in net.layers if isinstance(layer, Activation)]
    assert activations == [
        Activation("leaky_relu"),
        Activation("elu", (("alpha", 0.5),)),
        Activation("softplus", (("threshold", 20.0),)),
        Activation("softplus"),
    ]


def test_a_chain_of_linear_layers_is_a_plain_mlp():
    net = Network.from_torch(mlp(), "mse")
    assert net.is_mlp and net.activations == ("tanh", "sigmoid", "identity") and net.sizes == [4, 6, 5, 3]
    two = Network.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).double(), "mse")
    assert two.activations == ("identity", "identity")


# ---- input shape -------------------------------------------------------------------------------------------------
def test_the_input_shape_comes_from_a_first_linear_layer():
    assert Network.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(7, 2)).double(), None).input_shape == (7,)


def test_a_linear_over_leading_positions_needs_the_input_shape():
    def build():
        return seeded(lambda: nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2), nn.Flatten()))

    net = Network.from_torch(build(), nn.CrossEntropyLoss(), input_shape=(2, 3, 4))
    assert net.output_shape == (12,) and not net.is_mlp
    assert_same_model(build(), nn.CrossEntropyLoss(), net, n=3)


@pytest.mark.parametrize(
    "module, message",
    [
        (
            nn.Sequential(nn.Conv2d(1, 2, 3)),
            r"cannot be read from the model: its first layer is module 0 \(Conv2d\); "
            r"pass input_shape=",
        ),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), r"its first layer is module 0 \(Flatten\)"),
    ],
)
def test_an_input_shape_that_the_model_does_not_tell_is_asked_for(module, message):
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(module.double(), None)


@pytest.mark.parametrize(
    "shape, error, message",
    [
        ((1, 4), "ShapeError", r"module 0 \(Conv2d\) gets samples of shape \(1, 4\)"),
        ((2, 5, 5), "ShapeError", r"Conv2d layer with 1 input channels gets samples of shape \(2, 5, 5\)"),
        ((0, 5), "ArgumentError", r"input_shape is \(0, 5\) \(tuple\), but it must be one sample's shape"),
        ("3", "ArgumentError", r"input_shape is '3'"),
    ],
)
def test_a_wrong_input_shape_is_refused(shape, error, message):
    with pytest.raises(Exception, match=message) as caught:
        Network.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3)).double(), None, input_shape=shape)
    assert type(caught.value).__name__ == error


# ---- dtypes ------------------------------------------------------------------------------------------------------
def test_float32_modules_stay_float32():
    net = Network.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), loss="mse")
    assert net.dtype == np.float32 and net.to_torch()[0].weight.dtype == torch.float32


def test_dtype_converts():
    module = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    net = Network.from_torch(module, nn.MSELoss(), dtype="float64")
    assert net.dtype == np.float64
    np.testing.assert_array_equal(net.parameters[0], module[0].weight.detach().double().numpy())


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
def test_half_precision_models_are_refused_with_the_fix(kind):
    module = nn.Sequential(nn.Linear(2, 3)).to(getattr(torch, kind))
    with pytest.raises(
        ArgumentError,
        match=rf"the weight of module 0 \(Linear\) is {kind}: half-precision models "
        r"round differently.*model.double\(\)",
    ):
        Network.from_torch(module, None)
    with pytest.raises(ArgumentError, match="half-precision"):
        Network.from_torch(module, None, dtype="float64")


def test_mixed_dtypes_are_refused():
    module = nn.Sequential(nn.Linear(2, 3).double(), nn.Linear(3, 1))
    with pytest.raises(ArgumentError, match="the model mixes dtypes: float64 .*, float32"):
        Network.from_torch(module, None)


# ---- to_torch and the round trip ---------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "softplus"])
def test_to_torch_computes_the_same_outputs_and_converts_back(activation):
    net = Network.random([3, 7, 7, 2], activations=activation, loss="mse", seed=3)
    module = net.to_torch()
    X = np.random.default_rng(4).standard_normal((5, 3))
    with torch.no_grad():
        outputs = module(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(outputs, manual.forward(net, X), rtol=1e-13, atol=1e-15)
    back = Network.from_torch(module, loss="mse")
    assert back.layers == net.layers and back.activations == net.activations and back.dtype == np.float64
    np.testing.assert_array_equal(back.to_vector(), net.to_vector())


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_from_torch_of_to_torch_gives_the_network_back(name):
    module, shape = layer_model(name)
    net = Network.from_torch(module, nn.MSELoss(reduction="sum"), input_shape=shape)
    back = Network.from_torch(net.to_torch(), torch_io.loss_module(net), input_shape=shape)
    assert _same_records(back, net)
    assert (back.loss, back.reduction, back.input_shape) == (net.loss, net.reduction, net.input_shape)
    np.testing.assert_array_equal(back.to_vector(), net.to_vector())


def _same_records(a, b):
    """Layer records equal field by field, arrays by value (dataclass equality compares arrays by identity)."""
    from dataclasses import fields

    for x, y in zip(a.layers, b.layers):
        assert type(x) is type(y)
        for f in fields(x):
            u, v = getattr(x, f.name), getattr(y, f.name)
            if isinstance(u, np.ndarray):
                np.testing.assert_array_equal(u, v)
            else:
                assert u == v, (f.name, u, v)
    return len(a.layers) == len(b.layers)


def test_to_torch_ties_tied_parameters_and_keeps_frozen_ones_frozen():
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    module = nn.Sequential(shared, nn.Tanh(), shared, nn.ReLU(), nn.Linear(3, 2)).double()
    module[4].bias.requires_grad_(False)
    net = Network.from_torch(module, nn.MSELoss())
    rebuilt = net.to_torch()
    assert rebuilt[0].weight is rebuilt[2].weight and rebuilt[0].bias is rebuilt[2].bias
    assert not rebuilt[4].bias.requires_grad and rebuilt[4].weight.requires_grad
    assert_same_model(module, nn.MSELoss(), net)
    back = Network.from_torch(rebuilt, nn.MSELoss())
    assert back.describe() == net.describe() and back.groups == net.groups
    np.testing.assert_array_equal(back.to_vector(), net.to_vector())
    np.testing.assert_array_equal(back.layers[4].bias, net.layers[4].bias)


def test_loss_module_gives_the_torch_loss_back():
    for loss in (
        nn.MSELoss(),
        nn.MSELoss(reduction="sum"),
        nn.BCEWithLogitsLoss(reduction="sum"),
        nn.CrossEntropyLoss(reduction="sum"),
    ):
        got = torch_io.loss_module(Network.from_torch(mlp(), loss))
        assert type(got) is type(loss) and got.reduction == loss.reduction
    with pytest.raises(ArgumentError, match="the suite's loss 'mse'.*is no torch loss module"):
        torch_io.loss_module(Network.from_torch(mlp(), "mse"))


def test_numpy_forward_of_a_conv_net_is_torchs():
    """The test's own numpy forward against torch directly, so that a shared misreading cannot hide."""
    module, shape = layer_model("conv1d-stride-dilation-groups")
    net = Network.from_torch(module, None, input_shape=shape)
    X = np.random.default_rng(0).standard_normal((2, *shape))
    with torch.no_grad():
        expected = module(torch.as_tensor(X)).numpy()
    assert np.abs(numpy_forward(net, X) - expected).max() <= 1e-12 * np.abs(expected).max()
    assert [type(layer) for layer in net.layers] == [Conv, Activation, Flatten, Dense]


def test_xval_imports_without_torch():
    blocker = (
        "import sys\nclass Block:\n def find_spec(self, name, path=None, target=None):\n"
        "  if name.split('.')[0] == 'torch': raise ImportError('blocked')\nsys.meta_path.insert(0, Block())\n"
        "import xval\nnet = xval.Network.random([2, 3, 1])\n"
        "try:\n net.to_torch()\nexcept xval.EngineUnavailableError as exc:\n print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: converting to or from torch needs torch")
    assert "pip install torch" in done.stdout
