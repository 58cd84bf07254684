"""Every case x quantity of the contract x engine: each selected engine agrees with ``manual`` (every layer pair
of ``hessian_block``), and every engine agrees with the high-precision arbiter on every case small enough for it.
The calls come from the contract table (``xval.contract``), so a new quantity is compared here as soon as it is in
the table. A disagreement is judged by the arbiter: the failure names the wrong engine, and a difference below the
rounding floor passes."""
import numpy as np
import pytest

import manual
from tests.helpers import assert_matches_reference, beyond_arbiter_limits, load_engine
from xval import compare, verdict
from xval.isolation import guarded_call
from xval.contract import QUANTITIES


def _noting_dtype(function, dtypes):
    """``function``, appending the dtype of each result it returns to ``dtypes``."""
    def noted(*arguments):
        value = function(*arguments)
        dtypes.append(np.asarray(value).dtype)
        return value
    return noted


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
        # each engine gets read-only copies of X, Y and v; a write into them, or a result that is not a real
        # floating array of the contract's shape, fails here naming the call
        dtypes = []
        ours, theirs = (guarded_call(_noting_dtype(call.function(module), dtypes), call.label, problem.net,
                                     call.arguments, call.shape, spec.parameters) for module in (manual, other.module))
        assert dtypes == [np.float64, np.float64], f"{call.label}: the contract returns float64, got {dtypes}"
        what = f"{call.label} manual vs {name} on {problem.name}"
        error = assert_matches_reference(ours, theirs, rtol, what, dtype, lambda: exact(index), call, ("manual", name))
        record_error(quantity, name, problem.name, error)
        if name != "arbiter":
            check_against_arbiter(problem, call, name, theirs, rtol, dtype, record_error)


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



_TRUTHS = {}  # (case id, dtype) -> {call label: the arbiter's value, or its refusal}: one computation per process


def arbiter_truths(problem):
    """``{call label: truth}`` for every call of the contract on ``problem`` (every block sliced from one full
    Hessian), computed once per case; a label maps to the arbiter's refusal where the problem is beyond its limits."""
    key = (problem.name, problem.X.dtype.name)
    if key in _TRUTHS:
        return _TRUTHS[key]
    arbiter = load_engine("arbiter").module
    truths = {}
    order = sorted(QUANTITIES.values(), key=lambda quantity: quantity.name == "hessian_block")  # the Hessian first
    for quantity in order:
        for call in quantity.calls(problem, every_block=True):
            try:
                if quantity.name == "hessian_block":
                    full = truths["hessian"]
                    l, m = call.arguments[-2:]
                    rows, cols = problem.net.param_slices[l], problem.net.param_slices[m]
                    truths[call.label] = full if isinstance(full, Exception) else full[rows, cols]
                else:
                    truths[call.label] = call.evaluate(arbiter)
            except Exception as exc:
                if not beyond_arbiter_limits(exc):
                    raise
                truths[call.label] = exc
    _TRUTHS[key] = truths
    return truths


def check_against_arbiter(problem, call, name, values, rtol, dtype, record_error):
    """``values`` of engine ``name`` within ``rtol`` of the arbiter's truth, or below the rounding floor; a failure
    carries the arbiter's report. Feeds the arbiter column of the closing table."""
    truth = arbiter_truths(problem)[call.label]
    if isinstance(truth, Exception) or not np.isfinite(truth).all():  # no truth to compare with
        return
    error = compare.relative_error(values, truth)
    if not error <= rtol:
        judged = verdict.judge(call, {name: values}, rtol, dtype)
        assert judged.decided and not judged.wrong, (
            f"{call.label} {name} vs arbiter on {problem.name}: relative error {error:.3g} > {rtol:.1g}\n{judged.text()}")
    record_error(call.quantity.name, name, problem.name, error, against="arbiter")


def test_manual_matches_arbiter(problem, dtype, rtol, record_error):
    """manual against the arbiter's correctly rounded truth on every case small enough for the arbiter (the other
    engines are checked against it in ``test_engine_matches_manual``, on the values computed there)."""
    truths = arbiter_truths(problem)
    if all(isinstance(truth, Exception) for truth in truths.values()):
        pytest.skip(f"beyond the arbiter's limits: {next(iter(truths.values()))}")
    for quantity in QUANTITIES.values():
        for call in quantity.calls(problem, every_block=True):
            check_against_arbiter(problem, call, "manual", call.evaluate(manual), rtol, dtype, record_error)
