"""Problem 5: a stack of identity-activation layers equals one linear layer (``manual.collapse_linear``), in
``manual`` and in every selected reference engine."""

import numpy as np
import pytest

import manual
from xval.cases import case_id, make
from xval.compare import assert_close

STACKS = [  # cases in the format of xval/cases.py, all layers linear
    dict(sizes=[4, 8, 3], activations="identity", loss="mse", n=11),
    dict(sizes=[5, 7, 2, 6, 4], activations="identity", loss="mse", n=11),  # a width-2 bottleneck in the middle
    dict(sizes=[3, 9, 9, 9, 9, 3], activations="identity", loss="cross_entropy", targets="onehot", n=11),
    dict(sizes=[6, 1, 6], activations="identity", loss="mse", n=11),  # width 1: the collapsed map has rank 1
]


@pytest.mark.parametrize("stack", STACKS, ids=case_id)
def test_collapsed_network_has_the_same_outputs_and_loss(stack):
    net, X, Y = make(stack)
    one = manual.collapse_linear(net)
    assert one.sizes == [net.sizes[0], net.sizes[-1]] and one.activations == ("identity",) and one.loss == net.loss
    assert_close(manual.forward(one, X), manual.forward(net, X), 1e-13, "outputs")
    assert manual.loss(one, X, Y) == pytest.approx(manual.loss(net, X, Y), rel=1e-13)
    # the explicit formula: W = W_{L-1} ... W_0 and b = the network's output at x = 0
    product = np.linalg.multi_dot(net.weights[::-1]) if net.n_layers > 1 else net.weights[0]
    np.testing.assert_allclose(one.weights[0], product, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(
        one.biases[0], manual.forward(net, np.zeros((1, net.sizes[0])))[0], rtol=1e-13, atol=1e-14
    )


@pytest.mark.parametrize("stack", STACKS, ids=case_id)
def test_reference_computes_the_same_outputs_and_loss_for_the_collapsed_network(
    stack, engine, dtype, rtol, record_error
):
    """The reference's own ``forward`` and ``loss`` of the collapsed network against its values for the original."""
    name, module = engine
    net, X, Y = make(stack, dtype)
    one = manual.collapse_linear(net)
    what = f"{name} on the collapsed {case_id(stack)} vs the original"
    error = assert_close(module.forward(one, X), module.forward(net, X), rtol, f"forward: {what}")
    record_error("forward of the collapsed network", name, case_id(stack), error)
    error = assert_close(module.loss(one, X, Y), module.loss(net, X, Y), rtol, f"loss: {what}")
    record_error("loss of the collapsed network", name, case_id(stack), error)


@pytest.mark.parametrize("stack", STACKS, ids=case_id)
def test_collapsed_rank_is_at_most_the_narrowest_width(stack):
    net, _, _ = make(stack)
    W = manual.collapse_linear(net).weights[0]
    rank = np.linalg.matrix_rank(W)
    assert rank <= min(net.sizes)
    # random weights reach the bound: rank = the narrowest width exactly
    assert rank == min(net.sizes)


def test_a_one_layer_network_collapses_to_itself():
    net = manual.Network.random([3, 2], "identity", "mse", seed=4)
    one = manual.collapse_linear(net)
    np.testing.assert_array_equal(one.to_vector(), net.to_vector())


@pytest.mark.parametrize("activations", [["tanh", "identity"], ["identity", "relu"], ["softplus", "identity"]])
def test_non_linear_activations_are_refused_with_the_layer_named(activations):
    net = manual.Network.random([3, 4, 2], activations, "mse", seed=0)
    bad = [f"layer {layer} is {name!r}" for layer, name in enumerate(activations) if name != "identity"]
    with pytest.raises(manual.NotLinearError, match=bad[0]) as info:
        manual.collapse_linear(net)
    assert isinstance(info.value, manual.XvalError) and "activations='identity'" in str(info.value)
