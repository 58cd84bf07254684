"""A property test: random architectures, activations, losses and batches; manual vs every selected engine."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import manual
from tests.conftest import load_engine, reference_engine_names
from manual import config
from xval import compare

ACTIVATION_NAMES = sorted(manual.ACTIVATIONS)


@st.composite
def problems(draw):
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
    return net, X, Y


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_networks_agree_with_every_engine(problem):
    net, X, Y = problem
    dtype = config.dtype()
    net, X, Y = net.astype(dtype), X.astype(dtype), Y.astype(dtype)
    rtol = compare.TOLERANCES[dtype]
    ours = {
        "loss": manual.loss(net, X, Y),
        "gradient": manual.gradient(net, X, Y),
        "per_sample_gradients": manual.per_sample_gradients(net, X, Y),
    }
    for name in reference_engine_names():
        engine = load_engine(name)
        for quantity, value in ours.items():
            compare.assert_close(value, getattr(engine, quantity)(net, X, Y), rtol, f"{quantity} manual vs {name} on {net}")
