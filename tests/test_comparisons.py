"""Every case x quantity of the contract x engine: each selected engine agrees with ``manual`` (every layer pair
of ``hessian_block``), and every engine agrees with the high-precision arbiter on every case small enough for it.
The calls come from the contract table (``xval.contract``), so a new quantity is compared here as soon as it is in
the table. A disagreement is judged by the arbiter: the failure names the wrong engine, and a difference below the
rounding floor passes."""

import numpy as np
import pytest

import manual
from tests.helpers import assert_matches_reference, beyond_arbiter_limits, load_engine
from xval import compare, engines, verdict
from xval.errors import UnsupportedError
from xval.isolation import guarded_call
from xval.contract import QUANTITIES


def _noting_dtype(function, dtypes):
    """``function``, appending the dtype of each result it returns to ``dtypes``."""

    def noted(*arguments):
        value = function(*arguments)
        parts = value if isinstance(value, tuple) else (value,)  # kfac_factors: the pair (A, G)
        dtypes.extend(sorted({np.asarray(part).dtype for part in parts}, key=str))
        return value

    return noted


@pytest.mark.parametrize("quantity", list(QUANTITIES))
def test_engine_matches_manual(problem, quantity, engine, dtype, rtol, record_error):
    name, other = engine
    spec = QUANTITIES[quantity]
    if not spec.implemented_by(other.module):
        pytest.skip(f"engine {name!r} does not implement {quantity} (not implemented: skipped)")
    try:
        calls = spec.calls(problem, every_block=True)
    except UnsupportedError as exc:  # defined for none of the network's layers (KFAC without a Dense layer)
        pytest.skip(f"{quantity} on {problem.name}: {exc}")
    exact_calls = {}

    def exact(index):  # the engine in float64 at the same (float32-rounded) inputs; only for float32 runs
        if not exact_calls:
            exact_calls.update(enumerate(spec.calls(problem.astype("float64"), every_block=True)))
        return exact_calls[index].evaluate(other.module)

    refused = []
    for index, call in enumerate(calls):
        # each engine gets read-only copies of X, Y and v; a write into them, or a result that is not a real
        # floating array of the contract's shape, fails here naming the call
        dtypes, results = [], {}
        for module_name, module in (("manual", manual), (name, other.module)):
            try:
                results[module_name] = guarded_call(
                    _noting_dtype(call.function(module), dtypes),
                    call.label,
                    problem.net,
                    call.arguments,
                    call.shape,
                    spec.parameters,
                )
            except UnsupportedError as exc:
                results[module_name] = exc
        refusals = {
            module_name: result for module_name, result in results.items() if isinstance(result, UnsupportedError)
        }
        if len(refusals) == 2:  # both decline (KFAC of a network whose layer is no Dense layer): nothing to compare
            refused.append(call.label)
            continue
        if refusals:
            ((who, why),) = refusals.items()
            if who != "manual" and name not in engines.BUILT_IN:
                refused.append(call.label)  # an outside engine declined this call: not checked, not failed
                continue
            pytest.fail(f"{call.label} on {problem.name}: {who} refuses ({why}) what the other engine computes")
        ours, theirs = results["manual"], results[name]
        expected = np.float64 if call.shape == () else problem.net.dtype  # a scalar is a Python float
        assert dtypes == [expected] * 2, f"{call.label}: the contract returns the network's dtype, got {dtypes}"
        what = f"{call.label} manual vs {name} on {problem.name}"
        error = assert_matches_reference(ours, theirs, rtol, what, dtype, lambda: exact(index), call, ("manual", name))
        record_error(quantity, name, problem.name, error)
        if name != "arbiter":
            check_against_arbiter(problem, call, name, theirs, rtol, dtype, record_error)
    if refused and len(refused) == len(calls):
        pytest.skip(f"{quantity} on {problem.name}: every call declined (UnsupportedError), nothing compared")


def test_mean_of_per_sample_gradients_is_gradient(case, rtol, record_error):
    case_name, net, X, Y = case
    rows = manual.per_sample_gradients(net, X, Y)
    assert rows.shape == (X.shape[0], net.n_params)
    error = compare.assert_close(
        rows.mean(axis=0), manual.gradient(net, X, Y), rtol, f"mean per-sample gradient on {case_name}"
    )
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
        try:
            calls = quantity.calls(problem, every_block=True)
        except UnsupportedError:
            calls = []
        for call in calls:
            try:
                if quantity.name == "hessian_block":
                    full = truths["hessian"]
                    l, m = call.arguments[-2:]
                    rows, cols = problem.net.param_slices[l], problem.net.param_slices[m]
                    truths[call.label] = full if isinstance(full, Exception) else full[rows, cols]
                else:
                    truths[call.label] = call.evaluate(arbiter)
            except Exception as exc:
                if not (beyond_arbiter_limits(exc) or isinstance(exc, UnsupportedError)):
                    raise
                truths[call.label] = exc
    _TRUTHS[key] = truths
    return truths


def check_against_arbiter(problem, call, name, values, rtol, dtype, record_error):
    """``values`` of engine ``name`` within ``rtol`` of the arbiter's truth, or below the rounding floor; a failure
    carries the arbiter's report. Feeds the arbiter column of the closing table."""
    truth = arbiter_truths(problem)[call.label]
    if isinstance(truth, Exception) or not np.isfinite(compare.flat_parts(truth)).all():  # no truth to compare
        return
    error = compare.relative_error(values, truth)
    if not error <= rtol:
        judged = verdict.judge(call, {name: values}, rtol, dtype)
        assert judged.decided and not judged.wrong, (
            f"{call.label} {name} vs arbiter on {problem.name}: relative error {error:.3g} > {rtol:.1g}\n"
            f"{judged.text()}"
        )
    record_error(call.quantity.name, name, problem.name, error, against="arbiter")


def test_manual_matches_arbiter(problem, dtype, rtol, record_error):
    """manual against the arbiter's correctly rounded truth on every case small enough for the arbiter (the other
    engines are checked against it in ``test_engine_matches_manual``, on the values computed there)."""
    truths = arbiter_truths(problem)
    if all(isinstance(truth, Exception) for truth in truths.values()):
        pytest.skip(f"beyond the arbiter's limits: {next(iter(truths.values()))}")
    for quantity in QUANTITIES.values():
        try:
            calls = quantity.calls(problem, every_block=True)
        except UnsupportedError:
            continue
        for call in calls:
            try:
                value = call.evaluate(manual)
            except UnsupportedError:  # declined by manual: the arbiter must decline too
                assert isinstance(arbiter_truths(problem)[call.label], UnsupportedError), (
                    f"{call.label} on {problem.name}: manual declines what the arbiter computes"
                )
                continue
            check_against_arbiter(problem, call, "manual", value, rtol, dtype, record_error)
