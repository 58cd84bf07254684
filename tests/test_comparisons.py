"""Every case x quantity of the contract x engine: each selected engine agrees with ``manual`` (every layer pair
of ``hessian_block``). The calls come from the contract table (``xval.contract``), so a new quantity is
compared here as soon as it is in the table."""
import numpy as np
import pytest

import manual
from tests.helpers import assert_matches_reference
from xval import compare
from xval.contract import QUANTITIES


@pytest.mark.parametrize("quantity", list(QUANTITIES))
def test_engine_matches_manual(problem, quantity, engine, dtype, rtol, record_error):
    name, other = engine
    spec = QUANTITIES[quantity]
    if not spec.implemented_by(other.module):
        pytest.skip(f"engine {name!r} does not implement {quantity} (not implemented: skipped)")
    calls = spec.calls(problem, every_block=True)
    exact_calls = {}

    def exact(index):  # the engine in float64 at the same (float32-rounded) inputs; only for float32 runs
        if not exact_calls:
            exact_calls.update(enumerate(spec.calls(problem.astype("float64"), every_block=True)))
        return exact_calls[index].evaluate(other.module)

    for index, call in enumerate(calls):
        ours, theirs = (call.function(module)(problem.net, *call.arguments) for module in (manual, other.module))
        assert np.asarray(ours).dtype == np.asarray(theirs).dtype == np.float64, f"{call.label}: the contract returns float64"
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        assert ours.shape == theirs.shape == call.shape, f"{call.label}: shapes {ours.shape}, {theirs.shape}, contract {call.shape}"
        what = f"{call.label} manual vs {name} on {problem.name}"
        error = assert_matches_reference(ours, theirs, rtol, what, dtype, lambda: exact(index))
        record_error(quantity, name, problem.name, error)


def test_mean_of_per_sample_gradients_is_gradient(case, rtol, record_error):
    case_name, net, X, Y = case
    rows = manual.per_sample_gradients(net, X, Y)
    assert rows.shape == (X.shape[0], net.n_params)
    error = compare.assert_close(rows.mean(axis=0), manual.gradient(net, X, Y), rtol, f"mean per-sample gradient on {case_name}")
    record_error("mean(per_sample) vs gradient", "manual", case_name, error)


def test_finite_difference_gradient(case, dtype, record_error):
    case_name, net, X, Y = case
    fd = manual.finite_difference_gradient(net, X, Y)
    tol = compare.FINITE_DIFFERENCE_TOLERANCES[dtype]
    error = compare.assert_close(manual.gradient(net, X, Y), fd, tol, f"gradient vs finite differences on {case_name}")
    record_error("gradient vs finite differences", "fd", case_name, error)

