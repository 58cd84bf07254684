"""manual's paths for tiny MLPs on numpy (``manual._small``): one sample's Hessian and blocks, and the stacked
Hessian-vector product, against the batched paths they stand in for (forced by setting the size limits to 0) and
against torch, on every activation and loss; and which calls take them."""

import numpy as np
import pytest

import manual
from manual import _small, arrays
from xval import compare
from xval.cases import make_targets

torch_ref = pytest.importorskip("torch_ref")

TARGETS = {
    "cross_entropy": "soft",
    "nll": "soft",
    "bce_with_logits": "binary",
    "mean_bce_with_logits": "binary",
}
# Every activation in a hidden layer and at the output, every loss; identity layers inside and at the end.
NETWORKS = [
    *(([3, 5, 4, 2], [name, name, "identity"], "mse") for name in manual.ACTIVATIONS),
    *(([4, 3, 2], ["tanh", name], "mse") for name in manual.ACTIVATIONS),
    *(([3, 4, 3], ["softplus", "identity"], loss) for loss in manual.LOSSES),
    ([2, 3, 3, 3, 2], ["sigmoid", "identity", "elu", "tanh"], "cross_entropy"),
    ([3, 2], ["sigmoid"], "bce_with_logits"),
]


def _id(network):
    sizes, activations, loss = network
    return f"{'x'.join(map(str, sizes))}-{'-'.join(activations)}-{loss}"


def _problem(network, n, seed=0):
    sizes, activations, loss = network
    net = manual.Network.random(sizes, activations, loss, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((n, sizes[0]))
    Y = make_targets(TARGETS.get(loss, "regression"), rng, net, X, "float64")
    v = rng.standard_normal(net.n_params)
    return net, X, Y, v


@pytest.fixture
def batched(monkeypatch):
    """A function running a call with the size limits of ``manual._small`` at 0: the batched paths."""

    def run(call, *args):
        with monkeypatch.context() as patch:
            patch.setattr(_small, "RESULT_BYTES", 0)
            patch.setattr(_small, "STACKED_BYTES", 0)
            return call(*args)

    return run


@pytest.mark.parametrize("network", NETWORKS, ids=_id)
def test_one_sample_hessian_and_every_block_match_the_batched_path_and_torch(network, batched):
    net, X, Y, _ = _problem(network, 1)
    assert _small.one_sample(1, arrays.NUMPY, net.n_params**2, net.dtype)
    H = manual.hessian(net, X, Y)
    assert compare.relative_error(H, batched(manual.hessian, net, X, Y)) <= 1e-13
    assert compare.relative_error(H, torch_ref.hessian(net, X, Y)) <= 1e-12
    for l in range(net.n_layers):
        for m in range(net.n_layers):
            block = manual.hessian_block(net, X, Y, l, m)
            expected = batched(manual.hessian_block, net, X, Y, l, m)
            assert block.shape == expected.shape, (l, m)
            assert compare.relative_error(block, expected) <= 1e-13, (l, m)
            np.testing.assert_array_equal(block, H[net.param_slices[l], net.param_slices[m]])


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("network", NETWORKS, ids=_id)
def test_stacked_hvp_matches_the_layer_by_layer_path_and_torch(network, n, batched):
    net, X, Y, v = _problem(network, n)
    assert _small.stacked(net, arrays.NUMPY)
    Hv = manual.hvp(net, X, Y, v)
    assert compare.relative_error(Hv, batched(manual.hvp, net, X, Y, v)) <= 1e-13
    assert compare.relative_error(Hv, torch_ref.hvp(net, X, Y, v)) <= 1e-12


def test_the_paths_are_taken_by_tiny_calls_on_numpy_only():
    small = manual.Network.random([4, 8, 3], "sigmoid", "mse", seed=0)  # P = 67
    assert _small.one_sample(1, arrays.NUMPY, small.n_params**2, small.dtype)
    assert not _small.one_sample(2, arrays.NUMPY, small.n_params**2, small.dtype)  # more samples: batched
    assert not _small.one_sample(1, arrays.NUMPY, 91 * 91, small.dtype)  # 66 KB: over RESULT_BYTES
    assert _small.one_sample(1, arrays.NUMPY, 91 * 91, np.dtype("float32"))  # the same in float32: 33 KB
    assert _small.stacked(small, arrays.NUMPY)
    wide = manual.Network.random([64, 64, 3], "sigmoid", "mse", seed=0)  # P = 4,355: 4 P entries over 64 KiB
    assert not _small.stacked(wide, arrays.NUMPY)
    strict = arrays.library({"XVAL_ARRAY": "array_api_strict"})
    assert not _small.one_sample(1, strict, small.n_params**2, small.dtype)
    assert not _small.stacked(small, strict)


def test_errors_and_non_finite_results_are_reported_on_the_small_paths():
    net, X, Y, v = _problem(([3, 4, 2], ["tanh", "identity"], "mse"), 1)
    with pytest.raises(manual.LayerIndexError):
        manual.hessian_block(net, X, Y, 0, 2)
    with pytest.raises(manual.ShapeError):
        manual.hvp(net, X, Y, v[:-1])
    huge = manual.Network.from_arrays([np.eye(2, 3) * 1e200, np.eye(2)], [np.zeros(2)] * 2, "identity", "mse")
    X = np.ones((1, 3)) * 1e200
    for call in (
        lambda: manual.hessian(huge, X, np.zeros((1, 2))),
        lambda: manual.hessian_block(huge, X, np.zeros((1, 2)), 0, 0),
        lambda: manual.hvp(huge, X, np.zeros((1, 2)), np.ones(huge.n_params)),
    ):
        with pytest.raises(manual.NonFiniteError, match="overflowed float64 on finite inputs"):
            call()
