"""manual's large-output write paths, forced on small problems and checked against torch.func: per-sample gradients
written sample by sample (``manual._dense_first_order.ROW_ORDER_BYTES``), and Hessian strips cut into one-unit chunks
(``manual._dense_hessian.WORKSPACE_BYTES``), which the comparison suite's small cases never reach."""

import importlib

import numpy as np
import pytest

import manual
from manual import _writes as writes
from xval import compare

torch_ref = pytest.importorskip("torch_ref")
backprop = importlib.import_module("manual._dense_first_order")
hessian_module = importlib.import_module("manual._dense_hessian")
small = importlib.import_module("manual._small")


def problem(activation, loss, n):
    net = manual.Network.random([3, 5, 4, 2], activations=activation, loss=loss, seed=7)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((n, 3))
    Y = rng.dirichlet(np.ones(2), size=n) if loss == "cross_entropy" else rng.standard_normal((n, 2))
    return net, X, Y


@pytest.mark.parametrize("n", [1, 5])
def test_per_sample_gradients_written_sample_by_sample_match_torch(monkeypatch, n):
    net, X, Y = problem("tanh", "cross_entropy", n)
    monkeypatch.setattr(backprop, "ROW_ORDER_BYTES", 0)
    ours = manual.per_sample_gradients(net, X, Y)
    assert compare.relative_error(ours, torch_ref.per_sample_gradients(net, X, Y)) <= 1e-12


@pytest.mark.parametrize("threads", [1, 3])
def test_per_sample_gradients_of_wide_layers_written_sample_by_sample_match_torch(monkeypatch, threads):
    """Rows of ``arrays.EINSUM_ROW`` entries and more go through broadcast products with a one-row ufunc buffer, the
    narrower ones through einsum, in one sample-by-sample pass split over the threads."""
    arrays = importlib.import_module("manual.arrays")
    width = arrays.EINSUM_ROW + 3
    net = manual.Network.random([width, width, 6, 2], activations="tanh", loss="mse", seed=7)
    rng = np.random.default_rng(11)
    X, Y = rng.standard_normal((5, width)), rng.standard_normal((5, 2))
    monkeypatch.setattr(backprop, "ROW_ORDER_BYTES", 0)
    monkeypatch.setattr(writes, "PARALLEL_BYTES", 0)
    with arrays.pinned_threads(threads):
        ours = manual.per_sample_gradients(net, X, Y)
    assert compare.relative_error(ours, torch_ref.per_sample_gradients(net, X, Y)) <= 1e-12
    for n in range(5):  # each row is that sample's gradient
        np.testing.assert_allclose(ours[n], manual.gradient(net, X[n : n + 1], Y[n : n + 1]), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_hessian_strips_in_one_unit_chunks_match_torch(monkeypatch, activation, n):
    net, X, Y = problem(activation, "mse", n)
    monkeypatch.setattr(hessian_module, "WORKSPACE_BYTES", 0)
    monkeypatch.setattr(small, "RESULT_BYTES", 0)  # one sample of this tiny network: the strips, not manual._small
    assert hessian_module.strip(net, 0, (0, 1, 2), n).chunk == 1
    assert compare.relative_error(manual.hessian(net, X, Y), torch_ref.hessian(net, X, Y)) <= 1e-12
    for l, m in [(0, 2), (2, 0), (1, 1)]:
        expected = torch_ref.hessian_block(net, X, Y, l, m)
        assert compare.relative_error(manual.hessian_block(net, X, Y, l, m), expected) <= 1e-12
