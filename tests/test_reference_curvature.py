"""The curvature quantities hold their identities in every engine that has them (torch_ref and jax_ref; manual on
plain MLPs once it implements them: skipped until then): ``ggnvp == ggn @ v``, ``diag(ggn) == ggn_diagonal``,
``hessian_trace == sum(hessian_diagonal)``, ``kfac_block(l) == ggn_block(l, l)`` at N = 1, the GGN from the output
Jacobian and the loss Hessian written out here, ``ggn == hessian`` where the outputs are linear in the parameters,
the exact Fisher of cross-entropy equals the GGN, the reduction scales every quantity by N; bad input gets the
documented errors, and every call is refused by the memory guard before any work."""

import re

import numpy as np
import pytest

from tests.helpers import load_engine
from tests.reference_networks import NETWORKS, build, kfac_defined
from xval import Network, cases, compare, contract
from xval.errors import ArgumentError, LayerIndexError, MemoryGuardError, ShapeError, UnsupportedNetworkError

torch_ref = pytest.importorskip("torch_ref")
jax_ref = pytest.importorskip("jax_ref")

RTOL = compare.TOLERANCES["float64"]
EVERY_QUANTITY = list(contract.QUANTITIES.values()) + list(contract.PENDING.values())
BY_NAME = {entry.name: entry for entry in NETWORKS}
MLP_CASES = {cases.case_id(case): case for case in cases.CASES}
# plain MLPs of the case table (every engine) and networks of other layer kinds (the references)
PROBLEMS = ["mlp-4x8x3-tanh-mse-N5", "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7", "maxpool2d-ceil-pad1", "dense-tied"]


def problem(name, dtype="float64"):
    if name in MLP_CASES:
        return cases.problem(MLP_CASES[name], dtype)
    _, net, X, Y, _ = build(BY_NAME[name], dtype)
    return contract.Problem(name, net, X, Y, cases.unit_direction(net))


def engines_for(net):
    return ["torch", "jax", "manual"] if net.is_mlp else ["torch", "jax"]


def each_engine_and_problem():
    for name in PROBLEMS:
        net = problem(name).net
        for engine in engines_for(net):
            yield pytest.param((engine, name), id=f"{engine}-{name}")


@pytest.fixture
def engine_and_problem(request):
    engine, name = request.param
    return load_engine(engine), problem(name)


ENGINE_AND_PROBLEM = pytest.mark.parametrize("engine_and_problem", list(each_engine_and_problem()), indirect=True)


@ENGINE_AND_PROBLEM
def test_ggnvp_is_the_ggn_times_v(engine_and_problem):
    engine, p = engine_and_problem
    compare.assert_close(engine.ggnvp(p.net, p.X, p.Y, p.v), engine.ggn(p.net, p.X, p.Y) @ p.v, RTOL, "ggnvp")


@ENGINE_AND_PROBLEM
def test_the_diagonals_are_the_diagonals_of_the_matrices(engine_and_problem):
    engine, p = engine_and_problem
    compare.assert_close(engine.ggn_diagonal(p.net, p.X, p.Y), np.diag(engine.ggn(p.net, p.X, p.Y)), RTOL, "ggn")
    compare.assert_close(
        engine.hessian_diagonal(p.net, p.X, p.Y), np.diag(engine.hessian(p.net, p.X, p.Y)), RTOL, "hessian"
    )


@ENGINE_AND_PROBLEM
def test_hessian_trace_is_the_sum_of_the_hessian_diagonal(engine_and_problem):
    engine, p = engine_and_problem
    trace = engine.hessian_trace(p.net, p.X, p.Y)
    assert isinstance(trace, float)
    compare.assert_close(trace, np.sum(engine.hessian_diagonal(p.net, p.X, p.Y)), RTOL, "trace")


@ENGINE_AND_PROBLEM
def test_ggn_blocks_are_the_blocks_of_the_ggn(engine_and_problem):
    engine, p = engine_and_problem
    ggn, slices = engine.ggn(p.net, p.X, p.Y), p.net.param_slices
    for l in range(p.net.n_layers):
        for m in range(p.net.n_layers):
            block = engine.ggn_block(p.net, p.X, p.Y, l, m)
            compare.assert_close(block, ggn[slices[l], slices[m]], RTOL, f"ggn_block({l}, {m})")


@ENGINE_AND_PROBLEM
def test_top_eigenvalues_are_the_hessians_largest(engine_and_problem):
    engine, p = engine_and_problem
    expected = np.linalg.eigvalsh(engine.hessian(p.net, p.X, p.Y))[::-1][:4]
    compare.assert_close(engine.top_eigenvalues(p.net, p.X, p.Y, 4), expected, RTOL, "top 4 eigenvalues")


def loss_hessians(net, outputs):
    """``Lambda_n`` ``(N, K, K)`` written out per loss (the suite's definitions, not an engine)."""
    n, k = outputs.shape
    if net.loss == "mse":
        return np.broadcast_to(np.eye(k), (n, k, k))
    if net.loss == "cross_entropy":
        p = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return np.einsum("nk,kj->nkj", p, np.eye(k)) - np.einsum("nk,nj->nkj", p, p)
    if net.loss == "bce_with_logits":
        s = 1 / (1 + np.exp(-outputs))
        return np.einsum("nk,kj->nkj", s * (1 - s), np.eye(k))
    raise AssertionError(net.loss)


@ENGINE_AND_PROBLEM
def test_the_ggn_is_the_output_jacobian_through_the_loss_hessian(engine_and_problem):
    engine, p = engine_and_problem
    J = engine.output_jacobian(p.net, p.X)
    Lambda = loss_hessians(p.net, engine.forward(p.net, p.X).reshape(len(p.X), -1))
    expected = p.net.sample_weight(len(p.X)) * np.einsum("nkp,nkj,njq->pq", J, Lambda, J)
    compare.assert_close(engine.ggn(p.net, p.X, p.Y), expected, RTOL, "ggn")


@ENGINE_AND_PROBLEM
def test_the_empirical_fisher_is_the_outer_product_of_the_per_sample_gradients(engine_and_problem):
    engine, p = engine_and_problem
    g = engine.per_sample_gradients(p.net, p.X, p.Y)
    expected = p.net.sample_weight(len(p.X)) * g.T @ g
    compare.assert_close(engine.empirical_fisher(p.net, p.X, p.Y), expected, RTOL, "empirical fisher")


@pytest.mark.parametrize("engine_name", ["torch", "jax", "manual"])
@pytest.mark.parametrize(
    "name",
    [
        "mlp-4x8x3-tanh-mse-N5",
        "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7",
        "mlp-3x6x6x2-relu-mse-N8",
        "conv1d-stride2-pad1-dil2",
        "dense-tied",
    ],
)
def test_kfac_block_is_the_ggn_block_at_one_sample(engine_name, name):
    p = problem(name)
    if engine_name not in engines_for(p.net):
        pytest.skip(f"{engine_name} takes plain MLPs only")
    engine = load_engine(engine_name)
    X, Y = p.X[:1], p.Y[:1]
    layers = [l for l in range(p.net.n_layers) if kfac_defined(p.net, l)]
    assert layers, f"{name} has no layer with Kronecker factors"
    for l in layers:
        kfac = engine.kfac_block(p.net, X, Y, l)
        compare.assert_close(kfac, engine.ggn_block(p.net, X, Y, l, l), RTOL, f"kfac_block({l}) at N = 1")
        A, G = engine.kfac_factors(p.net, X, Y, l)
        compare.assert_close(kfac, contract.kfac_block_from_factors(A, G), RTOL, f"kfac_factors({l})")


@pytest.mark.parametrize("engine_name", ["torch", "jax", "manual"])
def test_kfac_factors_of_the_first_and_last_layers_written_out(engine_name):
    """``A_0 = [X 1]^T [X 1] / N``; at an identity output ``B = I``, so ``G_L = c sum_n Lambda_n``."""
    engine = load_engine(engine_name)
    for name in ("mlp-4x8x3-tanh-mse-N5", "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7"):
        p = problem(name)
        a = np.hstack([p.X, np.ones((len(p.X), 1))])
        A, _ = engine.kfac_factors(p.net, p.X, p.Y, 0)
        compare.assert_close(A, a.T @ a / len(p.X), RTOL, f"A_0 on {name}")
        last = p.net.n_layers - 1
        _, G = engine.kfac_factors(p.net, p.X, p.Y, last)
        Lambda = loss_hessians(p.net, engine.forward(p.net, p.X))
        compare.assert_close(G, Lambda.sum(axis=0) / len(p.X), RTOL, f"G_{last} on {name}")


def one_layer(kind, loss, dtype="float64"):
    """A network whose outputs are linear in its parameters (one Dense or one Conv1d layer, no activation)."""
    rng = np.random.default_rng(4)
    from xval.layers import Conv, Dense, Flatten

    if kind == "dense":
        layers, parameters, shape = [Dense(0, 1)], [rng.standard_normal((3, 4)), rng.standard_normal(3)], (4,)
    else:
        layers = [Conv(0, 1, 1, (2,), (1,), (1,)), Flatten()]
        parameters, shape = [rng.standard_normal((1, 2, 3)), rng.standard_normal(1)], (2, 5)
    net = Network.from_layers(layers, parameters, shape, loss, "mean", dtype)
    X = rng.standard_normal((5, *shape))
    k = net.output_size
    Y = np.eye(k)[rng.integers(0, k, 5)] if loss == "cross_entropy" else rng.uniform(0, 1, (5, k))
    return net, X, Y


@pytest.mark.parametrize("engine_name", ["torch", "jax", "manual"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits"])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_ggn_is_the_hessian_where_the_outputs_are_linear_in_the_parameters(engine_name, loss, kind):
    net, X, Y = one_layer(kind, loss)
    if engine_name not in engines_for(net) or (engine_name == "manual" and loss == "bce_with_logits"):
        pytest.skip(f"{engine_name} takes plain MLPs with the suite's losses only")
    engine = load_engine(engine_name)
    compare.assert_close(engine.ggn(net, X, Y), engine.hessian(net, X, Y), RTOL, f"one {kind} layer, {loss}")


@pytest.mark.parametrize("engine_name", ["torch", "jax", "manual"])
@pytest.mark.parametrize("name", ["mlp-4x8x3-sigmoid-cross_entropy-onehot-N7", "maxpool2d-ceil-pad1"])
def test_the_exact_fisher_of_cross_entropy_is_the_ggn(engine_name, name):
    """``c sum_n sum_c p_nc g_nc g_nc^T``, ``g_nc`` the gradient of ``loss_n`` with the one-hot target of class c and
    ``p_n`` the model's own class probabilities, summed exactly over the classes."""
    p = problem(name)
    if engine_name not in engines_for(p.net):
        pytest.skip(f"{engine_name} takes plain MLPs only")
    engine = load_engine(engine_name)
    outputs = engine.forward(p.net, p.X)
    probabilities = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    n, k = outputs.shape
    fisher = np.zeros((p.net.n_params, p.net.n_params))
    for c in range(k):
        g = engine.per_sample_gradients(p.net, p.X, np.tile(np.eye(k)[c], (n, 1)))
        fisher += np.einsum("n,np,nq->pq", probabilities[:, c], g, g)
    compare.assert_close(p.net.sample_weight(n) * fisher, engine.ggn(p.net, p.X, p.Y), RTOL, "exact fisher")


@pytest.mark.parametrize("quantity", [q for q in EVERY_QUANTITY if q.needs_loss], ids=lambda q: q.name)
def test_the_sum_reduction_is_n_times_the_mean(quantity):
    """Every quantity of ``E`` scales by N from the mean to the sum; the per-sample gradients (of ``loss_n``) and
    KFAC's ``A`` (an average over the samples) do not. torch_ref here: jax_ref agrees with it on both reductions."""
    p = problem("mlp-4x8x3-sigmoid-cross_entropy-onehot-N7")
    summed = contract.Problem(p.name, p.net.with_loss(p.net.loss, "sum"), p.X, p.Y, p.v)
    factor = 1 if quantity.name == "per_sample_gradients" else len(p.X)
    for mean_call, sum_call in zip(quantity.calls(p), quantity.calls(summed)):
        mean, total = mean_call.evaluate(torch_ref), sum_call.evaluate(torch_ref)
        if quantity.name == "kfac_factors":
            compare.assert_close(total[0], mean[0], RTOL, "A")
            mean, total = mean[1], total[1]
        compare.assert_close(total, factor * np.asarray(mean), RTOL, f"{mean_call.label}: sum vs {factor} x mean")


# ---- the eigenvalues beyond the dense limit: ARPACK on Hessian-vector products -------------------------------
@pytest.fixture(params=["torch", "jax"])
def lanczos_engine(request, monkeypatch):
    """An engine whose ``top_eigenvalues`` takes ARPACK's route already at small P."""
    engine = {"torch": torch_ref, "jax": jax_ref}[request.param]
    monkeypatch.setattr(engine._eigenvalues, "DENSE_LIMIT", 0)
    return engine


def test_lanczos_eigenvalues_match_the_dense_ones(lanczos_engine):
    p = problem("mlp-4x8x3-sigmoid-cross_entropy-onehot-N7")
    expected = np.linalg.eigvalsh(lanczos_engine.hessian(p.net, p.X, p.Y))[::-1][:3]
    compare.assert_close(lanczos_engine.top_eigenvalues(p.net, p.X, p.Y, 3), expected, RTOL, "ARPACK top 3")


def test_lanczos_refuses_k_of_p_and_names_the_range(lanczos_engine):
    p = problem("mlp-4x8x3-tanh-mse-N5")
    P = p.net.n_params
    with pytest.raises(
        ArgumentError,
        match=re.escape(f"k = {P}, but for P = {P} > 0 parameters") + ".*" + re.escape(f"finds k in 1..{P - 1}"),
    ):
        lanczos_engine.top_eigenvalues(p.net, p.X, p.Y, P)


def test_lanczos_that_does_not_converge_names_k(lanczos_engine, monkeypatch):
    from scipy.sparse.linalg import ArpackNoConvergence

    def no_convergence(*args, **kwargs):
        raise ArpackNoConvergence("no convergence", np.array([1.0]), np.ones((3, 1)))

    from xval import lanczos

    monkeypatch.setattr(lanczos, "eigsh", no_convergence)  # the references' shared Lanczos driver
    p = problem("mlp-4x8x3-tanh-mse-N5")
    with pytest.raises(
        ArgumentError,
        match=r"ARPACK did not converge for k = 3 on P = 67 .*only 1 eigenvalues "
        r"converged.*\(k in 1..1\)",
    ):
        lanczos_engine.top_eigenvalues(p.net, p.X, p.Y, 3)


# ---- bad input -----------------------------------------------------------------------------------------------
@pytest.fixture(params=["torch", "jax"])
def reference(request):
    return {"torch": torch_ref, "jax": jax_ref}[request.param]


@pytest.mark.parametrize(
    "name, arguments", [("ggn_block", (2, 0)), ("ggn_block", (0, -1)), ("kfac_factors", (2,)), ("kfac_block", (7,))]
)
def test_a_layer_out_of_range_is_refused(reference, name, arguments):
    p = problem("mlp-4x8x3-tanh-mse-N5")
    with pytest.raises(LayerIndexError, match="is out of range: this network has 2 layers, valid . are 0..1"):
        getattr(reference, name)(p.net, p.X, p.Y, *arguments)


@pytest.mark.parametrize(
    "k, message",
    [
        (0, "k = 0 is out of range"),
        (68, "k = 68 is out of range"),
        (True, "k = True is not a whole number"),
        (2.5, "k = 2.5 is not a whole"),
    ],
)
def test_k_outside_one_to_p_is_refused(reference, k, message):
    p = problem("mlp-4x8x3-tanh-mse-N5")
    assert p.net.n_params == 67
    with pytest.raises(ArgumentError, match=re.escape(message) + ".*1..67"):
        reference.top_eigenvalues(p.net, p.X, p.Y, k)


@pytest.mark.parametrize(
    "name, layer, message",
    [
        (
            "conv1d-stride2-pad1-dil2",
            0,
            "layer 0 is Conv1d(2 -> 3, kernel (3,)); Kronecker factors are defined here for Dense layers only",
        ),
        (
            "dense-over-positions",
            0,
            "layer 0 takes samples of shape (3, 4); Kronecker factors are defined for Dense layers on (N, n_in) inputs",
        ),
        ("dense-tied", 0, "layer 0's tensors are used by the layers at positions [0, 2] (tied)"),
        ("dense-no-bias", 0, "need a Dense layer with its own trainable weight and bias"),
        ("dense-frozen", 0, "layer 0 has a frozen or absent bias, or a frozen weight"),
    ],
)
@pytest.mark.parametrize("quantity", ["kfac_factors", "kfac_block"])
def test_kfac_is_refused_where_it_is_not_defined(reference, name, layer, message, quantity):
    _, net, X, Y, _ = build(BY_NAME[name], "float64")
    with pytest.raises(UnsupportedNetworkError, match=re.escape(message)):
        getattr(reference, quantity)(net, X, Y, layer)


def test_quantities_that_need_a_loss_are_refused_without_one(reference):
    _, net, X, _, _ = build(BY_NAME["conv2d-no-loss"], "float64")
    Y = np.zeros((len(X), net.output_size))
    for quantity in EVERY_QUANTITY:
        if quantity.needs_loss:
            arguments = {"X": X, "Y": Y, "v": np.zeros(net.n_params), "l": 0, "m": 0, "k": 1}
            with pytest.raises(ArgumentError, match="needs a loss, and this network has none"):
                getattr(reference, quantity.name)(net, *(arguments[a] for a in quantity.parameters))
    assert reference.output_jacobian(net, X).shape == (len(X), 3, net.n_params)


def test_ggnvp_checks_the_direction(reference):
    p = problem("mlp-4x8x3-tanh-mse-N5")
    with pytest.raises(ShapeError, match=re.escape("v has shape (66,), but this network has P = 67 parameters")):
        reference.ggnvp(p.net, p.X, p.Y, p.v[:-1])


# ---- the memory guard, before any work, on every call ---------------------------------------------------------
@pytest.mark.parametrize("quantity", EVERY_QUANTITY, ids=lambda q: q.name)
def test_every_call_is_guarded_before_any_work(reference, quantity, monkeypatch):
    p = problem("mlp-4x8x3-tanh-mse-N5")
    monkeypatch.setenv("XVAL_MAX_BYTES", "1000")
    engine = reference.__name__
    for call in quantity.calls(p):
        with pytest.raises(MemoryGuardError, match=re.escape(f"{engine}.{quantity.name}")):
            call.function(reference, staged=True)(p.net, *call.arguments)
