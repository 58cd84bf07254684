"""A property test: random architectures, activations, losses, batches and directions; manual vs each selected
reference engine, one test per engine (so a missing engine skips only its own)."""

import functools

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import manual
from tests.helpers import assert_matches_reference
from xval.contract import QUANTITIES, Problem

ACTIVATION_NAMES = sorted(manual.ACTIVATIONS)
# The first-order quantities and hvp: the Hessians are compiled per architecture by jax, too slow for 30 draws.
QUANTITIES_CHECKED = ("forward", "loss", "gradient", "per_sample_gradients", "hvp")


@st.composite
def problems(draw):
    """``(net, X, Y, v)`` in float64: a random network, a batch, targets for its loss, and a unit direction."""
    depth = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 6), min_size=depth + 1, max_size=depth + 1))
    activations = draw(st.lists(st.sampled_from(ACTIVATION_NAMES), min_size=depth, max_size=depth))
    loss = draw(st.sampled_from(sorted(manual.LOSSES)))
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
    rng = np.random.default_rng(seed)
    net = manual.Network.random(sizes, activations, loss, seed=seed, weight_scale=scale)
    X = rng.standard_normal((n, sizes[0]))
    if loss == "cross_entropy":
        Y = rng.dirichlet(np.ones(sizes[-1]), size=n)
    else:
        Y = rng.standard_normal((n, sizes[-1]))
    v = rng.standard_normal(net.n_params)
    return net, X, Y, v / np.linalg.norm(v)


def evaluate(module, quantity, problem):
    """``quantity`` of the contract on ``problem`` (its one call), as float64 numpy."""
    return QUANTITIES[quantity].calls(problem)[0].evaluate(module)


# The engine fixture is set once per test, not per example: sharing it across examples is intended.
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(drawn=problems())
def test_random_networks_agree_with_the_reference(engine, dtype, rtol, record_error, drawn):
    name, module = engine
    problem = Problem(repr(drawn[0]), *drawn)
    problem, problem_64 = problem.astype(dtype), problem.astype("float64")
    # A derivative that is tiny next to the numbers it is computed from (an almost exact fit, where the loss
    # gradient is p - y with p ~ y; outputs saturated to 1e-18 slopes) holds only their rounding, and its relative
    # error between two correct engines can be anything. Such draws say nothing about correctness; skip them.
    assume(min(np.linalg.norm(evaluate(manual, q, problem_64)) for q in ("gradient", "hvp")) > 1e-6)
    for quantity in QUANTITIES_CHECKED:
        if not QUANTITIES[quantity].implemented_by(module.module):
            continue
        ours, theirs = evaluate(manual, quantity, problem), evaluate(module.module, quantity, problem)
        exact = functools.partial(
            evaluate, module.module, quantity, problem_64
        )  # the float64 reference, for float32 runs
        error = assert_matches_reference(
            ours, theirs, rtol, f"{quantity} manual vs {name} on {problem.name}", dtype, exact
        )
        record_error(f"{quantity} (random networks)", name, problem.name, error)
