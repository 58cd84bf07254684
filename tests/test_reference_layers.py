"""The reference engines compute torch's own functions on networks of every layer kind (``reference_networks``):
forward and loss equal torch's modules and loss modules, gradient and Hessian equal ``torch.func`` applied to the
module itself (tied weights summed over their uses, frozen ones left out), and torch_ref and jax_ref agree on the
per-sample passes and the output Jacobian (every quantity on the case table's networks of each layer kind:
``test_references``). Activations at their kinks and max pooling at ties take torch's one-sided derivatives."""

import numpy as np
import pytest

from tests.reference_networks import NETWORKS, build, network_of, torch_objective
from xval import compare, contract
from xval.cases import unit_direction

torch = pytest.importorskip("torch")
torch_ref = pytest.importorskip("torch_ref")
jax_ref = pytest.importorskip("jax_ref")
nn = torch.nn

ENGINES = {"torch": torch_ref, "jax": jax_ref}
# Compared on every network of a layer kind: the per-sample passes (vmap's batching of each layer), or the output
# Jacobian without a loss; forward, loss, gradient and Hessian are checked against torch's own modules below.
CORE = {True: "per_sample_gradients", False: "output_jacobian"}
BY_NAME = {entry.name: entry for entry in NETWORKS}


def problem_of(entry, dtype):
    module, net, X, Y, targets = build(entry, dtype)
    block = (0, 0) if net.n_layers == 1 else None
    return module, targets, contract.Problem(entry.name, net, X, Y, unit_direction(net), block)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(BY_NAME))
def test_forward_and_loss_are_torchs_modules(name, dtype):
    entry = BY_NAME[name]
    module, net, X, Y, targets = build(entry, dtype)
    rtol = contract.quantity("forward").tolerance(dtype)
    with torch.no_grad():
        outputs = module(torch.as_tensor(X))
        expected_loss = (
            None if entry.loss is None else float(torch_objective(entry.loss, entry.reduction, outputs, targets))
        )
    for engine_name, engine in ENGINES.items():
        compare.assert_close(engine.forward(net, X), outputs.numpy(), rtol, f"{engine_name} forward on {name}")
        if expected_loss is not None:
            compare.assert_close(engine.loss(net, X, Y), expected_loss, rtol, f"{engine_name} loss on {name}")


def module_derivatives(module, loss, reduction, X, targets):
    """The gradient and Hessian of torch's own ``E`` in the module's trainable parameters (``torch.func`` on the
    module: ``functional_call`` of its ``named_parameters``, which lists a tied tensor once and skips frozen ones)."""
    named = {key: value.detach() for key, value in module.named_parameters() if value.requires_grad}
    sizes = [value.numel() for value in named.values()]
    X = torch.as_tensor(X)

    def objective(theta):
        tensors = {
            key: piece.reshape(value.shape) for (key, value), piece in zip(named.items(), torch.split(theta, sizes))
        }
        outputs = torch.func.functional_call(module, tensors, (X,))
        return torch_objective(loss, reduction, outputs, targets)

    theta = torch.cat([value.reshape(-1) for value in named.values()])
    with torch_ref._model.forward_mode():
        return torch.func.grad(objective)(theta).numpy(), torch.func.hessian(objective)(theta).numpy()


def derivative_cases():
    for entry in NETWORKS:
        for dtype in ("float64", "float32") if entry.float32 else ("float64",):
            if entry.loss is not None:
                yield pytest.param(entry.name, dtype, id=f"{entry.name}-{dtype}")


@pytest.mark.parametrize("name, dtype", list(derivative_cases()))
def test_gradient_and_hessian_are_torchs_on_the_module(name, dtype):
    entry = BY_NAME[name]
    module, net, X, Y, targets = build(entry, dtype)
    gradient, hessian = module_derivatives(module, entry.loss, entry.reduction, X, targets)
    assert gradient.shape == (net.n_params,), "P is the module's trainable parameter count"
    rtol = contract.quantity("hessian").tolerance(dtype)
    for engine_name, engine in ENGINES.items():
        compare.assert_close(engine.gradient(net, X, Y), gradient, rtol, f"{engine_name} gradient on {name}")
        compare.assert_close(engine.hessian(net, X, Y), hessian, rtol, f"{engine_name} hessian on {name}")


@pytest.mark.parametrize("name", [entry.name for entry in NETWORKS if "loss" not in entry.tags])
def test_references_agree_on_every_layer_kind(name):
    entry = BY_NAME[name]
    module, targets, problem = problem_of(entry, "float64")
    quantity = contract.quantity(CORE[entry.loss is not None])
    for call in quantity.calls(problem):
        compare.assert_close(
            call.evaluate(torch_ref), call.evaluate(jax_ref), quantity.tolerance("float64"), f"{call.label} on {name}"
        )


def test_the_parameter_vector_follows_the_modules_trainable_parameters():
    """A tied Linear counts once, at its first use; frozen tensors are not parameters."""
    module, net, X, Y, _ = build(BY_NAME["dense-tied"], "float64")
    expected = [p.detach().numpy().reshape(-1) for p in module.parameters() if p.requires_grad]
    np.testing.assert_array_equal(net.to_vector(), np.concatenate(expected))
    assert net.n_params == 3 * 3 + 3 + 3 * 2 + 2
    module, net, X, Y, _ = build(BY_NAME["dense-frozen"], "float64")
    assert net.n_params == 4 + (4 * 4 + 4)  # the first bias and the middle layer


@pytest.mark.parametrize(
    "activation, options",
    [
        (nn.ReLU(), "relu'(0) = 0"),
        (nn.LeakyReLU(0.2), "leaky_relu'(0) = slope"),
        (nn.ELU(0.7), "elu'(0) = alpha"),
        (nn.SELU(), "selu'(0) = scale alpha"),
        (nn.Softplus(2.0, 0.0), "softplus at its threshold"),
    ],
)
def test_kinks_take_torchs_derivatives(activation, options):
    """Pre-activations exactly 0 (a zero first layer): both engines' gradient and Hessian are torch's own."""
    first, last = nn.Linear(3, 2).double(), nn.Linear(2, 2).double()
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
    modules = [first, activation, last]
    module = nn.Sequential(*modules)
    net = network_of(modules, (3,), "mse", "mean", "float64")
    X = np.random.default_rng(0).standard_normal((3, 3))
    Y = np.random.default_rng(1).standard_normal((3, 2))
    gradient, hessian = module_derivatives(module, "mse", "mean", X, torch.as_tensor(Y))
    for engine_name, engine in ENGINES.items():
        compare.assert_close(engine.gradient(net, X, Y), gradient, 1e-12, f"{engine_name}: {options}")
        compare.assert_close(engine.hessian(net, X, Y), hessian, 1e-12, f"{engine_name}: {options}")


def test_records_that_torchs_modules_cannot_build():
    """Average pooling over one axis with a divisor_override (nn.AvgPool1d has none; torch_ref pools over a unit
    second axis) and softplus with a beta but no threshold (the suite's, log(1 + exp(beta x)) / beta everywhere), on
    a Dense layer over leading positions: both engines against the definitions, and against each other."""
    from xval import Network, definitions
    from xval.layers import Activation, Dense, Pool

    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((5, 5)), rng.standard_normal(5)
    layers = [
        Dense(0, 1),
        Activation("softplus", (("beta", 2.0),)),
        Pool("avg", 1, (3,), (2,), (1,), (), True, False, 2),
    ]
    net = Network.from_layers(layers, [W, b], (2, 5), "mse", "sum")
    X, Y = rng.standard_normal((3, 2, 5)), rng.standard_normal((3, 2, 3))
    z = definitions.activation("softplus").value(X @ W.T + b, beta=2.0)
    windows = [(max(o * 2 - 1, 0), min(o * 2 - 1 + 3, 5)) for o in range(3)]  # ceil mode: 3 windows over 5
    expected = np.stack([z[..., start:end].sum(-1) / 2 for start, end in windows], axis=-1)
    for engine_name, engine in ENGINES.items():
        compare.assert_close(engine.forward(net, X), expected, 1e-14, f"{engine_name} forward")
    for quantity in ("gradient", "hessian", "ggn"):
        compare.assert_close(
            getattr(torch_ref, quantity)(net, X, Y), getattr(jax_ref, quantity)(net, X, Y), 1e-10, quantity
        )


@pytest.mark.parametrize("engine_name", list(ENGINES))
def test_average_pooling_with_a_dilation_is_refused(engine_name):
    """torch's average pooling has no dilation: a record asking for one is refused, not computed without it."""
    from xval import Network
    from xval.errors import ArgumentError
    from xval.layers import Dense, Pool

    net = Network.from_layers(
        [Dense(0, 1), Pool("avg", 1, (2,), (1,), (0,), (2,))], [np.ones((4, 4)), np.zeros(4)], (1, 4), "mse"
    )
    with pytest.raises(ArgumentError, match=r"average pooling with dilation \(2,\): torch's AvgPool has no dilation"):
        ENGINES[engine_name].forward(net, np.ones((1, 1, 4)))


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool1d(2, dilation=2)], ids=["2d", "1d-dilation2"])
def test_max_pooling_gives_a_tied_window_to_its_first_largest_entry(pool):
    """Equal rows of a Linear layer and equal positions of the input tie every window: torch's derivative goes to the
    first largest entry in the window's order, and so do both engines'."""
    linear = nn.Linear(2, 4).double()
    with torch.no_grad():
        linear.weight[1] = linear.weight[0]
        linear.weight[2] = linear.weight[0]
        linear.bias[1:3] = linear.bias[0]
    modules = [linear, pool, nn.Flatten(), nn.LazyLinear(2).double()]
    shape = (1, 2, 2) if isinstance(pool, nn.MaxPool2d) else (1, 2)
    X = np.tile(np.random.default_rng(0).standard_normal(2), (3, *shape[:-1], 1))
    module = nn.Sequential(*modules)
    module(torch.as_tensor(X))  # sizes the LazyLinear
    net = network_of(list(module), shape, "mse", "mean", "float64")
    Y = np.random.default_rng(1).standard_normal((3, 2))
    gradient, hessian = module_derivatives(module, "mse", "mean", X, torch.as_tensor(Y))
    for engine_name, engine in ENGINES.items():
        compare.assert_close(engine.gradient(net, X, Y), gradient, 1e-12, f"{engine_name} gradient")
        compare.assert_close(engine.hessian(net, X, Y), hessian, 1e-12, f"{engine_name} hessian")
