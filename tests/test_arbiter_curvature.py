"""The arbiter's curvature quantities (``ggn``, ``ggnvp``, ``ggn_block``, the diagonals, ``empirical_fisher``,
``output_jacobian``, the Kronecker factors and block, the trace, the top eigenvalues): against ``torch.func`` on
float64 (an independent computation: Jacobians, the loss's Hessian in the outputs, per-sample gradients, the
Hessian's eigenvalues), their identities in high precision, every quantity of the contract callable with the
contract's shapes; and what the arbiter shares with every engine: ``OverflowResultError`` for a result beyond
float64, a memory guard whose estimate holds the measured peak, refusals by name."""

import os
import subprocess
import sys
import tracemalloc

import mpmath
import numpy as np
import pytest

from xval import Network, contract
from xval.contract import Problem
from xval.errors import ArgumentError, MemoryGuardError, OverflowResultError
from xval.layers import Activation, Conv, Dense, Flatten

arbiter = pytest.importorskip("xval.arbiter")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch.func's
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = {**contract.QUANTITIES, **contract.PENDING}


def conv_net(loss="cross_entropy", reduction="mean"):
    """Conv1d(2 -> 2, kernel 2) on (2, 4) samples, tanh, Flatten, Dense(6 -> 3), softplus, Dense(3 -> 2): P = 39."""
    rng = np.random.default_rng(1)
    layers = [
        Conv(0, 1, 1, (1,), (0,), (1,)),
        Activation("tanh"),
        Flatten(),
        Dense(2, 3),
        Activation("softplus"),
        Dense(4, 5),
    ]
    shapes = [(2, 2, 2), (2,), (3, 6), (3,), (2, 3), (2,)]
    return Network.from_layers(layers, [rng.standard_normal(s) * 0.7 for s in shapes], (2, 4), loss, reduction)


def data(net, n=3, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n,) + net.input_shape)
    Y = rng.random((n,) + net.output_shape)
    return X, Y / Y.sum(axis=1, keepdims=True)


def torch_outputs(net, theta, x):
    """The network's outputs for one sample ``x`` from a flat ``theta`` (Dense, Conv1d, tanh, softplus, Flatten)."""
    tensors, start = [], 0
    for p in net.parameters:
        tensors.append(theta[start : start + p.size].reshape(p.shape))
        start += p.size
    z = x
    for layer in net.layers:
        if isinstance(layer, Dense):
            z = z @ tensors[layer.weight].T + tensors[layer.bias]
        elif isinstance(layer, Conv):
            z = torch.nn.functional.conv1d(z[None], tensors[layer.weight], tensors[layer.bias])[0]
        elif isinstance(layer, Flatten):
            z = z.reshape(-1)
        else:
            z = {"tanh": torch.tanh, "softplus": torch.nn.functional.softplus, "identity": lambda t: t}[layer.name](z)
    return z


def torch_loss(net, f, y):
    return -(y * f.log_softmax(0)).sum() if net.loss == "cross_entropy" else 0.5 * ((f - y) ** 2).sum()


def torch_truths(net, X, Y):
    """From torch.func: per-sample Jacobians ``J_n``, loss Hessians ``Lambda_n``, per-sample gradients, the Hessian."""
    theta, Xt, Yt = torch.tensor(net.to_vector()), torch.tensor(X), torch.tensor(Y)
    c = 1 / len(X) if net.reduction == "mean" else 1.0
    J = torch.stack([torch.func.jacrev(lambda t: torch_outputs(net, t, x))(theta) for x in Xt])
    f = torch.stack([torch_outputs(net, theta, x) for x in Xt])
    Lam = torch.stack([torch.func.hessian(lambda out: torch_loss(net, out, y))(out) for out, y in zip(f, Yt)])
    g = torch.stack(
        [torch.func.grad(lambda t: torch_loss(net, torch_outputs(net, t, x), y))(theta) for x, y in zip(Xt, Yt)]
    )
    objective = lambda t: c * sum(torch_loss(net, torch_outputs(net, t, x), y) for x, y in zip(Xt, Yt))  # noqa: E731
    H = torch.func.hessian(objective)(theta)
    return J.numpy(), Lam.numpy(), g.numpy(), H.numpy(), c


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_curvature_against_torch_func(reduction):
    net = conv_net(reduction=reduction)
    X, Y = data(net)
    J, Lam, g, H, c = torch_truths(net, X, Y)
    ggn = c * np.einsum("nkp,nkl,nlq->pq", J, Lam, J)
    v = np.random.default_rng(3).standard_normal(net.n_params)
    assert relative(arbiter.output_jacobian(net, X), J) <= 1e-12
    assert relative(arbiter.ggn(net, X, Y), ggn) <= 1e-12
    assert relative(arbiter.ggnvp(net, X, Y, v), ggn @ v) <= 1e-12
    assert relative(arbiter.ggn_block(net, X, Y, 2, 0), ggn[net.param_slices[2], net.param_slices[0]]) <= 1e-12
    assert relative(arbiter.ggn_diagonal(net, X, Y), np.diag(ggn)) <= 1e-12
    assert relative(arbiter.empirical_fisher(net, X, Y), c * g.T @ g) <= 1e-12  # g_n unscaled, c = 1/N or 1
    assert relative(arbiter.hessian_diagonal(net, X, Y), np.diag(H)) <= 1e-12
    assert relative(arbiter.hessian_trace(net, X, Y), np.trace(H)) <= 1e-12
    assert relative(arbiter.top_eigenvalues(net, X, Y, 3), np.linalg.eigvalsh(H)[::-1][:3]) <= 1e-12


def test_kronecker_factors_against_torch_func():
    """Layer 1 (Dense(6 -> 3)) of the conv network: ``A = (1/N) sum a a^T`` over ``a = [z; 1]`` (z: the flattened
    tanh output), ``G = c sum B^T Lambda B`` with ``B = df/ds`` (s: the Dense output), and kfac_block from them."""
    net = conv_net(loss="mse", reduction="sum")
    X, Y = data(net)
    theta = torch.tensor(net.to_vector())
    W, b = theta[:8].reshape(2, 2, 2), theta[8:10]
    V, c_, U, d = theta[10:28].reshape(3, 6), theta[28:31], theta[31:37].reshape(2, 3), theta[37:39]
    A, G = 0, 0
    for x, _y in zip(torch.tensor(X), torch.tensor(Y)):
        z = torch.tanh(torch.nn.functional.conv1d(x[None], W, b)[0]).reshape(-1)
        a = torch.cat([z, torch.ones(1, dtype=z.dtype)])
        A = A + torch.outer(a, a) / len(X)
        s = z @ V.T + c_
        B = torch.func.jacrev(lambda s: torch.nn.functional.softplus(s) @ U.T + d)(s)
        G = G + B.T @ B  # Lambda = I for mse, c = 1 for the sum
    ours = arbiter.kfac_factors(net, X, Y, 1)
    assert relative(ours[0], A.numpy()) <= 1e-14 and relative(ours[1], G.numpy()) <= 1e-12
    assert relative(arbiter.kfac_block(net, X, Y, 1), contract.kfac_block_from_factors(A.numpy(), G.numpy())) <= 1e-12


def test_identities_hold_in_high_precision():
    """``ggnvp = ggn v``, ``trace = sum(diag H)``, ``diag(ggn) = ggn_diagonal`` and, at N = 1, ``kfac_block(l) =
    ggn_block(l, l)``: equal to 1e-35 at 40 digits, on the arbiter's own high-precision values."""
    net = Network.random([3, 4, 2], "tanh", "cross_entropy", seed=4)
    X, Y = data(net, n=2, seed=5)
    v = np.random.default_rng(6).standard_normal(net.n_params)

    def exact(name, n=2, **more):
        arguments = dict(X=X[:n], Y=Y[:n], v=v, l=1, m=1, **more)
        problem = arbiter.quantities.Problem(net, arguments, None)
        return arbiter.quantities.value(problem, contract.quantity(name))

    with mpmath.workdps(40):

        def close(a, b):
            a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
            largest = max(abs(x - y) for x, y in zip(a.ravel(), b.ravel()))
            return largest <= mpmath.mpf("1e-35") * max(map(abs, b.ravel()))

        G = exact("ggn")
        assert close(exact("ggnvp"), G @ arbiter.quantities.Numbers(None).constant(v))
        assert close(exact("ggn_diagonal"), np.diagonal(G))
        assert close(exact("hessian_trace"), np.sum(np.diagonal(exact("hessian"))))
        assert close(exact("kfac_block", n=1), exact("ggn_block", n=1))
    # and so in float64, correctly rounded from the same exact values: bit for bit
    assert np.array_equal(arbiter.kfac_block(net, X[:1], Y[:1], 1), arbiter.ggn_block(net, X[:1], Y[:1], 1, 1))
    assert np.array_equal(arbiter.ggn_diagonal(net, X, Y), np.diag(arbiter.ggn(net, X, Y)))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_ggn_is_the_hessian_of_a_one_layer_network(loss):
    """f linear in theta (one Dense layer, identity): H = J^T Lambda J exactly, so bit for bit."""
    net = Network.random([3, 2], "identity", loss, seed=7)
    X, Y = data(net, n=3, seed=8)
    assert np.array_equal(arbiter.ggn(net, X, Y), arbiter.hessian(net, X, Y))


def test_every_quantity_of_the_contract_with_its_shape_and_rounding_floor():
    net = conv_net()
    X, Y = data(net, n=2)
    problem = Problem("conv", net, X, Y, np.random.default_rng(9).standard_normal(net.n_params), block=(2, 1), k=2)
    for quantity in ALL.values():  # the layer quantities on layer 2 (Dense(3 -> 2)), blocks (2, 1)
        for call in quantity.calls(problem):
            assert quantity.implemented_by(arbiter)
            value = call.evaluate(arbiter)  # contract.checked_result: real floats of the contract's shape
            values, bounds = arbiter.with_error_bound(quantity.name, net, *call.arguments)
            for part, exact, bound in zip(*(x if isinstance(x, tuple) else (x,) for x in (value, values, bounds))):
                assert np.shape(exact) == np.shape(part) == np.shape(bound) and np.all(np.asarray(bound) >= 0)
                assert relative(exact, part) <= 1e-15 or np.linalg.norm(part) == 0, call.label


def test_overflow_is_the_engines_error():
    """A result beyond float64 (1e200 * 1e200) raises OverflowResultError naming the call, as every engine does."""
    net = Network.from_arrays([np.array([[1e200]])], [np.array([0.0])], ["identity"], "mse")
    X, Y = np.array([[1e200]]), np.array([[0.0]])
    for quantity in ("forward", "loss", "gradient", "ggn"):
        arguments = (X,) if quantity == "forward" else (X, Y)
        with pytest.raises(OverflowResultError, match=rf"arbiter\.{quantity} overflowed float64"):
            getattr(arbiter, quantity)(net, *arguments)
    assert arbiter.forward(net, np.array([[1e100]]))[0, 0] == 1e300


def test_kronecker_factors_need_a_dense_layer_with_its_own_bias():
    net = conv_net()
    X, Y = data(net, n=1)
    with pytest.raises(ArgumentError, match="Dense layers only"):
        arbiter.kfac_factors(net, X, Y, 0)  # the convolution
    no_bias = Network.from_layers(
        [Dense(0), Activation("tanh"), Dense(1, 2)], [np.ones((2, 2)), np.ones((1, 2)), np.zeros(1)], (2,), "mse"
    )
    with pytest.raises(ArgumentError, match=r"its own trainable weight and bias"):
        arbiter.kfac_factors(no_bias, np.ones((1, 2)), np.ones((1, 1)), 0)
    frozen = Network.from_layers(
        [Dense(np.ones((2, 2)), 0), Activation("tanh"), Dense(1, 2)],
        [np.zeros(2), np.ones((1, 2)), np.zeros(1)],
        (2,),
        "mse",
    )
    with pytest.raises(ArgumentError, match=r"its own trainable weight and bias"):
        arbiter.kfac_factors(frozen, np.ones((1, 2)), np.ones((1, 1)), 0)
    tied = Network.from_layers(
        [Dense(0, 1), Activation("tanh"), Dense(0, 1)], [np.ones((2, 2)), np.zeros(2)], (2,), "mse"
    )
    with pytest.raises(ArgumentError, match=r"used once"):
        arbiter.kfac_factors(tied, np.ones((1, 2)), np.ones((1, 2)), 0)


def test_unsupported_is_refused_by_name(monkeypatch):
    monkeypatch.delitem(arbiter.formulas.ACTIVATIONS, "softplus")
    net = conv_net()
    with pytest.raises(arbiter.ArbiterUnsupportedError, match=r"no formula for activation 'softplus' \(layer 4\)"):
        arbiter.forward(net, data(net)[0])


def _spectrum(eigenvalues, seed):
    """``Q diag(eigenvalues) Q^T`` in high precision (Q orthonormal to the working precision) and its exact top 3."""
    p = len(eigenvalues)
    Q = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))[0]
    Q = arbiter.eigen._orthonormal(arbiter.eigen._mp(Q))
    L = np.array([mpmath.mpf(e) for e in eigenvalues], dtype=object)
    return (Q * L) @ Q.T, [float(e) for e in sorted(L, reverse=True)[:3]]


SPECTRA = {
    "separated": list(np.linspace(-1, 3, 30)),
    "tiny third": [3.0, 1.0, 1e-12, -1e-13] + [-1.5] * 10,
    "double at the cut": [2.0, 1.5, 1.5, 1.5] + list(np.linspace(-1, 1, 20)),
    "cluster to the bottom": [1.0, 0.5] + [1e-3] * 12,
    "1e-30 above a cluster": [1.0, 0.5, "1e-30"] + ["-1e-20"] * 5 + list(np.linspace(-1, -0.5, 10)),
}


@pytest.mark.parametrize("spectrum", list(SPECTRA))
def test_top_eigenvalues_are_correctly_rounded_on_hard_spectra(spectrum):
    """The Ritz-value solver (``xval.arbiter.eigen``) against matrices of known spectrum: tiny, repeated and clustered
    eigenvalues at the k-th place; each of the top 3 the nearest float64 of the exact eigenvalue."""
    with mpmath.workdps(80 if spectrum == "1e-30 above a cluster" else 40):
        H, exact = _spectrum(SPECTRA[spectrum], seed=len(spectrum))
        assert [float(e) for e in arbiter.eigen.top_eigenvalues(H, 3)] == exact


SIZES = [
    ("hessian", [2, 6, 2], 2, ()),
    ("hessian", [3, 6, 4, 2], 1, ()),
    ("hessian_block", [3, 6, 4, 2], 2, (1, 1)),
    ("gradient", [10, 30, 10], 3, ()),
    ("ggn", [3, 6, 4, 2], 2, ()),
    ("empirical_fisher", [3, 6, 2], 3, ()),
    ("output_jacobian", [4, 8, 3], 2, ()),
    ("top_eigenvalues", [2, 5, 2], 1, (2,)),
]


@pytest.mark.parametrize("name, sizes, n, extra", SIZES, ids=[f"{s[0]}-{'x'.join(map(str, s[1]))}" for s in SIZES])
def test_memory_estimate_holds_the_measured_peak(name, sizes, n, extra):
    """tracemalloc's peak of a call (at its highest precision, twice the setting) against the guard's estimate: the
    estimate holds it, and is not more than 8 times it (a guard that refuses what fits is no guard either)."""
    net = Network.random(sizes, "tanh", "mse", seed=1)
    X, Y = data(net, n=n)
    quantity = contract.quantity(name)
    arguments = (X,) if quantity.parameters == ("X",) else (X, Y) + extra
    estimate = arbiter.cost(quantity, net, arbiter._arguments(quantity, net, arguments))
    tracemalloc.start()
    try:
        getattr(arbiter, name)(net, *arguments)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    needed = arbiter.memory_estimate(estimate, 2 * 40, bounded=False)
    assert peak <= needed <= 8 * peak + arbiter.BASE_BYTES, f"peak {peak} bytes, estimate {needed}"


def test_memory_guard_refuses_before_work(monkeypatch):
    net = Network.random([3, 8, 6, 2], "tanh", "mse", seed=1)
    X, Y = data(net, n=2)
    quantity = contract.quantity("hessian")
    needed = arbiter.memory_estimate(arbiter.cost(quantity, net, arbiter._arguments(quantity, net, (X, Y))), 40, False)
    monkeypatch.setenv("XVAL_MAX_BYTES", str(needed // 2))
    with pytest.raises(MemoryGuardError, match=r"arbiter\.hessian at 40 digits needs \d+ bytes"):
        arbiter.hessian(net, X, Y)


def test_resident_set_growth_within_the_estimate():
    """The Hessian's resident-set growth in a fresh process (ru_maxrss after the call less before it) within the
    estimate: the guard holds real memory, not only Python's own count."""
    script = (
        "import resource, numpy as np\n"
        "from xval import Network, contract\n"
        "import xval.arbiter as arbiter\n"
        "net = Network.random([3, 12, 6, 2], 'tanh', 'mse', seed=1)\n"
        "X, Y = np.ones((2, 3)) * 0.3, np.ones((2, 2))\n"
        "arbiter.gradient(net, X, Y)\n"  # imports and first-call allocations before the baseline
        "q = contract.quantity('hessian')\n"
        "estimate = arbiter.memory_estimate(arbiter.cost(q, net, arbiter._arguments(q, net, (X, Y))), 80, False)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "arbiter.hessian(net, X, Y)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(after - before, estimate)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    growth, estimate = map(int, result.stdout.split())
    assert growth <= estimate, f"resident set grew by {growth} bytes, estimate {estimate}"


def test_a_network_without_a_loss_has_outputs_and_their_jacobian_only():
    net = conv_net().with_loss(None)
    X, Y = data(conv_net(), n=2)
    J = torch.stack(
        [torch.func.jacrev(lambda t: torch_outputs(net, t, x))(torch.tensor(net.to_vector())) for x in torch.tensor(X)]
    ).numpy()
    assert relative(arbiter.output_jacobian(net, X), J) <= 1e-12 and arbiter.forward(net, X).shape == (2, 2)
    with pytest.raises(ArgumentError, match="needs a loss"):
        arbiter.gradient(net, X, Y)


def test_values_of_the_same_data_are_shared_across_calls_and_never_stale():
    """A trace, a diagonal and the eigenvalues read the Hessian the last call on the same network and data computed;
    other data (even the same array changed in place) or another network is computed afresh."""
    net = Network.random([2, 3, 2], "tanh", "mse", seed=3)
    X, Y = data(net, n=2)
    H = arbiter.hessian(net, X, Y)
    assert arbiter._cached_cells() >= 2 * net.n_params**2  # at 40 and at 80 digits
    assert np.array_equal(arbiter.hessian_diagonal(net, X, Y), np.diag(H))
    X[0, 0] += 0.5  # in place: the same array object, other data
    changed = arbiter.hessian(net, X, Y)
    fresh = net.from_vector(net.to_vector())  # an equal network, another object: nothing cached for it
    assert not np.array_equal(changed, H) and np.array_equal(changed, arbiter.hessian(fresh, X, Y))
