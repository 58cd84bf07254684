"""Fuzzing: (public function x engine x malformed argument) ends in a documented error with a message, or a finite
result equal to the valid input's result, and never changes its inputs. The catalogue is ``tests/malformed.py``;
hypothesis draws from it and adds generated scalars (CI draws the same examples every run: see conftest)."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import manual
from tests import malformed
from tests.helpers import all_engine_names, load_engine
from xval.errors import XvalError

ENGINES = all_engine_names()
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_handled(thunk, expect, equivalent=None, inputs=()):
    verdict, detail = malformed.outcome(thunk, expect, equivalent, inputs)
    assert verdict in ("documented", "ok"), f"{verdict}: {detail}"


def _call(engine_name, function, variant):
    call = getattr(load_engine(engine_name), function)
    _, bad, same = malformed.arguments(function, variant, malformed.float32_arguments_for(variant))
    equivalent = (lambda: call(*same)) if same else None
    return (lambda: call(*bad)), equivalent, bad


@FUZZ
@given(st.data())
def test_a_malformed_argument_gets_a_documented_error_or_the_same_result(data):
    engine_name = data.draw(st.sampled_from(ENGINES), label="engine")
    function = data.draw(st.sampled_from(sorted(malformed.SIGNATURES)), label="function")
    variant = data.draw(
        st.sampled_from([v for v in malformed.VARIANTS if malformed.applicable(function, v)]), label="variant"
    )
    thunk, equivalent, inputs = _call(engine_name, function, variant)
    assert_handled(thunk, variant.expect, equivalent, inputs)


SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.complex_numbers(max_magnitude=1e3),
)


def _valid(name, value):
    """Whether ``value`` is a valid ``name`` for ``train`` (the documented ranges)."""
    if name == "batch_size" and value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if name == "lr":
        try:
            return math.isfinite(value) and value > 0
        except OverflowError:  # an int too large for a float
            return False
    if name == "seed":
        return isinstance(value, int) and value >= 0
    whole = math.isfinite(value) and float(value).is_integer()
    return whole and value >= (1 if name == "batch_size" else 0)


@FUZZ
@given(engine_name=st.sampled_from(ENGINES), name=st.sampled_from(["lr", "steps", "batch_size", "seed"]), value=SCALARS)
def test_training_settings_are_checked(engine_name, name, value):
    arguments = malformed.valid_arguments()
    if name == "steps" and _valid(name, value):
        value = min(value, 3)  # a valid count: keep the run short
    settings_ = {"lr": 0.1, "steps": 2, "batch_size": 2, "seed": 0, name: value}
    engine = load_engine(engine_name)
    try:
        net, losses = engine.train(arguments["net"], arguments["X"], arguments["Y"], **settings_)
    except XvalError as exc:
        assert str(exc)
        assert not _valid(name, value) or "diverged" in str(exc) or "starting loss" in str(exc)
        return
    assert _valid(name, value), f"{name}={value!r} was accepted"
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(net.to_vector()))


@FUZZ
@given(
    engine_name=st.sampled_from(ENGINES), scale=st.floats(1e30, 1e308), dtype=st.sampled_from(["float32", "float64"])
)
def test_huge_inputs_give_a_documented_error_or_a_finite_result(engine_name, scale, dtype):
    arguments = malformed.valid_arguments(dtype)
    X = arguments["X"] * scale
    copy = X.copy()
    assert_handled(lambda: load_engine(engine_name).gradient(arguments["net"], X, arguments["Y"]), "finite")
    np.testing.assert_array_equal(X, copy)


@pytest.mark.parametrize(
    "label, thunk, expect", malformed.extra_calls(manual), ids=lambda x: x if isinstance(x, str) else ""
)
def test_functions_outside_the_contract_check_their_arguments(label, thunk, expect):
    assert_handled(thunk, expect)


@pytest.mark.parametrize("attempt", sorted(malformed.mutation_attempts(None)))
def test_a_network_cannot_be_changed(attempt):
    net = malformed.valid_arguments()["net"]
    before = net.to_vector()
    with pytest.raises((ValueError, AttributeError, AssertionError)):
        malformed.mutation_attempts(net)[attempt]()
    np.testing.assert_array_equal(net.to_vector(), before)
