"""Bad input: each mistake gets its own specific error that says what was wrong and how to fix it."""

import re

import numpy as np
import pytest

import manual
from xval.batches import batch_indices
from tests.helpers import all_engine_names, load_engine
from xval.contract import QUANTITIES, Problem

ALL_ENGINES = all_engine_names()


def small_net(loss="mse"):
    return manual.Network.random([3, 4, 2], "tanh", loss, seed=0)


def data(n=5, n_in=3, n_out=2):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n_in)), rng.standard_normal((n, n_out))


def test_weights_that_do_not_chain_name_the_layer_and_both_shapes():
    weights = [np.ones((4, 3)), np.ones((2, 5))]
    with pytest.raises(
        manual.ShapeError,
        match=re.escape("layer 1: W_1 has shape (2, 5) but W_0 has shape (4, 3); W_1 needs 4 columns"),
    ):
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
    with pytest.raises(
        manual.NonFiniteError, match=re.escape("W_0 holds 1 non-finite value(s), the first at index (2, 1)")
    ):
        manual.Network.from_arrays([w], [np.zeros(4)], ["identity"], "mse")


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(
        manual.UnknownNameError,
        match="unknown activation 'swish'; valid activations are: elu, gelu, "
        "gelu_tanh, identity, leaky_relu, logsigmoid, relu, selu, sigmoid, silu, softplus, tanh",
    ):
        manual.Network.random([3, 4, 2], "swish", "mse")


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(
        manual.UnknownNameError,
        match="unknown loss 'hinge'; valid losses are: bce_with_logits, cross_entropy, mean_bce_with_logits, "
        "mean_squared_error, mse, nll, squared_error",
    ):
        manual.Network.random([3, 4, 2], "tanh", "hinge")


def test_unknown_engine_lists_the_valid_ones():
    from xval import engines

    with pytest.raises(
        manual.UnknownNameError, match=r"unknown engine 'tensorflow': .* built-in or registered name"
    ) as raised:
        engines.load("tensorflow")
    listed = re.search(r"registered name \(([^)]*)\)", str(raised.value)).group(1).split(", ")
    assert listed == sorted(set(engines.BUILT_IN) | set(engines.PEERS)), listed


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
    with pytest.raises(
        manual.EngineUnavailableError, match="engine 'jax' needs the package 'jax'.*run: pip install jax"
    ):
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


# ---- the network: each raise of Network.from_arrays / Network.random ------------------------------------
def two_layers(**replace):
    """``from_arrays`` arguments of a valid 3 -> 4 -> 2 network, with the entries in ``replace`` swapped in."""
    arguments = dict(
        weights=[np.ones((4, 3)), np.ones((2, 4))], biases=[np.zeros(4), np.zeros(2)], activations="tanh", loss="mse"
    )
    return arguments | replace


# (arguments of from_arrays, the error class, the parts of the message that matter)
BAD_NETWORKS = [
    pytest.param(
        two_layers(dtype="int32"),
        manual.ArgumentError,
        "dtype 'int32' is not supported; use one of: float64, float32",
        id="dtype-int32",
    ),
    pytest.param(
        two_layers(dtype="float65"),
        manual.ArgumentError,
        "dtype 'float65' is not supported; use one of: float64, float32",
        id="dtype-unknown",
    ),
    pytest.param(
        two_layers(dtype=np.float16),
        manual.ArgumentError,
        "(float16) is not supported; use one of: float64, float32",
        id="dtype-float16",
    ),
    pytest.param(
        two_layers(weights=[], biases=[]),
        manual.ShapeError,
        "a network needs at least one layer, but weights is empty; pass one (n_out, n_in) matrix per layer",
        id="no-layers",
    ),
    pytest.param(
        two_layers(biases=[np.zeros(4)]),
        manual.ShapeError,
        "got 2 weight matrices but 1 bias vectors; pass one of each per layer",
        id="bias-count",
    ),
    pytest.param(
        two_layers(weights=[np.ones((4, 3)), np.ones(4)], biases=[np.zeros(4), np.zeros(1)]),
        manual.ShapeError,
        "layer 1: W_1 must be 2-D (n_out, n_in), got shape (4,); for a single output unit use W_1.reshape(1, 4)",
        id="W-1d",
    ),
    pytest.param(
        two_layers(weights=[np.ones((4, 3)), np.ones((2, 4, 1))]),
        manual.ShapeError,
        "layer 1: W_1 must be 2-D (n_out, n_in), got shape (2, 4, 1)",
        id="W-3d",
    ),
    pytest.param(
        two_layers(weights=[np.ones((4, 3)), np.ones((0, 4))], biases=[np.zeros(4), np.zeros(0)]),
        manual.ShapeError,
        "layer 1: W_1 has an empty dimension, shape (0, 4); every layer needs at least one input and one output unit",
        id="W-empty",
    ),
    pytest.param(
        two_layers(weights=[np.ones((4, 3)), np.ones((2, 4)) + 1j]),
        manual.ArgumentError,
        "W_1 is complex (complex128); it must be a real (n_out, n_in) matrix for layer 1: pass W_1.real",
        id="W-complex",
    ),
    pytest.param(
        two_layers(biases=[np.zeros(4, dtype=bool), np.zeros(2)]),
        manual.ArgumentError,
        "b_0 is a boolean array; it must be a real (n_out,) vector for layer 0: pass b_0.astype(float)",
        id="b-bool",
    ),
    pytest.param(
        two_layers(weights=[np.full((4, 3), "1"), np.ones((2, 4))]),
        manual.ArgumentError,
        "W_0 has dtype <U1, not a real number type; it must be a real (n_out, n_in) matrix for layer 0",
        id="W-strings",
    ),
]


@pytest.mark.parametrize("arguments, error, message", BAD_NETWORKS)
def test_a_bad_network_names_the_layer_and_the_fix(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        manual.Network.from_arrays(**arguments)


@pytest.mark.parametrize("sizes", [[3], [], [3, 0, 2], [3, 2.5], [3, "4"], [3, -1]], ids=str)
def test_random_network_sizes_must_be_widths(sizes):
    with pytest.raises(
        manual.ShapeError,
        match=re.escape(
            f"sizes is {sizes!r}, but it must list at least an input and an output width, all whole numbers >= 1; "
            "e.g. sizes=[4, 16, 3]"
        ),
    ):
        manual.Network.random(sizes)


@pytest.mark.parametrize("scale", [np.nan, np.inf, "2"], ids=str)
def test_random_network_weight_scale_must_be_finite(scale):
    with pytest.raises(
        manual.ArgumentError,
        match=re.escape(
            f"weight_scale is {scale!r}, but it must be a finite number; 1.0 gives the N(0, 1/n_in) initialisation"
        ),
    ):
        manual.Network.random([3, 4, 2], weight_scale=scale)


# ---- arguments of the oracles, the problem set and the training rule -------------------------------------
def call_diagnose(lr):
    X, Y = data()
    return manual.diagnose(small_net(), X, Y, lr=lr)


def call_finite_differences(eps):
    X, Y = data()
    return manual.finite_difference_gradient(small_net(), X, Y, eps=eps)


# (the call, the value it gets, the start of the message that must follow "<name> is <value>, but it must be")
BAD_ARGUMENTS = [
    pytest.param(
        call_diagnose,
        -0.1,
        "lr",
        "a finite number > 0; pass the learning rate you train with, or lr=None",
        id="diagnose-lr-negative",
    ),
    pytest.param(call_diagnose, np.inf, "lr", "a finite number > 0", id="diagnose-lr-inf"),
    pytest.param(call_diagnose, "fast", "lr", "a finite number > 0", id="diagnose-lr-string"),
    pytest.param(
        call_finite_differences,
        0.0,
        "eps",
        "a finite number > 0; pass a small step such as 1e-06, or eps=None for the default of float64",
        id="fd-eps-zero",
    ),
    pytest.param(call_finite_differences, -1e-6, "eps", "a finite number > 0", id="fd-eps-negative"),
    pytest.param(call_finite_differences, np.nan, "eps", "a finite number > 0", id="fd-eps-nan"),
    pytest.param(call_finite_differences, "1e-6", "eps", "a finite number > 0", id="fd-eps-string"),
    pytest.param(
        lambda n: batch_indices(n, None, 3),
        0,
        "n_samples",
        "a whole number >= 1; training needs at least one sample",
        id="batches-no-samples",
    ),
    pytest.param(
        lambda n: batch_indices(n, None, 3), 2.5, "n_samples", "a whole number >= 1", id="batches-fractional-samples"
    ),
    pytest.param(
        lambda steps: batch_indices(10, 4, steps),
        -1,
        "steps",
        "a whole number >= 0; pass a number of steps such as 100",
        id="batches-negative-steps",
    ),
    pytest.param(
        lambda steps: batch_indices(10, 4, steps), None, "steps", "a whole number >= 0", id="batches-steps-none"
    ),
    pytest.param(
        lambda size: batch_indices(10, size, 3),
        -2,
        "batch_size",
        "a whole number >= 1; pass an integer such as 32, or None for the full batch",
        id="batches-negative-batch-size",
    ),
]


@pytest.mark.parametrize("call, value, name, expected", BAD_ARGUMENTS)
def test_a_bad_argument_says_the_value_the_range_and_the_fix(call, value, name, expected):
    with pytest.raises(manual.ArgumentError, match=re.escape(f"{name} is {value!r}, but it must be {expected}")):
        call(value)


def test_the_argument_error_is_a_value_error_and_exported():
    assert issubclass(manual.ArgumentError, manual.XvalError) and issubclass(manual.ArgumentError, ValueError)
    assert "ArgumentError" in manual.__all__


# ---- the same data errors from every engine and every function that takes data ----------------------------
DATA_FUNCTIONS = ["loss", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian"]


def call(engine_name, function, net, X, Y):
    """``engine.<function>`` on ``X`` (and ``Y``), with a valid direction or layer pair where it takes one (the
    contract's call of the function, on a problem whose block is the first and last layer)."""
    engine = load_engine(engine_name)
    problem = Problem("bad input", net, X, Y, np.zeros(net.n_params), block=(0, net.n_layers - 1))
    getattr(engine, function)  # a skip when the engine does not implement it
    return QUANTITIES[function].calls(problem)[0].evaluate(engine.module)


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
class TestDataErrors:
    """The same data errors from every engine and function (they share one validation)."""

    @pytest.mark.parametrize("function", ["forward"] + DATA_FUNCTIONS)
    def test_x_of_the_wrong_width(self, engine_name, function):
        X, Y = data(n_in=4)
        with pytest.raises(manual.ShapeError, match=re.escape("X has shape (5, 4), expected (N, 3)")):
            call(engine_name, function, small_net(), X, Y)

    @pytest.mark.parametrize("function", ["forward"] + DATA_FUNCTIONS)
    def test_one_sample_as_a_vector_gets_a_hint(self, engine_name, function):
        _, Y = data(n=1)
        with pytest.raises(
            manual.ShapeError,
            match=re.escape(
                "X has shape (3,), expected (N, 3) with N >= 1 for input width n_0 = 3; "
                "for one sample use X.reshape(1, 3)"
            ),
        ):
            call(engine_name, function, small_net(), np.ones(3), Y)

    @pytest.mark.parametrize("function", ["forward"] + DATA_FUNCTIONS)
    def test_no_samples(self, engine_name, function):
        X, Y = data(n=0)
        with pytest.raises(
            manual.ShapeError,
            match=re.escape(
                "X has shape (0, 3), expected (N, 3) with N >= 1 for input width n_0 = 3; "
                "X holds no samples, pass at least one row"
            ),
        ):
            call(engine_name, function, small_net(), X, Y)

    @pytest.mark.parametrize("function", DATA_FUNCTIONS)
    def test_y_of_the_wrong_width(self, engine_name, function):
        X, Y = data(n_out=3)
        with pytest.raises(manual.ShapeError, match=re.escape("Y has shape (5, 3), expected (N, 2)")):
            call(engine_name, function, small_net(), X, Y)

    @pytest.mark.parametrize("function", DATA_FUNCTIONS)
    def test_x_and_y_batches_differ(self, engine_name, function):
        X, _ = data(n=5)
        _, Y = data(n=4)
        with pytest.raises(
            manual.ShapeError,
            match=re.escape(
                "X has 5 samples (shape (5, 3)) but Y has 4 (shape (4, 2)); pass one target row per sample"
            ),
        ):
            call(engine_name, function, small_net(), X, Y)

    @pytest.mark.parametrize("function", DATA_FUNCTIONS)
    @pytest.mark.parametrize("where", ["X", "Y"])
    def test_non_finite_data(self, engine_name, where, function):
        X, Y = data()
        (X if where == "X" else Y)[1, 0] = np.nan
        with pytest.raises(
            manual.NonFiniteError, match=re.escape(f"{where} holds 1 non-finite value(s), the first at index (1, 0)")
        ):
            call(engine_name, function, small_net(), X, Y)

    @pytest.mark.parametrize("function", DATA_FUNCTIONS)
    def test_cross_entropy_rows_must_sum_to_one(self, engine_name, function):
        X, _ = data()
        Y = np.full((5, 2), 0.3)
        with pytest.raises(manual.TargetError, match="row 0 of Y sums to 0.6, not 1"):
            call(engine_name, function, small_net("cross_entropy"), X, Y)

    @pytest.mark.parametrize("function", DATA_FUNCTIONS)
    def test_cross_entropy_entries_must_be_probabilities(self, engine_name, function):
        X, _ = data()
        Y = np.tile([1.5, -0.5], (5, 1))
        with pytest.raises(manual.TargetError, match=re.escape("Y[0, 0] = 1.5 is outside [0, 1]")):
            call(engine_name, function, small_net("cross_entropy"), X, Y)


# ---- the direction of hvp: a real, finite (P,) vector -----------------------------------------------------
BAD_DIRECTIONS = [
    pytest.param(
        np.ones(26) + 1j,
        manual.ArgumentError,
        "v is complex (complex128); it must be a real vector of shape (26,), "
        "laid out like net.to_vector(): pass v.real if the imaginary part is meant to be zero",
        id="complex",
    ),
    pytest.param(
        np.ones(26) + 0j,
        manual.ArgumentError,
        "v is complex (complex128) even though every imaginary part is zero",
        id="complex-zero-imaginary",
    ),
    pytest.param(
        np.full(26, "1"),
        manual.ArgumentError,
        "v has dtype <U1, not a real number type; it must be a real vector of shape (26,)",
        id="strings",
    ),
    pytest.param(
        np.ones(26, dtype=bool), manual.ArgumentError, "v is a boolean array; it must be a real vector", id="bool"
    ),
    pytest.param(
        np.where(np.arange(26) == 7, np.inf, 1.0),
        manual.NonFiniteError,
        "v holds 1 non-finite value(s), the first at index (7,): inf",
        id="inf",
    ),
]


@pytest.mark.parametrize("v, error, message", BAD_DIRECTIONS)
@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_hvp_direction_must_be_real_and_finite(engine_name, v, error, message):
    X, Y = data()
    with pytest.raises(error, match=re.escape(message)):
        load_engine(engine_name).hvp(small_net(), X, Y, v)


# ---- types, dtypes and overflow (every engine) -----------------------------------------------------------------
@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_complex_input_is_refused_even_with_zero_imaginary_part(engine_name):
    X, Y = data()
    with pytest.raises(
        manual.ArgumentError, match=re.escape("X is complex (complex128) even though every imaginary part is zero")
    ):
        load_engine(engine_name).gradient(small_net(), X + 0j, Y)


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_integer_arrays_are_taken_as_their_exact_values(engine_name):
    X, Y = data()
    X_int, Y_int = np.round(3 * X).astype(np.int32), np.round(3 * Y).astype(np.int64)
    engine = load_engine(engine_name)
    expected = engine.gradient(small_net(), X_int.astype(float), Y_int.astype(float))
    np.testing.assert_array_equal(engine.gradient(small_net(), X_int, Y_int), expected)


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_boolean_and_ragged_data_are_refused(engine_name):
    X, Y = data()
    engine = load_engine(engine_name)
    with pytest.raises(
        manual.ArgumentError, match=re.escape("Y is a boolean array; it must be a float array of shape (N, 2)")
    ):
        engine.loss(small_net(), X, Y > 0)
    with pytest.raises(manual.ShapeError, match="X is a ragged nested sequence"):
        engine.forward(small_net(), [[1.0, 2.0, 3.0], [1.0, 2.0]])


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
@pytest.mark.parametrize("not_a_network", [None, "net", {"weights": []}])
def test_a_network_of_the_wrong_type_is_named(engine_name, not_a_network):
    X, Y = data()
    with pytest.raises(
        manual.ArgumentError, match="but it must be an xval.Network; build one with Network.from_arrays"
    ):
        load_engine(engine_name).forward(not_a_network, X)


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_finiteness_is_checked_after_the_cast_to_the_network_dtype(engine_name):
    X, Y = data()
    X[1, 2] = 1e300  # finite in float64, Inf in float32
    with pytest.raises(
        manual.NonFiniteError, match=re.escape("X[1, 2] = 1e+300 is finite but overflows float32 (largest 3.403e+38)")
    ):
        load_engine(engine_name).loss(small_net().astype("float32"), X, Y)


@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_an_overflowing_result_is_reported_naming_the_layer(engine_name):
    engine = load_engine(engine_name)
    X, Y = data()
    # Layer 1 sums 2 inputs of 1e308 * 10 each: 2e309 is past the largest float64 (1.8e308).
    net = manual.Network.from_arrays([np.eye(2, 3), np.full((2, 2), 10.0)], [np.zeros(2)] * 2, "identity", "mse")
    with pytest.raises(
        manual.NonFiniteError,
        match=re.escape("forward overflowed float64 on finite inputs: the pre-activations of layer 1"),
    ) as info:
        engine.forward(net, np.full_like(X, 1e308))
    assert isinstance(info.value, ArithmeticError)
    # Outputs of 1e200 are finite; their squared error (1e400) is not, nor the gradient of layer 1 (delta z ~ 1e400).
    with pytest.raises(
        manual.NonFiniteError,
        match=re.escape(
            "gradient overflowed float64 on finite inputs: the derivatives with respect to the parameters of layer"
        ),
    ):
        engine.gradient(net, np.full_like(X, 1e200), Y)


def test_a_transposed_first_weight_matrix_is_blamed_on_the_weights():
    net = small_net()
    with pytest.raises(
        manual.ShapeError,
        match=re.escape(
            "layer 0: W_0 has shape (3, 4), which looks transposed: b_0 has shape (4,) "
            "and W_0 must be (n_out, n_in) = (4, 3); pass W_0.T"
        ),
    ):
        manual.Network.from_arrays([net.weights[0].T, net.weights[1]], net.biases, net.activations, "mse")


@pytest.mark.parametrize("seed", [None, -1, 1.5, "0", True])
def test_seeds_must_be_non_negative_integers(seed):
    X, Y = data()
    with pytest.raises(
        manual.ArgumentError,
        match=re.escape(f"seed is {seed!r} ({type(seed).__name__}), but it must be an integer >= 0"),
    ):
        manual.Network.random([3, 4, 2], seed=seed)
    for engine_name in ALL_ENGINES:
        with pytest.raises(manual.ArgumentError, match="seed is .* but it must be an integer >= 0"):
            load_engine(engine_name).train(small_net(), X, Y, lr=0.1, steps=2, batch_size=2, seed=seed)


@pytest.mark.parametrize(
    "keyword, value, message",
    [
        ("max_iter", 0, "max_iter is 0, but it must be a whole number >= 1"),
        ("tol", -1, "tol is -1, but it must be a finite number >= 0"),
        ("tol", float("nan"), "tol is nan, but it must be a finite number >= 0"),
    ],
)
def test_diagnose_iteration_settings(keyword, value, message):
    X, Y = data()
    with pytest.raises(manual.ArgumentError, match=re.escape(message)):
        manual.diagnose(small_net(), X, Y, **{keyword: value})


@pytest.mark.parametrize(
    "dtype, eps, lowest", [("float64", 1e-17, "3.55e-15"), ("float32", 1e-9, "1.91e-06"), ("float64", 10.0, "3.55e-15")]
)
def test_finite_difference_steps_out_of_range_for_the_dtype(dtype, eps, lowest):
    X, Y = data()
    with pytest.raises(
        manual.ArgumentError, match=re.escape(f"outside the steps that estimate a derivative in {dtype}: [{lowest}, 1]")
    ):
        manual.finite_difference_gradient(small_net().astype(dtype), X, Y, eps=eps)


def test_symmetry_refuses_float_permutations_boolean_signs_and_truthy_flags():
    net = small_net()
    with pytest.raises(manual.ArgumentError, match=re.escape("perm has dtype float64, but it must hold integers")):
        manual.symmetry.permute_units(net, 0, [1.0, 0.0, 2.0, 3.0])
    with pytest.raises(manual.ArgumentError, match=re.escape("signs is a boolean array")):
        manual.symmetry.transform(net, 0, [True, False, True, True], [0, 1, 2, 3])
    with pytest.raises(manual.ArgumentError, match=re.escape("signs is 'yes' (str), but it must be True or False")):
        manual.symmetry.orbit(net, 0, signs="yes")  # refused when called, before the first member


# ---- training: the starting loss, and a batch order that does not allocate every step up front ----------------
@pytest.mark.parametrize("engine_name", ALL_ENGINES)
def test_an_infinite_starting_loss_is_not_called_a_divergence(engine_name):
    X, Y = data()
    X = np.full_like(X, 1e200)  # finite outputs of about 1e200, whose squared error overflows
    net = manual.Network.random([3, 2], "identity", "mse", seed=0)
    with pytest.raises(manual.NonFiniteError, match=re.escape("the starting loss (step 0, before any update) is inf")):
        load_engine(engine_name).train(net, X, Y, lr=0.1, steps=3)


def test_two_million_steps_do_not_allocate_before_the_first_step():
    import tracemalloc

    X, Y = data(n=1000)
    tracemalloc.start()
    with pytest.raises(manual.NonFiniteError, match="training diverged at step 1"):
        manual.train(small_net(), X, Y, lr=1e300, steps=2_000_000, batch_size=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * 2**20  # the whole index list would be 2e6 arrays of 2 int64 (over 200 MB)


# ---- a Network cannot be changed --------------------------------------------------------------------------------
def test_a_network_cannot_be_changed_even_by_reflagging_its_arrays():
    net = small_net()
    before = net.to_vector()
    for array in net.weights + net.biases:
        with pytest.raises(ValueError, match="cannot set WRITEABLE flag to True"):
            array.flags.writeable = True
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0
    with pytest.raises(AttributeError, match="a Network cannot be changed after construction"):
        net._weights = ()
    np.testing.assert_array_equal(net.to_vector(), before)
