"""The curvature quantities' identities, in every engine that has them: KFAC is the GGN block at N = 1, ggnvp is
G v, the GGN's diagonal is ggn_diagonal, the trace is the diagonal's sum, the GGN is the Hessian for a network linear
in its parameters with a convex loss, the exact Fisher of cross-entropy is the GGN, and the Hessian block minus the
GGN block is the activations' second-derivative term of docs/hessian.md, computed here from its own recursion."""

import numpy as np
import pytest

from tests.helpers import all_engine_names, load_engine
from xval import Network, cases, compare, contract

CURVATURE = (
    "ggn",
    "ggnvp",
    "ggn_block",
    "ggn_diagonal",
    "hessian_diagonal",
    "hessian_trace",
    "kfac_factors",
    "kfac_block",
    "empirical_fisher",
    "output_jacobian",
    "top_eigenvalues",
)


def engine_with(name, quantities):
    engine = load_engine(name).module
    missing = [q for q in quantities if not callable(getattr(engine, q, None))]
    if missing:
        pytest.skip(f"engine {name!r} does not implement {missing}")
    return engine


def mlp_problem(sizes, activation, loss, n, seed=0):
    net = Network.random(sizes, activation, loss, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((n, sizes[0]))
    Y = (
        np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
        if loss == "cross_entropy"
        else rng.standard_normal((n, sizes[-1]))
    )
    return net, X, Y


PROBLEMS = [([3, 5, 4], "tanh", "mse"), ([4, 6, 5, 3], "sigmoid", "cross_entropy"), ([3, 4, 4, 2], "softplus", "mse")]


@pytest.mark.parametrize("engine_name", all_engine_names())
@pytest.mark.parametrize("sizes, activation, loss", PROBLEMS)
def test_kfac_block_is_the_ggn_block_for_one_sample(engine_name, sizes, activation, loss):
    engine = engine_with(engine_name, ("kfac_block", "ggn_block"))
    net, X, Y = mlp_problem(sizes, activation, loss, 1)
    for l in range(net.n_layers):
        error = compare.relative_error(engine.kfac_block(net, X, Y, l), engine.ggn_block(net, X, Y, l, l))
        assert error < 1e-12, f"layer {l}: kfac_block differs from ggn_block(l, l) at N = 1 by {error:.2e}"


@pytest.mark.parametrize("engine_name", all_engine_names())
@pytest.mark.parametrize("sizes, activation, loss", PROBLEMS)
def test_ggn_identities(engine_name, sizes, activation, loss):
    engine = engine_with(engine_name, ("ggn", "ggnvp", "ggn_diagonal", "ggn_block"))
    net, X, Y = mlp_problem(sizes, activation, loss, 5)
    G = engine.ggn(net, X, Y)
    v = np.random.default_rng(3).standard_normal(net.n_params)
    assert compare.relative_error(G, G.T) < 1e-14
    assert compare.relative_error(engine.ggnvp(net, X, Y, v), G @ v) < 1e-12
    assert compare.relative_error(engine.ggn_diagonal(net, X, Y), np.diag(G)) < 1e-12
    slices = net.param_slices
    assert compare.relative_error(engine.ggn_block(net, X, Y, 0, net.n_layers - 1), G[slices[0], slices[-1]]) < 1e-12
    assert np.linalg.eigvalsh(G)[0] > -1e-12 * np.abs(G).max(), "the GGN of a convex loss is positive semi-definite"


@pytest.mark.parametrize("engine_name", all_engine_names())
@pytest.mark.parametrize("sizes, activation, loss", PROBLEMS)
def test_trace_and_eigenvalues_of_the_hessian(engine_name, sizes, activation, loss):
    engine = engine_with(engine_name, ("hessian_trace", "hessian_diagonal", "top_eigenvalues"))
    net, X, Y = mlp_problem(sizes, activation, loss, 4)
    H = load_engine("manual").module.hessian(net, X, Y)
    diagonal = engine.hessian_diagonal(net, X, Y)
    assert compare.relative_error(diagonal, np.diag(H)) < 1e-12
    assert abs(engine.hessian_trace(net, X, Y) - diagonal.sum()) <= 1e-12 * np.abs(diagonal).sum()
    top = engine.top_eigenvalues(net, X, Y, 3)
    assert np.all(np.diff(top) <= 0), "descending"
    assert compare.relative_error(top, np.linalg.eigvalsh(H)[::-1][:3]) < 1e-10


@pytest.mark.parametrize("engine_name", all_engine_names())
def test_the_ggn_is_the_hessian_of_a_network_linear_in_its_parameters(engine_name):
    engine = engine_with(engine_name, ("ggn", "hessian"))
    net, X, Y = mlp_problem([4, 3], "identity", "mse", 6)
    assert compare.relative_error(engine.ggn(net, X, Y), engine.hessian(net, X, Y)) < 1e-13


@pytest.mark.parametrize("engine_name", all_engine_names())
def test_the_exact_fisher_of_cross_entropy_is_the_ggn(engine_name):
    """sum over the model's own classes c of p_c g_c g_c^T (g_c the gradient with target c), summed exactly."""
    engine = engine_with(engine_name, ("ggn", "per_sample_gradients", "forward"))
    net, X, _ = mlp_problem([4, 6, 3], "tanh", "cross_entropy", 5)
    logits = engine.forward(net, X)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    fisher = np.zeros((net.n_params, net.n_params))
    for c in range(3):
        g = engine.per_sample_gradients(net, X, np.eye(3)[np.full(len(X), c)])  # (N, P)
        fisher += (g * p[:, c : c + 1]).T @ g
    fisher /= len(X)
    assert compare.relative_error(fisher, engine.ggn(net, X, np.eye(3)[[0, 1, 2, 0, 1]])) < 1e-12


def _residual_blocks(net, X, Y):
    """``(1/N) sum_n R_l (kron) [z_l; 1][z_l; 1]^T`` per layer, in the contract's order, from the recursion of
    docs/hessian.md: ``R_last = diag(f''(a) g)``, ``R_l = D_l W^T R_{l+1} W D_l + diag(f_l''(a_l) (W^T delta))``
    (the pre-activation Hessian without its loss term), written here for tanh hidden layers and mse."""
    W, b = list(net.weights), list(net.biases)
    z, a = [X], []
    for w, c, name in zip(W, b, net.activations):
        a.append(z[-1] @ w.T + c)
        z.append(np.tanh(a[-1]) if name == "tanh" else a[-1])
    slope = [1 - np.tanh(x) ** 2 if name == "tanh" else np.ones_like(x) for x, name in zip(a, net.activations)]
    curve = [
        -2 * np.tanh(x) * s if name == "tanh" else np.zeros_like(x) for x, s, name in zip(a, slope, net.activations)
    ]
    last = len(W) - 1
    delta = [None] * len(W)
    delta[last] = slope[last] * (z[-1] - Y)
    for l in range(last - 1, -1, -1):
        delta[l] = slope[l] * (delta[l + 1] @ W[l + 1])
    R = [None] * len(W)
    R[last] = np.stack([np.diag(v) for v in curve[last] * (z[-1] - Y)])
    for l in range(last - 1, -1, -1):
        inner = np.einsum("ji,njk,kl->nil", W[l + 1], R[l + 1], W[l + 1])
        R[l] = slope[l][:, :, None] * inner * slope[l][:, None, :] + np.stack(
            [np.diag(v) for v in curve[l] * (delta[l + 1] @ W[l + 1])]
        )
    blocks = []
    for l in range(len(W)):
        n_out, n_in = W[l].shape
        zt = np.concatenate([z[l], np.ones((len(X), 1))], axis=1)
        full = np.einsum("npj,nq,ni->pqji", R[l], zt, zt) / len(X)  # rows (p, q), columns (j, i), q, i over [z; 1]
        order = [(p, q) for p in range(n_out) for q in range(n_in)] + [(p, n_in) for p in range(n_out)]
        blocks.append(np.array([[full[p, q, j, i] for (j, i) in order] for (p, q) in order]))
    return blocks


@pytest.mark.parametrize("engine_name", all_engine_names())
def test_hessian_minus_ggn_is_the_second_derivative_term_of_the_activations(engine_name):
    engine = engine_with(engine_name, ("hessian_block", "ggn_block"))
    net, X, Y = mlp_problem([3, 5, 4, 2], "tanh", "mse", 4)
    for l, expected in enumerate(_residual_blocks(net, X, Y)):
        H = engine.hessian_block(net, X, Y, l, l)
        difference = H - engine.ggn_block(net, X, Y, l, l)
        scale = np.abs(H).max()  # the last layer's term is 0 (identity output): judged at the Hessian's scale
        assert np.abs(difference - expected).max() <= 1e-12 * scale, f"layer {l}"
    assert np.abs(_residual_blocks(net, X, Y)[0]).max() > 1e-3, "the term is not negligible here"


def test_the_diagonals_of_a_300000_parameter_network_never_form_a_p_by_p_array(monkeypatch):
    import manual

    net = Network.random([500, 400, 300, 100, 10], "tanh", "mse", seed=0)
    assert net.n_params > 300_000
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 500)), rng.standard_normal((4, 10))
    monkeypatch.setenv("XVAL_MAX_BYTES", str(2 * 10**9))  # P x P float64 would be 740 GB
    for name in ("hessian_diagonal", "ggn_diagonal"):
        diagonal = getattr(manual, name)(net, X, Y)
        assert diagonal.shape == (net.n_params,) and np.all(np.isfinite(diagonal))
    assert manual.ggn_diagonal(net, X, Y).min() >= 0


@pytest.mark.parametrize(
    "case", [c for c in cases.LAYER_CASES if "conv" in cases.case_id(c)], ids=lambda c: cases.case_id(c)[:40]
)
def test_the_hessian_diagonal_by_columns_is_the_diagonal_of_the_backpropagated_hessian(case, monkeypatch):
    """manual's Hessian diagonal of a convolutional network backpropagates G's parts as columns, a chunk at a time
    (``manual._sequence.by_columns``): the same diagonal as from G backpropagated whole, one column or seven at a
    time."""
    import manual
    from manual import _sequence

    net, X, Y = cases.make(case)
    if not _sequence.by_columns(net):
        pytest.skip("this case keeps G whole (a log-softmax's second-order term is dense)")
    diagonals = {}
    with monkeypatch.context() as patch:
        for chunk in (1, 7):
            patch.setattr(_sequence, "chunk_columns", lambda net, n, chunk=chunk: chunk)
            diagonals[chunk] = manual.hessian_diagonal(net, X, Y)
        patch.setattr(_sequence, "by_columns", lambda net: False)
        whole = manual.hessian_diagonal(net, X, Y)
    scale = np.abs(whole).max()
    assert scale > 0
    for chunk, diagonal in diagonals.items():
        np.testing.assert_allclose(diagonal, whole, rtol=0, atol=1e-13 * scale, err_msg=f"{chunk} columns a chunk")


def test_the_hessian_diagonal_of_a_convolutional_network_holds_a_few_times_p_n_k_entries():
    """The benchmarks' target for the diagonals, 4 P N n_L entries of working memory, held by the columns where G
    backpropagated whole (this network's activations: 16 channels of 8 x 8, 1,024^2 entries at each step) would hold
    over 10 times it."""
    import math
    import tracemalloc

    import manual
    from benchmarks import networks

    net = networks.conv(16)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((2, *net.input_shape)), rng.standard_normal((2, net.output_size))
    bound = 4 * net.n_params * X.shape[0] * net.output_size * 8
    whole = X.shape[0] * sum(math.prod(shape) ** 2 for shape in net.shapes[:-1]) * 8
    assert whole > 10 * bound
    manual.hessian_diagonal(net, X, Y)
    tracemalloc.start()
    try:
        manual.hessian_diagonal(net, X, Y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= bound, f"{peak / 2**20:.1f} MiB against {bound / 2**20:.1f} MiB"


def test_every_curvature_quantity_is_in_the_contract():
    assert set(CURVATURE) <= set(contract.QUANTITIES) | set(contract.PENDING)


def test_a_planted_factor_two_in_one_curvature_quantity_fails_check_naming_it(tmp_path):
    from xval import check

    source = """
import manual

ggn_diagonal = manual.ggn_diagonal
def hessian_diagonal(net, X, Y):
    return 2.0 * manual.hessian_diagonal(net, X, Y)
"""
    path = tmp_path / "planted.py"
    path.write_text(source)
    some = [cases.case_id(case) for case in cases.CASES[:3]]
    report = check.run_check(
        str(path), against=["torch", "jax"], cases=some, quantities=["ggn_diagonal", "hessian_diagonal"]
    )
    failed = {row.quantity for row in report.rows if row.status == "fail"}
    assert failed == {"hessian_diagonal"} and not report.ok
