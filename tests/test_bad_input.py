"""Bad input: each mistake gets its own specific error that says what was wrong and how to fix it."""
import re

import numpy as np
import pytest

import manual
from tests.conftest import load_engine, reference_engine_names

ALL_ENGINES = ["manual"] + reference_engine_names()


def small_net(loss="mse"):
    return manual.Network.random([3, 4, 2], "tanh", loss, seed=0)


def data(n=5, n_in=3, n_out=2):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n_in)), rng.standard_normal((n, n_out))


def test_weights_that_do_not_chain_name_the_layer_and_both_shapes():
    weights = [np.ones((4, 3)), np.ones((2, 5))]
    with pytest.raises(manual.ShapeError, match=re.escape("layer 1: W_1 has shape (2, 5) but W_0 has shape (4, 3); W_1 needs 4 columns")):
        manual.Network.from_arrays(weights, [np.zeros(4), np.zeros(2)], ["tanh", "identity"], "mse")


def test_bias_of_the_wrong_length_names_the_layer():
    with pytest.raises(manual.ShapeError, match=re.escape("layer 0: b_0 has shape (3,) but W_0 has shape (4, 3)")):
        manual.Network.from_arrays([np.ones((4, 3))], [np.zeros(3)], ["identity"], "mse")


def test_one_activation_per_layer():
    with pytest.raises(manual.ShapeError, match="got 1 activation names for 2 layers"):
        manual.Network.from_arrays([np.ones((4, 3)), np.ones((2, 4))], [np.zeros(4), np.zeros(2)], ["tanh"], "mse")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad):
    w = np.ones((4, 3))
    w[2, 1] = bad
    with pytest.raises(manual.NonFiniteError, match=re.escape("W_0 holds 1 non-finite value(s), the first at index (2, 1)")):
        manual.Network.from_arrays([w], [np.zeros(4)], ["identity"], "mse")


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(manual.UnknownNameError, match="unknown activation 'gelu'; valid activations are: identity, relu, sigmoid, softplus, tanh"):
        manual.Network.random([3, 4, 2], "gelu", "mse")


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(manual.UnknownNameError, match="unknown loss 'hinge'; valid losses are: cross_entropy, mse"):
        manual.Network.random([3, 4, 2], "tanh", "hinge")


def test_unknown_engine_lists_the_valid_ones():
    from xval import engines

    with pytest.raises(manual.UnknownNameError, match="unknown engine 'tensorflow'; valid engines are: jax, manual, torch"):
        engines.load("tensorflow")


def test_missing_engine_package_says_what_to_install(monkeypatch):
    import builtins

    from xval import engines

    real_import = builtins.__import__

    def no_jax(name, *args, **kwargs):
        if name == "jax" or name.startswith("jax."):
            raise ImportError("No module named 'jax'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jax)
    monkeypatch.setattr("importlib.import_module", lambda name: no_jax(name))
    with pytest.raises(manual.EngineUnavailableError, match="engine 'jax' needs the package 'jax'.*run: pip install jax"):
        engines.load("jax")


def test_network_copies_its_arrays():
    w, b = np.ones((2, 3)), np.zeros(2)
    net = manual.Network.from_arrays([w], [b], ["identity"], "mse")
    w[0, 0] = 99.0
    assert net.weights[0][0, 0] == 1.0
    with pytest.raises(ValueError):
        net.weights[0][0, 0] = 5.0


def test_parameter_vector_round_trip_in_contract_order():
    net = small_net()
    theta = net.to_vector()
    w0, b0, w1, b1 = net.weights[0], net.biases[0], net.weights[1], net.biases[1]
    np.testing.assert_array_equal(theta, np.concatenate([w0.ravel(), b0, w1.ravel(), b1]))
    assert [s.stop - s.start for s in net.param_slices] == net.layer_param_counts == [16, 10]
    np.testing.assert_array_equal(net.from_vector(theta * 2).to_vector(), theta * 2)
    with pytest.raises(manual.ShapeError, match=r"parameter vector has shape \(5,\), but this network has P = 26"):
        net.from_vector(np.zeros(5))


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
class TestDataErrors:
    """The same data errors from every engine (they share one validation)."""

    def call(self, engine_name, net, X, Y):
        return load_engine(engine_name).gradient(net, X, Y)

    def test_x_of_the_wrong_width(self, engine_name):
        X, Y = data(n_in=4)
        with pytest.raises(manual.ShapeError, match=re.escape("X has shape (5, 4), expected (N, 3)")):
            self.call(engine_name, small_net(), X, Y)

    def test_one_sample_as_a_vector_gets_a_hint(self, engine_name):
        with pytest.raises(manual.ShapeError, match=re.escape("for one sample use X.reshape(1, 3)")):
            load_engine(engine_name).forward(small_net(), np.ones(3))

    def test_y_of_the_wrong_width(self, engine_name):
        X, Y = data(n_out=3)
        with pytest.raises(manual.ShapeError, match=re.escape("Y has shape (5, 3), expected (N, 2)")):
            self.call(engine_name, small_net(), X, Y)

    def test_x_and_y_batches_differ(self, engine_name):
        X, _ = data(n=5)
        _, Y = data(n=4)
        with pytest.raises(manual.ShapeError, match=re.escape("X has 5 samples (shape (5, 3)) but Y has 4 (shape (4, 2))")):
            self.call(engine_name, small_net(), X, Y)

    @pytest.mark.parametrize("where", ["X", "Y"])
    def test_non_finite_data(self, engine_name, where):
        X, Y = data()
        (X if where == "X" else Y)[1, 0] = np.nan
        with pytest.raises(manual.NonFiniteError, match=re.escape(f"{where} holds 1 non-finite value(s), the first at index (1, 0)")):
            self.call(engine_name, small_net(), X, Y)

    def test_cross_entropy_rows_must_sum_to_one(self, engine_name):
        X, _ = data()
        Y = np.full((5, 2), 0.3)
        with pytest.raises(manual.TargetError, match="row 0 of Y sums to 0.6, not 1"):
            self.call(engine_name, small_net("cross_entropy"), X, Y)

    def test_cross_entropy_entries_must_be_probabilities(self, engine_name):
        X, _ = data()
        Y = np.tile([1.5, -0.5], (5, 1))
        with pytest.raises(manual.TargetError, match=re.escape("Y[0, 0] = 1.5 is outside [0, 1]")):
            self.call(engine_name, small_net("cross_entropy"), X, Y)
