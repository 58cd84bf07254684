"""Problem 3: training that stalls. ``train`` agrees across engines; ``diagnose`` names the cause of each
built-to-stall scenario, and finds nothing wrong with a healthy network."""

import re

import numpy as np
import pytest

import manual
from manual._diagnose import LARGE_WEIGHT_SCALE, largest_eigenvalue
from xval.batches import batch_indices
from tests.helpers import all_engine_names, compared_engine_names, load_engine
from xval import compare


def teacher_data(n=64, seed=0):
    """Inputs N(0, 1) and targets from a small tanh teacher plus noise: a problem a healthy network can fit."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    teacher = manual.Network.random([4, 8, 3], "tanh", "mse", seed=99)
    return X, manual.forward(teacher, X) + 0.1 * rng.standard_normal((n, 3))


# ---- the same trajectory from three engines --------------------------------------------------------
TRAINING_CASES = [
    dict(sizes=[4, 8, 3], activations="tanh", loss="mse", lr=0.1),
    dict(sizes=[4, 8, 3], activations="sigmoid", loss="cross_entropy", lr=0.5),
    dict(sizes=[4, 6, 6, 3], activations="relu", loss="mse", lr=0.05),
    dict(sizes=[4, 5, 3], activations=["softplus", "tanh"], loss="mse", lr=0.1),
]


def training_case_id(case):
    acts = case["activations"] if isinstance(case["activations"], str) else "+".join(case["activations"])
    return f"mlp-{'x'.join(map(str, case['sizes']))}-{acts}-{case['loss']}"


def training_problem(case, dtype="float64"):
    net = manual.Network.random(case["sizes"], case["activations"], case["loss"], seed=3, dtype=dtype)
    X, Y = teacher_data(n=23, seed=1)
    if case["loss"] == "cross_entropy":
        Y = np.eye(3)[np.argmax(Y, axis=1)]
    return net, X, Y


@pytest.mark.parametrize("batch_size", [None, 5], ids=["full-batch", "batch-5"])
@pytest.mark.parametrize("case", TRAINING_CASES, ids=training_case_id)
@pytest.mark.parametrize("engine_name", compared_engine_names())
def test_the_three_engines_follow_the_same_trajectory(engine_name, case, batch_size, dtype, rtol, record_error):
    engine = load_engine(engine_name)
    net, X, Y = training_problem(case, dtype)
    case_name = f"{training_case_id(case)}-{'full-batch' if batch_size is None else f'batch-{batch_size}'}"
    ours, our_losses = manual.train(net, X, Y, case["lr"], 50, batch_size=batch_size, seed=7)
    theirs, their_losses = engine.train(net, X, Y, case["lr"], 50, batch_size=batch_size, seed=7)
    assert our_losses.shape == their_losses.shape == (51,)
    assert our_losses[0] == manual.loss(net, X, Y)  # the same computation, so the same number
    assert our_losses[-1] < 0.9 * our_losses[0], "the cases are chosen to train"
    error = compare.assert_close(
        their_losses, our_losses, rtol, f"losses of 50 steps, manual vs {engine_name} on {case_name}"
    )
    record_error("train: losses of 50 steps", engine_name, case_name, error)
    error = compare.assert_close(
        theirs.to_vector(), ours.to_vector(), rtol, f"parameters after 50 steps, manual vs {engine_name} on {case_name}"
    )
    record_error("train: parameters after 50 steps", engine_name, case_name, error)
    assert our_losses[-1] == manual.loss(ours, X, Y)


def test_the_batch_order_rule():
    batches = batch_indices(10, 4, steps=7, seed=3)
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4]  # the last batch of an epoch holds the remainder
    for epoch in range(2):
        order = np.concatenate(batches[3 * epoch : 3 * epoch + 3])
        np.testing.assert_array_equal(order, np.random.default_rng([3, epoch]).permutation(10))
    np.testing.assert_array_equal(batches[6], np.random.default_rng([3, 2]).permutation(10)[:4])
    assert all(np.array_equal(b, np.arange(10)) for b in batch_indices(10, None, 3))
    assert all(np.array_equal(b, np.arange(10)) for b in batch_indices(10, 10, 3))
    assert not np.array_equal(np.concatenate(batch_indices(10, 4, 3, seed=4)), np.concatenate(batches[:3]))


def test_zero_steps_return_the_network_unchanged():
    net, X, Y = training_problem(TRAINING_CASES[0])
    same, losses = manual.train(net, X, Y, 0.1, 0)
    np.testing.assert_array_equal(same.to_vector(), net.to_vector())
    np.testing.assert_array_equal(losses, [manual.loss(net, X, Y)])


# (lr, steps, batch_size) that cannot work, and what the error must say: the value given, the range, the fix.
BAD_TRAINING_ARGUMENTS = [
    pytest.param(
        dict(lr=-0.1),
        "lr is -0.1, but it must be a finite number > 0; pass a learning rate below the stable bound 2 / lambda_max",
        id="lr-negative",
    ),
    pytest.param(dict(lr=0), "lr is 0, but it must be a finite number > 0", id="lr-zero"),
    pytest.param(dict(lr=float("nan")), "lr is nan, but it must be a finite number > 0", id="lr-nan"),
    pytest.param(dict(lr="0.1"), "lr is '0.1', but it must be a finite number > 0", id="lr-string"),
    pytest.param(dict(lr=True), "lr is True, but it must be a finite number > 0", id="lr-bool"),
    pytest.param(
        dict(steps=-1),
        "steps is -1, but it must be a whole number >= 0; pass a number of steps such as 100",
        id="steps-negative",
    ),
    pytest.param(dict(steps=2.5), "steps is 2.5, but it must be a whole number >= 0", id="steps-fraction"),
    pytest.param(
        dict(batch_size=0),
        "batch_size is 0, but it must be a whole number >= 1; pass an integer such as 32, or None for the full batch",
        id="batch-size-zero",
    ),
    pytest.param(
        dict(batch_size=2.5), "batch_size is 2.5, but it must be a whole number >= 1", id="batch-size-fraction"
    ),
]


@pytest.mark.parametrize("bad, message", BAD_TRAINING_ARGUMENTS)
@pytest.mark.parametrize("engine_name", all_engine_names())
def test_bad_training_arguments_say_what_was_given_and_what_to_pass(engine_name, bad, message):
    engine = load_engine(engine_name)
    net, X, Y = training_problem(TRAINING_CASES[0])
    arguments = dict(lr=0.1, steps=5, batch_size=None) | bad
    with pytest.raises(manual.ArgumentError, match=re.escape(message)):
        engine.train(net, X, Y, arguments["lr"], arguments["steps"], batch_size=arguments["batch_size"])


@pytest.mark.parametrize("engine_name", all_engine_names())
def test_divergence_is_an_error_that_names_the_step_and_the_bound(engine_name):
    engine = load_engine(engine_name)
    net = manual.Network.random([4, 3], "identity", "mse", seed=0)
    X, Y = teacher_data(n=16)
    with pytest.raises(manual.NonFiniteError, match=r"diverged at step \d+ with lr = 1000.*2 / lambda_max"):
        engine.train(net, 1e3 * X, Y, 1000.0, 200)


# ---- the scenarios -------------------------------------------------------------------------------
def _scaled(net, factor, layers):
    weights = [w * factor if l in layers else w for l, w in enumerate(net.weights)]
    biases = [b * factor if l in layers else b for l, b in enumerate(net.biases)]
    return manual.Network.from_arrays(weights, biases, net.activations, net.loss)


def _shifted_biases(net, shift, layers):
    biases = [b + shift if l in layers else b for l, b in enumerate(net.biases)]
    return manual.Network.from_arrays(net.weights, biases, net.activations, net.loss)


SATURATED_FACTOR = 30.0  # how much larger than the healthy sigmoid network the "saturated" one is initialised


def scenario(name):
    """The network of each scenario; the data is ``teacher_data()`` throughout."""
    if name == "healthy":
        return manual.Network.random([4, 16, 3], "tanh", "mse", seed=1)
    if name == "healthy sigmoid":
        return manual.Network.random([4, 16, 16, 3], "sigmoid", "mse", seed=1)
    if name == "saturated":  # the same sigmoid network, hidden layers initialised 30x too large
        return _scaled(scenario("healthy sigmoid"), SATURATED_FACTOR, {0, 1})
    if name == "dead":  # relus whose biases a bad step pushed to -3
        return _shifted_biases(manual.Network.random([4, 16, 16, 3], "relu", "mse", seed=1), -3.0, {0, 1})
    if name == "vanishing":  # five tanh layers initialised 20x too small
        return manual.Network.random([4, 8, 8, 8, 8, 8, 3], "tanh", "mse", seed=1, weight_scale=0.05)
    raise KeyError(name)


def relative_change(before, after):
    return [float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(after.weights, before.weights)]


def test_a_healthy_network_has_no_finding_and_trains():
    X, Y = teacher_data()
    net = scenario("healthy")
    report = manual.diagnose(net, X, Y, lr=None)
    assert report.healthy and report.findings == () and report.power_converged
    report = manual.diagnose(net, X, Y, lr=1.0 / report.lambda_max)
    assert report.findings == (), str(report)
    assert report.layers[0].saturated_fraction < 0.05
    _, losses = manual.train(net, X, Y, 1.0 / report.lambda_max, 100)
    assert losses[-1] < 0.05 * losses[0]
    assert "no findings" in str(report)


def test_saturated_sigmoids_from_a_huge_initialisation():
    X, Y = teacher_data()
    net = scenario("saturated")
    report = manual.diagnose(net, X, Y)
    saturated = [f for f in report.findings if f.kind == "saturated"]
    assert [f.layer for f in saturated] == [0, 1]
    assert all(r.saturated_fraction > 0.7 for r in report.layers[:2])
    # The remedy quotes each layer's scale against N(0, 1/n_in): RMS(W_l) * sqrt(n_in), by definition; scaling
    # the healthy weights by SATURATED_FACTOR scales that figure by the same factor.
    healthy = scenario("healthy sigmoid")
    for finding in saturated:
        w = healthy.weights[finding.layer]
        scale = SATURATED_FACTOR * np.sqrt(np.mean(w**2) * w.shape[1])
        assert scale > LARGE_WEIGHT_SCALE
        assert report.layers[finding.layer].weight_scale == pytest.approx(scale, rel=1e-12)
        assert finding.remedy.startswith(
            f"rescale the initialisation: W_{finding.layer} is {scale:.3g}x the N(0, 1/n_in) scale, "
            "use W ~ N(0, 1/n_in)"
        ), finding.remedy
    # the stall: at the same step size relative to the curvature, the hidden layers hardly move
    trained, _ = manual.train(net, X, Y, 1.0 / report.lambda_max, 100)
    healthy_trained, _ = manual.train(healthy, X, Y, 1.0 / manual.diagnose(healthy, X, Y).lambda_max, 100)
    assert max(relative_change(net, trained)[:2]) < 0.01
    assert min(relative_change(healthy, healthy_trained)[:2]) > 0.1
    assert manual.diagnose(healthy, X, Y).findings == ()


def test_saturation_from_unnormalised_inputs_says_normalise_them():
    X, Y = teacher_data()
    net = manual.Network.random([4, 16, 3], "tanh", "mse", seed=1)
    report = manual.diagnose(net, 50.0 * X, Y)
    first = next(f for f in report.findings if f.kind == "saturated")
    assert first.layer == 0 and "normalise the inputs" in first.remedy and report.input_rms > 40


@pytest.mark.parametrize("factor", [3.0, 5.0])
def test_a_learning_rate_above_2_over_lambda_max_oscillates_or_diverges(factor):
    X, Y = teacher_data()
    net = scenario("healthy")
    lam = manual.diagnose(net, X, Y).lambda_max
    report = manual.diagnose(net, X, Y, lr=factor / lam)
    assert report.kinds == {"lr_too_large"}
    assert report.stable_lr == pytest.approx(2.0 / lam, rel=1e-15)
    assert "lower the learning rate" in report.findings[0].remedy
    _, losses = manual.train(net, X, Y, factor / lam, 20)
    steps_up = int(np.sum(np.diff(losses) > 0))
    if factor == 3.0:  # oscillates: the loss goes up again and again
        assert steps_up >= 5
    else:  # diverges: the loss grows at every step
        assert steps_up == 20 and losses[-1] > 1e6 * losses[0]
    _, stable = manual.train(net, X, Y, 1.9 / lam, 20)
    assert np.all(np.diff(stable) < 0)  # just below the bound, every step helps


def test_a_tiny_learning_rate_is_flagged_as_too_small():
    X, Y = teacher_data()
    net = scenario("healthy")
    lam = manual.diagnose(net, X, Y).lambda_max
    report = manual.diagnose(net, X, Y, lr=1e-4 / lam)
    assert report.kinds == {"lr_too_small"} and "raise the learning rate" in report.findings[0].remedy


def test_dead_relus():
    X, Y = teacher_data()
    net = scenario("dead")
    report = manual.diagnose(net, X, Y)
    assert report.kinds == {"dead"}  # the zero gradient of layer 0 is the dead units', not a separate "vanishing"
    assert [f.layer for f in report.findings] == [0, 1]
    assert report.layers[1].dead_fraction == 1.0 and report.layers[0].dead_fraction > 0.9
    assert report.layers[0].gradient_norm == 0.0
    # the stall: dead units get exactly zero gradient, so the hidden weights never change
    trained, losses = manual.train(net, X, Y, 1.0 / report.lambda_max, 100)
    np.testing.assert_array_equal(trained.weights[0], net.weights[0])
    np.testing.assert_array_equal(trained.weights[1], net.weights[1])
    assert losses[-1] == pytest.approx(losses[-2], rel=1e-12) and losses[-1] > 0.9 * losses[0]


def test_vanishing_gradients_through_tiny_weights():
    X, Y = teacher_data()
    net = scenario("vanishing")
    report = manual.diagnose(net, X, Y)
    assert report.kinds == {"vanishing"}
    norms = [r.gradient_norm for r in report.layers]
    assert norms[0] / norms[-1] < 1e-5 and all(a < b for a, b in zip(norms, norms[1:]))
    trained, losses = manual.train(net, X, Y, 1.0 / report.lambda_max, 100)
    assert max(relative_change(net, trained)[:4]) < 1e-3 and losses[-1] > 0.9 * losses[0]


def test_the_report_reads_as_a_table_with_remedies():
    X, Y = teacher_data()
    text = str(manual.diagnose(scenario("saturated"), X, Y, lr=10.0))
    assert "lambda_max = " in text and "stable step: lr < 2 / lambda_max" in text
    assert "[saturated] layer 0:" in text and "remedy:" in text and "[lr_too_large]" in text
    assert len(text.splitlines()) == 3 + 3 + 2 + 1 + 2 * 3


# ---- lambda_max against the dense Hessian -----------------------------------------------------------
def _negative_dominated():
    """A network whose Hessian's most negative eigenvalue outweighs the largest (the shifted branch)."""
    net = manual.Network.random([3, 4, 2], "tanh", "mse", seed=13, weight_scale=3.0)
    rng = np.random.default_rng(13)
    return net, rng.standard_normal((5, 3)), 5.0 * rng.standard_normal((5, 2))


DENSE_CHECKS = [
    (engine_name, name)
    for position, engine_name in enumerate(compared_engine_names())
    # every scenario against the first reference engine; the small ones (P = 131 and 22) against all
    for name in ["healthy", "negative-dominated"] + (["saturated", "dead", "vanishing"] if position == 0 else [])
]


@pytest.mark.parametrize("engine_name, name", DENSE_CHECKS, ids=[f"{e}-{n}" for e, n in DENSE_CHECKS])
def test_lambda_max_is_the_top_eigenvalue_of_the_dense_hessian(engine_name, name):
    engine = load_engine(engine_name)
    if name == "negative-dominated":
        net, X, Y = _negative_dominated()
    else:
        net, (X, Y) = scenario(name), teacher_data()
    eigenvalues = np.linalg.eigvalsh(engine.hessian(net, X, Y))
    if name == "negative-dominated":
        assert eigenvalues[0] < -1.5 * eigenvalues[-1]
    lam, products, converged = largest_eigenvalue(net, X, Y)
    assert converged and products < 1000
    assert lam == pytest.approx(eigenvalues[-1], rel=1e-8)
    assert manual.diagnose(net, X, Y).lambda_max == lam
