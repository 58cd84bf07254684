"""Second derivatives, case x quantity x reference engine: Hessian blocks, the full Hessian, Hessian-vector
products, the problem-6 formula, the memory guard, and the errors for bad layer indices and directions.

Each engine's blocks, full Hessian and hvp against ``manual`` are in ``test_comparisons.py`` (read from the
contract); here are the checks of ``manual`` against itself and against finite differences, the problem-6 formula,
the memory guard and the errors.
"""

import re
import tracemalloc

import numpy as np
import pytest

import manual
from manual import _writes as writes
from manual import arrays
from xval import memory
from manual._finite_difference import DEFAULT_STEPS
from manual._dense_hessian import hessian_bytes
from tests.helpers import central_difference
from xval import compare
from xval.cases import unit_direction


def layer_pairs(net):
    return [(l, m) for l in range(net.n_layers) for m in range(net.n_layers)]


def direction(net, seed=0):
    """A random unit direction ``(P,)`` in the network's dtype (the case table's)."""
    return unit_direction(net, seed)


# ---- blocks and the full Hessian (each engine against manual: tests/test_comparisons.py) ----------------------
def test_every_block_is_the_matching_part_of_the_hessian(case, rtol, record_error):
    case_name, net, X, Y = case
    H, slices = manual.hessian(net, X, Y), net.param_slices
    assert H.shape == (net.n_params, net.n_params) and H.dtype == np.float64
    for l, m in layer_pairs(net):
        block = manual.hessian_block(net, X, Y, l, m)
        assert block.shape == (net.layer_param_counts[l], net.layer_param_counts[m]) and block.dtype == np.float64
        what = f"hessian_block({l}, {m}) vs the ({l}, {m}) part of the hessian on {case_name}"
        error = compare.assert_close(block, H[slices[l], slices[m]], rtol, what)
        record_error("hessian_block vs hessian", "manual", case_name, error)


def test_hessian_is_symmetric(case, rtol, record_error):
    """``u^T (H v) = v^T (H u)`` through ``hvp``, which never forms ``H``, and each diagonal block ``(l, l)`` equals
    its transpose. (``manual`` builds an off-diagonal block ``(m, l)`` as the transpose of ``(l, m)``, so only the
    comparison with the references can catch an error there.)"""
    case_name, net, X, Y = case
    for seed in (0, 2, 4):
        u, v = direction(net, seed), direction(net, seed + 1)
        Hu, Hv = manual.hvp(net, X, Y, u), manual.hvp(net, X, Y, v)
        uHv, vHu = u.astype(np.float64) @ Hv, v.astype(np.float64) @ Hu
        # u and v are unit vectors, so an hvp within rtol moves u^T (H v) by at most rtol |H v|
        scale = np.linalg.norm(Hu) + np.linalg.norm(Hv)
        error = abs(uHv - vHu) / scale if scale > 0 else 0.0
        assert error <= rtol, (
            f"u^T H v = {uHv:.17g} != v^T H u = {vHu:.17g} on {case_name} (directions {seed}, {seed + 1}): "
            f"|difference| / (|H u| + |H v|) = {error:.3g} > tolerance {rtol:.1g}"
        )
        record_error("u^T hvp(v) vs v^T hvp(u)", "manual", case_name, error)
    for l in range(net.n_layers):
        block = manual.hessian_block(net, X, Y, l, l)
        error = compare.assert_close(block, block.T, rtol, f"hessian_block({l}, {l}) vs its transpose on {case_name}")
        record_error("diagonal block symmetry", "manual", case_name, error)


# ---- Hessian-vector products ---------------------------------------------------------------------
def test_hvp_is_hessian_times_v(case, rtol, record_error):
    case_name, net, X, Y = case
    v = direction(net)
    Hv = manual.hvp(net, X, Y, v)
    assert Hv.shape == (net.n_params,) and Hv.dtype == np.float64
    error = compare.assert_close(
        Hv, manual.hessian(net, X, Y) @ v.astype(np.float64), rtol, f"hvp vs H @ v on {case_name}"
    )
    record_error("hvp vs H @ v", "manual", case_name, error)


def test_hvp_matches_finite_differences_of_the_gradient(case, dtype, record_error):
    """``(grad(theta + eps v) - grad(theta - eps v)) / (2 eps)``: an oracle built only on ``manual.gradient``."""
    case_name, net, X, Y = case
    v = direction(net)

    def gradient(theta):
        return manual.gradient(net.from_vector(theta), X, Y)

    fd = central_difference(gradient, net.to_vector(), v, DEFAULT_STEPS[dtype])
    tol = compare.FINITE_DIFFERENCE_TOLERANCES[dtype]
    error = compare.assert_close(manual.hvp(net, X, Y, v), fd, tol, f"hvp vs finite differences on {case_name}")
    record_error("hvp vs finite differences", "fd", case_name, error)


# ---- problem 6, in the problem set's notation -------------------------------------------------------
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def problem6_block(net, X, Y, layer, printed=False):
    """The weight-weight part of the same-layer block of ``layer``, entry by entry, in the problem's notation.

    Unit ``j`` of the layer has input ``a_j = sum_i w_ji z_i + b_j`` and output ``z_j = sigma(a_j)``;
    ``delta_j = dE_n/dz_j`` and ``delta_jj' = d2E_n/dz_j dz_j'`` (derivatives with respect to the unit *outputs*),
    obtained by their own backward recursion over the later layers. The correct formula is

        d2E_n / dw_ji dw_j'i' = z_i z_i' ( z'_j z'_j' delta_jj' + I_jj' z''_j delta_j ),

    with ``z'_j = sigma'(a_j) = z_j (1 - z_j)`` and ``z''_j = sigma''(a_j) = z'_j (1 - 2 z_j)``. With
    ``printed=True`` it evaluates the formula as the problem set prints it instead:
    ``z_i' z_i z'_j' (delta_jj' z_j + I_jj' delta_j)``. ``E`` is the batch mean, so the result is averaged over samples.
    Needs a sigmoid network with the mse loss (all layers sigmoid).
    """
    W = [np.asarray(w, dtype=np.float64) for w in net.weights]
    b = [np.asarray(b_, dtype=np.float64) for b_ in net.biases]
    n_out, n_in = W[layer].shape
    block = np.zeros((n_out, n_in, n_out, n_in))
    for x, y in zip(np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)):
        z = [x]  # unit outputs, layer by layer
        for w, bias in zip(W, b):
            z.append(sigmoid(w @ z[-1] + bias))
        # delta_j and delta_jj' at the output units of the last layer: the mse loss 0.5 * sum_j (z_j - y_j)^2.
        k_out = len(z[-1])
        d1 = [z[-1][j] - y[j] for j in range(k_out)]
        d2 = [[1.0 if j == jj else 0.0 for jj in range(k_out)] for j in range(k_out)]
        # ... carried back unit by unit to the outputs of `layer`: z_j feeds unit k of the next layer through w_kj.
        for later in range(len(W) - 1, layer, -1):
            zk = z[later + 1]
            dz = [zk[k] * (1 - zk[k]) for k in range(len(zk))]
            ddz = [dz[k] * (1 - 2 * zk[k]) for k in range(len(zk))]
            w = W[later]
            width = w.shape[1]
            new_d1 = [sum(w[k, j] * dz[k] * d1[k] for k in range(len(zk))) for j in range(width)]
            new_d2 = [
                [
                    sum(
                        w[k, j] * dz[k] * d2[k][kk] * dz[kk] * w[kk, jj]
                        for k in range(len(zk))
                        for kk in range(len(zk))
                    )
                    + sum(w[k, j] * w[k, jj] * ddz[k] * d1[k] for k in range(len(zk)))
                    for jj in range(width)
                ]
                for j in range(width)
            ]
            d1, d2 = new_d1, new_d2
        zin, zout = z[layer], z[layer + 1]
        for j in range(n_out):
            for i in range(n_in):
                for jj in range(n_out):
                    for ii in range(n_in):
                        identity = 1.0 if j == jj else 0.0
                        dj, djj = zout[j] * (1 - zout[j]), zout[jj] * (1 - zout[jj])
                        if printed:
                            value = zin[ii] * zin[i] * djj * (d2[j][jj] * zout[j] + identity * d1[j])
                        else:
                            value = (
                                zin[i] * zin[ii] * (dj * djj * d2[j][jj] + identity * dj * (1 - 2 * zout[j]) * d1[j])
                            )
                        block[j, i, jj, ii] += value / len(X)
    return block.reshape(n_out * n_in, n_out * n_in)


def problem6_case(dtype):
    net = manual.Network.random([3, 4, 3, 2], ["sigmoid"] * 3, "mse", seed=6).astype(dtype)
    rng = np.random.default_rng(7)
    return net, rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal((2, 2)).astype(dtype)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_problem6_same_layer_formula(layer, engine, dtype, rtol, record_error):
    name, module = engine
    net, X, Y = problem6_case(dtype)
    weights = net.weights[layer].size
    theirs = module.hessian_block(net, X, Y, layer, layer)[:weights, :weights]
    ours = problem6_block(net, X, Y, layer)
    error = compare.assert_close(ours, theirs, rtol, f"problem-6 formula vs {name}, layer {layer}")
    record_error("problem-6 formula", name, f"sigmoid 3x4x3x2 layer {layer}", error)
    compare.assert_close(manual.hessian_block(net, X, Y, layer, layer)[:weights, :weights], theirs, rtol, "manual")
    # The formula as printed disagrees with autodiff.
    assert compare.relative_error(problem6_block(net, X, Y, layer, printed=True), theirs) > 0.05


# ---- the memory guard --------------------------------------------------------------------------
def small_problem(dtype="float64"):
    net = manual.Network.random([4, 8, 3], "tanh", "mse", seed=0).astype(dtype)
    rng = np.random.default_rng(0)
    return net, rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)


def test_memory_guard_refuses_a_hessian_over_the_cap(any_engine, monkeypatch):
    _, module = any_engine
    net, X, Y = small_problem()
    monkeypatch.setenv("XVAL_MAX_BYTES", "1000")
    P = net.n_params  # 67
    with pytest.raises(manual.MemoryGuardError) as info:
        module.hessian(net, X, Y)
    message = str(info.value)
    assert (
        f"{P} x {P}" in message
        and f"{P * P * 8}" in message
        and "1000 bytes" in message
        and "XVAL_MAX_BYTES" in message
    )
    rows, cols = net.layer_param_counts
    with pytest.raises(manual.MemoryGuardError, match=rf"{rows} x {cols} float64 array|{rows} x {cols} array"):
        module.hessian_block(net, X, Y, 0, 1)


@pytest.mark.parametrize("n", [5, 1])
def test_memory_guard_allows_exactly_what_fits(monkeypatch, n):
    net, X, Y = small_problem()
    X, Y = X[:n], Y[:n]
    output, workspace = hessian_bytes(net, n, arrays.library().name)
    assert output == net.n_params**2 * 8
    monkeypatch.setenv("XVAL_MAX_BYTES", str(output + workspace))
    assert manual.hessian(net, X, Y).shape == (net.n_params, net.n_params)
    monkeypatch.setenv("XVAL_MAX_BYTES", str(output + workspace - 1))
    assert not memory.fits(output + workspace)
    with pytest.raises(manual.MemoryGuardError, match=f"needs {output + workspace} bytes"):
        manual.hessian(net, X, Y)


@pytest.mark.parametrize("threads", [1, 3])
def test_one_sample_hessian_by_rows_is_the_strips_result_bit_for_bit(monkeypatch, threads):
    """One sample on numpy: the Hessian written row band by row band from every strip's ``M`` (the columns left of the
    diagonal block as the same products as the strips above it) equals, bit for bit, the strips and their transposed
    copies, split over threads or not. More samples, another library, or ``M`` beyond the scratch budget take the
    strips."""
    from manual._dense_hessian import _hessian_values, hessian_strips
    from manual._prepared import prepare

    monkeypatch.setattr(writes, "PARALLEL_BYTES", 0)
    monkeypatch.setenv("XVAL_ARRAY", "numpy")  # the rows' path is numpy's (also on a GPU run)
    monkeypatch.setenv("XVAL_DEVICE", "cpu")
    rng = np.random.default_rng(3)
    for sizes, activation in [([6, 5, 7, 4], "softplus"), ([3, 5, 1, 4, 2], "tanh"), ([1, 9, 1], "sigmoid")]:
        net = manual.Network.random(sizes, activation, "mse", seed=1)
        model, X, Y = prepare(net).data(rng.standard_normal((1, sizes[0])), rng.standard_normal((1, sizes[-1])))
        strips = hessian_strips(net, 1)
        with arrays.pinned_threads(threads):
            by_rows = _hessian_values(model, X, Y, strips, by_rows=True)
        by_strips = _hessian_values(model, X, Y, strips, by_rows=False)
        assert np.array_equal(by_rows, by_strips), sizes
        assert not np.array_equal(by_rows, np.zeros_like(by_rows))


def test_the_one_sample_hessian_goes_by_rows_where_that_pays():
    """By rows: one sample on numpy, enough entries left of the diagonal per pair of layers, every strip's ``M`` within
    the scratch budget; else strips and copies."""
    from manual._dense_hessian import one_sample_rows

    def net(sizes):
        return manual.Network.random(sizes, "tanh", "mse", seed=0)

    assert one_sample_rows(net([24] * 6), 1, "numpy") and one_sample_rows(net([16] * 4), 1, "numpy")
    assert not one_sample_rows(net([24] * 6), 2, "numpy") and not one_sample_rows(net([24] * 6), 1, "torch")
    assert not one_sample_rows(net([14] * 4), 1, "numpy")  # 44K entries a pair of layers
    assert not one_sample_rows(net([8] * 30), 1, "numpy")  # 29 layers: 5K entries a pair
    assert not one_sample_rows(net([64, 64]), 1, "numpy")  # one layer: nothing left of the diagonal
    assert not one_sample_rows(net([1, 3000, 1]), 1, "numpy")  # M_0 alone: 3000 x 9001 entries, 216 MB


def test_memory_guard_refuses_a_huge_hessian_without_allocating(monkeypatch):
    monkeypatch.delenv("XVAL_MAX_BYTES", raising=False)
    net = manual.Network.random([2000, 1000, 10], "tanh", "mse", seed=0)  # P = 2,011,010: H would be 32 TB
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((1, 2000)), rng.standard_normal((1, 10))
    P = net.n_params
    assert not memory.fits(P * P * 8)
    tracemalloc.start()
    try:
        with pytest.raises(manual.MemoryGuardError) as info:
            manual.hessian(net, X, Y)
        with pytest.raises(manual.MemoryGuardError, match=f"{net.layer_param_counts[0] ** 2 * 8} bytes for the result"):
            manual.hessian_block(net, X, Y, 0, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    where = "free on the device" if arrays.library().on_gpu else "of memory available"  # the limit the guard read
    assert f"{P * P * 8} bytes for the result" in str(info.value) and where in str(info.value)
    assert peak < 2**20, f"the guard let {peak} bytes be allocated before refusing"


def test_available_memory_is_read():
    available = memory.available_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize(
    "available, cap, allowed, reason",
    [
        (10**9, "12345", 12345, "12345 bytes (12.1 KiB) allowed by XVAL_MAX_BYTES"),
        (1000, "12345", 1000, "1000 bytes (1000 bytes) of memory available"),
        (2048, None, 2048, "2048 bytes (2.0 KiB) of memory available"),
        (None, "12345", 12345, "12345 bytes (12.1 KiB) allowed by XVAL_MAX_BYTES"),
        (None, None, None, "no known limit"),
    ],
    ids=["cap-smaller", "available-smaller", "no-cap", "available-unknown", "neither-known"],
)
def test_memory_limit_is_the_smaller_of_available_and_cap(available, cap, allowed, reason, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: available)
    env = {} if cap is None else {"XVAL_MAX_BYTES": cap}
    assert memory.limit(env) == (allowed, reason)
    if allowed is None:
        assert memory.fits(2**62, env), "with no known limit everything fits"
        assert memory.check(2**62, "a huge array", env=env) == 2**62
    else:
        assert memory.fits(allowed, env) and not memory.fits(allowed + 1, env)
        with pytest.raises(manual.MemoryGuardError, match=re.escape(f"only {reason}")):
            memory.check(allowed + 1, "an array", env=env)


# ---- bad layer indices and directions -----------------------------------------------------------
@pytest.mark.parametrize(
    "l, m, message",
    [
        (2, 0, "l = 2 is out of range: this network has 2 layers, valid l are 0..1"),
        (0, -1, "m = -1 is out of range: this network has 2 layers, valid m are 0..1"),
        (0.5, 0, "l = 0.5 is not a layer index; pass an integer in 0..1"),
        (0, "1", "m = '1' is not a layer index; pass an integer in 0..1"),
    ],
)
def test_bad_layer_index(any_engine, l, m, message):
    _, module = any_engine
    net, X, Y = small_problem()
    with pytest.raises(manual.LayerIndexError, match=re.escape(message)):
        module.hessian_block(net, X, Y, l, m)


@pytest.mark.parametrize("shape", [(68,), (66,), (67, 1), ()])
def test_direction_of_the_wrong_shape(any_engine, shape):
    _, module = any_engine
    net, X, Y = small_problem()
    with pytest.raises(
        manual.ShapeError,
        match=re.escape(f"v has shape {shape}, but this network has P = 67 parameters, so v must have shape (67,)"),
    ):
        module.hvp(net, X, Y, np.ones(shape))
