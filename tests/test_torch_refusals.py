"""``Network.from_torch`` takes a model only if it can compute exactly that model: what it used to misread (hooks,
subclasses with their own forward, tied weights, ``bias=False``, frozen parameters) is now either computed exactly
(the same outputs, loss, gradient and Hessian as the original module, and the same trainable parameter count) or
refused with an error naming it, where it is, and the fix; so are the inputs that gave raw exceptions (half
precision, the meta device, lazy modules) and every unsupported module, operation and mode."""

from collections import OrderedDict

import numpy as np
import pytest

from xval import Network
from xval.errors import ArgumentError
from xval.layers import Dense

torch = pytest.importorskip("torch")
from tests.torch_equivalence import assert_same_model  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def double(build, seed=0):
    torch.manual_seed(seed)
    return build().double()


def count(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---- computed exactly -----------------------------------------------------------------------------------------------
def test_the_same_linear_used_twice_is_one_parameter():
    def build():
        shared = nn.Linear(4, 4)
        return nn.Sequential(shared, nn.Tanh(), shared, nn.Sigmoid(), nn.Linear(4, 3))

    module = double(build)
    net = Network.from_torch(module, nn.MSELoss())
    assert net.n_params == count(module) == 35
    dense = [layer for layer in net.layers if isinstance(layer, Dense)]
    assert (dense[0].weight, dense[0].bias) == (dense[1].weight, dense[1].bias) == (0, 1) and net.n_layers == 2
    assert_same_model(module, nn.MSELoss(), net, n=4)


def test_one_weight_shared_by_two_linear_layers_is_one_parameter():
    def build():
        first, second = nn.Linear(4, 4), nn.Linear(4, 4)
        second.weight = first.weight
        return nn.Sequential(first, nn.ReLU(), second, nn.Tanh(), nn.Linear(4, 3))

    module = double(build)
    net = Network.from_torch(module, nn.CrossEntropyLoss(reduction="sum"))
    assert net.n_params == count(module) == 39
    dense = [layer for layer in net.layers if isinstance(layer, Dense)]
    assert dense[0].weight == dense[1].weight == 0 and dense[1].bias == 2
    assert_same_model(module, nn.CrossEntropyLoss(reduction="sum"), net, n=4)


def test_bias_false_has_no_bias_parameter():
    module = double(lambda: nn.Sequential(nn.Linear(4, 5, bias=False), nn.Tanh(), nn.Linear(5, 3, bias=False)))
    net = Network.from_torch(module, nn.MSELoss())
    assert net.n_params == count(module) == 35
    assert all(layer.bias is None for layer in net.layers if isinstance(layer, Dense))
    assert net.parameter_names() == [(0, "W", (5, 4)), (1, "W", (3, 5))]
    assert_same_model(module, nn.MSELoss(), net)


def test_frozen_parameters_are_constants():
    module = double(lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3)))
    module[0].requires_grad_(False)
    module[2].bias.requires_grad_(False)
    net = Network.from_torch(module, nn.MSELoss(reduction="sum"))
    assert net.n_params == count(module) == 25 + 18
    first = net.layers[0]
    assert isinstance(first.weight, np.ndarray) and not first.weight.flags.writeable
    np.testing.assert_array_equal(first.weight, module[0].weight.detach().numpy())
    assert net.groups == ((0,), (1, 2)) and net.layers[2].bias.shape == (5,)
    assert_same_model(module, nn.MSELoss(reduction="sum"), net)


def test_a_linear_subclass_whose_forward_is_a_chain_is_traced():
    class Linear(nn.Linear):
        def forward(self, x):
            return torch.tanh(F.linear(x, self.weight, self.bias))

    module = double(lambda: nn.Sequential(Linear(3, 4), Linear(4, 2)))
    net = Network.from_torch(module, nn.MSELoss())
    assert net.describe() == "Dense(3 -> 4), tanh, Dense(4 -> 2), tanh"
    assert_same_model(module, nn.MSELoss(), net)


def test_a_subclass_that_adds_no_method_is_its_base_class():
    class Plain(nn.Conv1d):
        def extra_repr(self):
            return "plain"

    module = double(lambda: nn.Sequential(Plain(2, 3, 2), nn.Flatten(), nn.Linear(9, 2)))
    net = Network.from_torch(module, nn.MSELoss(), input_shape=(2, 4))
    assert_same_model(module, nn.MSELoss(), net)


def test_a_sequential_subclass_with_its_own_forward_is_traced():
    class Squashed(nn.Sequential):
        def forward(self, x):
            for layer in self:
                x = layer(x)
            return torch.sigmoid(x)

    module = double(lambda: Squashed(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    net = Network.from_torch(module, nn.BCEWithLogitsLoss())
    assert net.describe() == "Dense(3 -> 4), relu, Dense(4 -> 2), sigmoid"
    assert_same_model(module, nn.BCEWithLogitsLoss(), net)


def test_a_wrapper_with_functional_operations_and_a_view_is_traced():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.head = nn.Sequential(OrderedDict(hidden=nn.Linear(2 * 2 * 2, 5), out=nn.Linear(5, 3)))

        def forward(self, x, flip=False):
            x = F.max_pool2d(F.relu(self.conv(x)), 2)
            x = x.view(x.size(0), -1)
            x = F.leaky_relu(self.head.hidden(x), negative_slope=0.1)
            return F.log_softmax(self.head.out(x), dim=1)

    module = double(Net)
    net = Network.from_torch(module, nn.NLLLoss(), input_shape=(1, 4, 4))
    assert net.describe() == (
        "Conv2d(1 -> 2, kernel (3, 3)), relu, MaxPool2d(kernel (2, 2)), Flatten, Dense(8 -> 5), "
        "leaky_relu(slope=0.1), Dense(5 -> 3), LogSoftmax"
    )
    assert_same_model(module, nn.NLLLoss(), net)


def test_dropout_in_eval_mode_and_with_p_zero_is_the_identity():
    module = double(
        lambda: nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Tanh(), nn.Dropout(0.0), nn.Linear(4, 2))
    ).eval()
    module[3].train()
    net = Network.from_torch(module, nn.MSELoss())
    assert net.describe() == "Dense(3 -> 4), tanh, Dense(4 -> 2), identity"
    assert_same_model(module, nn.MSELoss(), net)


def test_an_initialised_lazy_module_is_taken():
    module = nn.Sequential(nn.LazyLinear(3), nn.Tanh(), nn.Linear(3, 2)).double()
    module(torch.zeros(1, 4, dtype=torch.float64))
    net = Network.from_torch(module, nn.MSELoss())
    assert net.input_shape == (4,) and net.n_params == count(module)


# ---- refused by name --------------------------------------------------------------------------------------------
def with_hook(kind):
    module = double(lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    target = module[2]
    if kind == "forward":
        target.register_forward_hook(lambda m, args, output: 3 * output)
    elif kind == "pre":
        target.register_forward_pre_hook(lambda m, args: (2 * args[0],))
    elif kind == "backward":
        target.register_full_backward_hook(lambda m, grad_in, grad_out: None)
    elif kind == "backward-pre":
        target.register_full_backward_pre_hook(lambda m, grad_out: None)
    return module


@pytest.mark.parametrize(
    "kind, what",
    [
        ("forward", "a forward hook"),
        ("pre", "a forward pre-hook"),
        ("backward", "a backward hook"),
        ("backward-pre", "a backward pre-hook"),
    ],
)
def test_hooks_are_refused(kind, what):
    with pytest.raises(
        ArgumentError,
        match=rf"module 2 \(Linear\) has {what} \(<lambda>\): it may change what the "
        r"module computes.*handle.remove\(\)",
    ):
        Network.from_torch(with_hook(kind), nn.MSELoss())


@pytest.mark.parametrize(
    "register, what",
    [
        (nn.modules.module.register_module_forward_hook, "forward hook"),
        (nn.modules.module.register_module_forward_pre_hook, "forward pre-hook"),
        (nn.modules.module.register_module_full_backward_hook, "backward hook"),
    ],
)
def test_global_hooks_are_refused(register, what):
    handle = register(lambda *args: None)
    try:
        with pytest.raises(ArgumentError, match=f"a global module {what} is registered"):
            Network.from_torch(nn.Sequential(nn.Linear(2, 1)).double(), None)
    finally:
        handle.remove()


def test_a_gradient_hook_on_a_parameter_is_refused():
    module = double(lambda: nn.Sequential(nn.Linear(3, 2)))
    module[0].weight.register_hook(lambda grad: 2 * grad)
    with pytest.raises(ArgumentError, match=r"parameter 0.weight has a gradient hook"):
        Network.from_torch(module, None)


def parametrized(kind):
    utils = torch.nn.utils
    linear = nn.Linear(3, 4)
    if kind == "weight_norm":
        utils.parametrizations.weight_norm(linear)
    elif kind == "spectral_norm":
        utils.parametrizations.spectral_norm(linear)
    elif kind == "old weight_norm":
        utils.weight_norm(linear)
    elif kind == "old spectral_norm":
        utils.spectral_norm(linear)
    else:

        class Symmetric(nn.Module):
            def forward(self, x):
                return x.triu() + x.triu(1).T

        linear = nn.Linear(4, 4)
        torch.nn.utils.parametrize.register_parametrization(linear, "weight", Symmetric())
    return nn.Sequential(nn.Tanh(), linear)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(
    "kind, message",
    [
        ("weight_norm", r"module 1 \(ParametrizedLinear\) has parametrized tensors \(weight; "),
        ("spectral_norm", r"has parametrized tensors \(weight;.*remove_parametrizations"),
        ("parametrize", r"has parametrized tensors"),
        ("old weight_norm", r"module 1 \(Linear\) has weight_norm \(torch.nn.utils.weight_norm\).*remove_weight_norm"),
        ("old spectral_norm", r"module 1 \(Linear\) has spectral_norm.*remove_spectral_norm"),
    ],
)
def test_parametrizations_are_refused(kind, message):
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(parametrized(kind), None, input_shape=(4,))


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: nn.Sequential(nn.LazyLinear(3)),
            r"module 0 \(LazyLinear\) is a lazy module whose parameters are not "
            r"initialised yet; run the model once",
        ),
        (lambda: nn.Sequential(nn.LazyConv2d(2, 3)), r"module 0 \(LazyConv2d\) is a lazy module"),
        (lambda: nn.Sequential(nn.Linear(2, 3, device="meta")), r"parameter 0.weight is on the meta device"),
    ],
)
def test_lazy_and_meta_parameters_are_refused(build, message):
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(build(), None, input_shape=(2, 5, 5))


def test_buffers_other_than_batch_norm_statistics_are_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.register_buffer("scale", torch.ones(2))

        def forward(self, x):
            return self.linear(x)

    with pytest.raises(
        ArgumentError, match="buffer scale of Scaled is not supported: only BatchNorm's running statistics are"
    ):
        Network.from_torch(Scaled().double(), None)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)),
            r"module 1 \(BatchNorm1d\) is in train mode: "
            r"it normalises with each batch's statistics.*call model.eval\(\)",
        ),
        (
            lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval(),
            r"module 1 \(BatchNorm1d\) has no running statistics \(track_running_stats=False\)",
        ),
        (
            lambda: nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.2)),
            r"module 1 \(Dropout\) is a Dropout with p=0.2 in train mode: its output is random; call model.eval\(\)",
        ),
    ],
)
def test_layers_in_train_mode_are_refused(build, message):
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(build().double(), None)


def test_the_half_precision_of_issue_22_is_refused():
    with pytest.raises(ArgumentError, match="is bfloat16: half-precision models round differently"):
        Network.from_torch(nn.Sequential(nn.Linear(3, 2)).bfloat16(), nn.MSELoss())


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.b(x + torch.tanh(self.a(x)))


class Concatenated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        return torch.cat([self.a(x), x], dim=1)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        return 3 * self.a(x)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else x


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x, y):
        return self.a(x)


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        return self.a(x), x


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.spare = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):
        return self.a(x)


class Reordered(nn.Module):
    def __init__(self):
        super().__init__()
        self.second, self.first = nn.Linear(3, 2), nn.Linear(3, 3)

    def forward(self, x):
        return self.second(self.first(x))


class FixedBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 2, 2)

    def forward(self, x):
        return self.a(x).view(4, -1)


class Unflattened(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x).view(x.size(0), 2, 2)


class TransposedWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(3, 2)

    def forward(self, x):
        return F.linear(torch.tanh(self.encode(x)), self.encode.weight.t())


REFUSED = {
    "lstm": (
        lambda: nn.Sequential(
            OrderedDict(
                features=nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.LSTM(3, 3)), head=nn.Linear(3, 2)
            )
        ),
        (3,),
        r"module features.3 \(LSTM\) is not supported; from_torch takes nn.Linear, nn.Conv1d/2d/3d",
    ),
    "softmax": (lambda: nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=-1)), (3,), r"module 1 \(Softmax\) is not"),
    "prelu": (lambda: nn.Sequential(nn.Linear(3, 3), nn.PReLU()), (3,), r"module 1 \(PReLU\) is not supported"),
    "layer-norm": (lambda: nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)), (3,), r"module 1 \(LayerNorm\)"),
    "relu6": (lambda: nn.Sequential(nn.Linear(3, 3), nn.ReLU6()), (3,), r"module 1 \(ReLU6\) is not supported"),
    "embedding": (lambda: nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2)), (4,), r"module 0 \(Embedding\)"),
    "reflect-padding": (
        lambda: nn.Sequential(nn.Conv1d(1, 1, 3, padding=1, padding_mode="reflect")),
        (1, 5),
        r"module 0 \(Conv1d\) has padding_mode='reflect'; only padding_mode='zeros'",
    ),
    "reflection-pad": (
        lambda: nn.Sequential(nn.ReflectionPad1d(1), nn.Conv1d(1, 1, 3)),
        (1, 5),
        r"module 0 \(ReflectionPad1d\) is not supported",
    ),
    "return-indices": (
        lambda: nn.Sequential(nn.Conv1d(1, 1, 2), nn.MaxPool1d(2, return_indices=True)),
        (1, 5),
        r"module 1 \(MaxPool1d\) returns indices",
    ),
    "log-softmax-channels": (
        lambda: nn.Sequential(nn.Conv1d(1, 2, 2), nn.LogSoftmax(dim=1)),
        (1, 5),
        r"module 1 \(LogSoftmax\) is over axis 1 of inputs \(N, 2, 4\); only the last axis",
    ),
    "log-softmax-no-dim": (lambda: nn.Sequential(nn.Linear(3, 3), nn.LogSoftmax()), (3,), r"has dim=None"),
    "flatten-batch": (
        lambda: nn.Sequential(nn.Linear(3, 3), nn.Flatten(0)),
        (3,),
        r"module 1 \(Flatten\) flattens the batch axis \(start_dim=0\), which mixes the samples",
    ),
    "negative-padding": (
        lambda: nn.Sequential(nn.Conv1d(1, 1, 2), nn.ConstantPad1d((-1, 0), 0.0)),
        (1, 5),
        r"has negative padding \(-1, 0\) \(cropping\)",
    ),
    "residual": (
        Residual,
        (3,),
        r"operation operator.add at test_torch_refusals.py:\d+ \(return self.b\(x \+ "
        r"torch.tanh\(self.a\(x\)\)\)\) takes the model's input as well, not only the "
        r"previous operation's output",
    ),
    "concatenation": (Concatenated, (3,), r"operation torch.cat .*takes the model's input as well"),
    "transposed-weight": (
        TransposedWeight,
        (3,),
        r"operation Tensor.t at test_torch_refusals.py:\d+ "
        r"\(return F.linear\(.*\)\) does not take the chain's tensor",
    ),
    "scaling": (
        Scaled,
        (3,),
        r"operation operator.mul at test_torch_refusals.py:\d+ \(return 3 \* self.a\(x\)\) is "
        r"not supported",
    ),
    "data-dependent": (DataDependent, (3,), r"tracing DataDependent.forward with torch.fx failed \(TraceError"),
    "two-inputs": (TwoInputs, (3,), r"TwoInputs.forward takes 2 inputs \(x, y\); from_torch takes models of one"),
    "tuple-output": (Pair, (3,), r"Pair.forward returns tuple, not one tensor"),
    "unused-parameter": (Unused, (3,), r"trainable parameter spare.weight is never used by the model's forward"),
    "parameter-order": (
        Reordered,
        (3,),
        r"uses its parameters in another order than module.parameters\(\) lists "
        r"them \(first.weight before second.weight\).*register the submodules",
    ),
    "fixed-batch-view": (FixedBatch, (1, 5), r"reshapes to \(4, -1\): the batch size must come from the input"),
    "unflatten-view": (Unflattened, (4,), r"reshapes samples of shape \(4,\) to \(2, 2\): only flattening"),
    "infinite-outputs": (
        lambda: nn.Sequential(nn.Conv1d(1, 1, 2, stride=2), nn.MaxPool1d(2, 1, 1, 2)),
        (1, 3),
        r"the model's outputs are not finite on random inputs",
    ),
    "no-parameters": (lambda: nn.Sequential(nn.ReLU()), (3,), r"the model has no parameters"),
    "identity": (
        lambda: nn.Sequential(nn.Linear(3, 3).requires_grad_(False), nn.Identity()),
        (3,),
        r"the model has no trainable parameters",
    ),
    "torchscript": (
        lambda: torch.jit.script(nn.Sequential(nn.Linear(3, 2))),
        (3,),
        r"the model is a TorchScript module",
    ),
    "not-a-module": (lambda: lambda x: x, (3,), r"from_torch takes a torch.nn.Module, got"),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_models_are_refused_naming_what_and_where(name):
    build, shape, message = REFUSED[name]
    torch.manual_seed(0)
    module = build()
    module = module.double() if isinstance(module, nn.Module) else module
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(module, None, input_shape=shape)
